// Host/GPU overlap (docs/DESIGN.md §3.15): with an executor whose launch() returns before the step
// runs, the engine pushes a step's events while the next step is in flight, and a stop string
// found then costs that request one wasted token, never a wrong output.
#include <gtest/gtest.h>

#include "engine/fake_executor.hpp"
#include "nestedfp/engine.hpp"

using namespace nestedfp;
using nestedfp::fake::drain;
using nestedfp::fake::FakeExecutor;

namespace {

constexpr int kVocab = 40;

EngineConfig config() {
  EngineConfig c;
  c.max_num_batched_tokens = 64;
  c.max_num_seqs = 8;
  c.text_decoder = fake::letter_decoder();
  return c;
}

GenerationRequest req(int max_tokens, uint64_t seed) {
  GenerationRequest r;
  for (int i = 0; i < 8; ++i) r.prompt.push_back((i * 7 + 3) % kVocab);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 1.0f;
  r.sampling.seed = seed;
  return r;
}

RequestEvent run(GenerationRequest r, bool overlap, int* steps_with_it = nullptr) {
  FakeExecutor ex(kVocab, 64, 1024);
  ex.overlap = overlap;
  Engine e(ex, config());
  auto s = e.add_request(std::move(r));
  RequestEvent got = drain(*s, &e);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
  EXPECT_FALSE(e.step());  // nothing left, nothing owed
  if (steps_with_it) *steps_with_it = static_cast<int>(ex.steps.size());
  return got;
}

}  // namespace

TEST(Overlap, EventsOfAStepArriveWhileTheNextStepRuns) {
  FakeExecutor ex(kVocab, 64, 1024);
  ex.overlap = true;
  Engine e(ex, config());
  auto s = e.add_request(req(6, 3));
  size_t seen = 0;
  int calls = 0;
  ex.hook = [&](const StepInput&) {  // runs inside collect(), after the launch
    ++calls;
    while (auto ev = s->next(std::chrono::milliseconds(0))) seen += ev->token_ids.size();
    EXPECT_EQ(seen, static_cast<size_t>(calls - 1)) << "step " << calls;
  };
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(e.step());
  // The last step left no work: its token is flushed at once, not at a next step() call.
  while (auto ev = s->next(std::chrono::milliseconds(0))) seen += ev->token_ids.size();
  EXPECT_EQ(calls, 6);
  EXPECT_EQ(seen, 6u);
  EXPECT_TRUE(s->done());
  EXPECT_FALSE(e.step());
}

TEST(Overlap, OutputEqualsTheSynchronousEngine) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    auto a = run(req(20, seed), false), b = run(req(20, seed), true);
    EXPECT_EQ(a.token_ids, b.token_ids);
    EXPECT_EQ(a.text, b.text);
    EXPECT_EQ(b.finish, FinishReason::Length);
    EXPECT_EQ(b.completion_tokens, 20);
  }
}

TEST(Overlap, AStopStringFoundLateCostsOneStepNotOutput) {
  auto r = req(30, 9);
  const RequestEvent ref = run(r, false);
  r.stop = {ref.text.substr(10, 3)};
  int sync_steps = 0, overlap_steps = 0;
  const RequestEvent a = run(r, false, &sync_steps), b = run(r, true, &overlap_steps);
  EXPECT_EQ(a.finish, FinishReason::Stop);
  EXPECT_EQ(b.finish, FinishReason::Stop);
  EXPECT_EQ(b.text, a.text);
  EXPECT_EQ(b.token_ids, a.token_ids);  // the wasted token is not reported
  EXPECT_EQ(b.completion_tokens, a.completion_tokens);
  // The request was already in the launched step when its stop string was seen.
  EXPECT_EQ(overlap_steps, sync_steps + 1);
}

TEST(Overlap, AbortWithOutputOwedEndsTheStreamConsistently) {
  FakeExecutor ex(kVocab, 64, 1024);
  ex.overlap = true;
  Engine e(ex, config());
  auto s = e.add_request(req(50, 4));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(e.step());  // step 3's token is still owed
  EXPECT_TRUE(e.abort(s->id()));
  RequestEvent got = drain(*s);
  EXPECT_EQ(got.finish, FinishReason::Abort);
  EXPECT_EQ(got.token_ids.size(), 2u);
  EXPECT_EQ(got.completion_tokens, 2);  // what the stream carried, not what was computed
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
  EXPECT_FALSE(e.step());  // the owed output is dropped, the record released
  EXPECT_FALSE(e.abort(s->id()));
}

// An abort that leaves no work must emit what other requests are owed: no step will come to do
// it, and wait_idle must not report idle before it is out.
TEST(Overlap, AbortOfTheLastRunningRequestFlushesOthersOwedOutput) {
  FakeExecutor ex(kVocab, 64, 1024);
  ex.overlap = true;
  Engine e(ex, config());
  auto a = e.add_request(req(50, 1));
  auto b = e.add_request(req(3, 2));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(e.step());  // b ended at commit; its events are owed
  EXPECT_TRUE(e.abort(a->id()));
  EXPECT_TRUE(e.wait_idle(std::chrono::milliseconds(0)));
  RequestEvent got = drain(*b);
  EXPECT_EQ(got.finish, FinishReason::Length);
  EXPECT_EQ(got.token_ids.size(), 3u);
}
