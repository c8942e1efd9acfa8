#include "nestedfp/engine.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "engine/fake_executor.hpp"

using namespace nestedfp;
using nestedfp::fake::drain;
using nestedfp::fake::FakeExecutor;

namespace {

constexpr int kVocab = 40;

EngineConfig config(int budget = 64, int max_seqs = 8) {
  EngineConfig c;
  c.max_num_batched_tokens = budget;
  c.max_num_seqs = max_seqs;
  c.text_decoder = fake::letter_decoder();
  return c;
}

GenerationRequest req(int prompt_len, int max_tokens, uint64_t seed, int salt = 0) {
  GenerationRequest r;
  for (int i = 0; i < prompt_len; ++i) r.prompt.push_back((i * 7 + salt * 13 + 3) % kVocab);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 1.0f;
  r.sampling.seed = seed;
  return r;
}

// Runs requests one at a time on a fresh engine with a large pool: the reference outputs.
std::vector<RequestEvent> one_at_a_time(const std::vector<GenerationRequest>& rs,
                                        EngineConfig cfg = config()) {
  FakeExecutor ex(kVocab, 256, 1024);
  Engine e(ex, cfg);
  std::vector<RequestEvent> out;
  for (auto& r : rs) {
    auto s = e.add_request(r);
    out.push_back(drain(*s, &e));
  }
  return out;
}

std::vector<GenerationRequest> mixed_requests(int n) {
  std::vector<GenerationRequest> rs;
  for (int i = 0; i < n; ++i) rs.push_back(req(5 + (i * 17) % 60, 10 + (i * 7) % 30, 1000 + i, i));
  return rs;
}

}  // namespace

TEST(Engine, GeneratesMaxTokensWithTextAndUsage) {
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, config());
  auto s = e.add_request(req(10, 12, 1));
  RequestEvent all = drain(*s, &e);
  EXPECT_EQ(all.finish, FinishReason::Length);
  ASSERT_EQ(all.token_ids.size(), 12u);
  EXPECT_EQ(all.prompt_tokens, 10);
  EXPECT_EQ(all.completion_tokens, 12);
  std::string expect;
  for (int32_t t : all.token_ids) expect += fake::LetterDecoder::piece(t);
  EXPECT_EQ(all.text, expect);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
}

TEST(Engine, GreedyPicksTheArgmaxOfTheFakeModel) {
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, config());
  auto r = req(9, 6, 1);
  r.sampling.temperature = 0;
  r.logprobs = 3;
  RequestEvent all = drain(*e.add_request(r), &e);
  std::vector<int32_t> ctx = r.prompt;
  ASSERT_EQ(all.logprobs.size(), 6u);
  for (size_t i = 0; i < all.token_ids.size(); ++i) {
    std::vector<float> l(kVocab);
    FakeExecutor::logits_for(FakeExecutor::prefix_hash(ctx, ctx.size()), kVocab, Precision::FP16,
                             l.data());
    int32_t best = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
    EXPECT_EQ(all.token_ids[i], best);
    double lse = 0;
    for (float x : l) lse += std::exp(static_cast<double>(x));
    lse = std::log(lse);
    EXPECT_NEAR(all.logprobs[i].chosen.logprob, l[static_cast<size_t>(best)] - lse, 1e-4);
    ASSERT_EQ(all.logprobs[i].top.size(), 3u);
    EXPECT_EQ(all.logprobs[i].top[0].token, best);
    EXPECT_GE(all.logprobs[i].top[1].logprob, all.logprobs[i].top[2].logprob);
    ctx.push_back(all.token_ids[i]);
  }
}

TEST(Engine, SeededRequestsAreBatchInvariantUnderChunkingAndPreemption) {
  auto rs = mixed_requests(10);
  auto ref = one_at_a_time(rs);
  // A tiny pool (12 blocks = 192 tokens) for ten requests of up to ~100 tokens forces preemption;
  // a small budget forces chunked prefill.
  FakeExecutor ex(kVocab, 12, 1024);
  Engine e(ex, config(24, 6));
  std::vector<std::shared_ptr<RequestStream>> ss;
  for (auto& r : rs) ss.push_back(e.add_request(r));
  while (e.step()) {
  }
  for (size_t i = 0; i < rs.size(); ++i) {
    auto got = drain(*ss[i], &e);
    EXPECT_EQ(got.finish, FinishReason::Length) << i;
    EXPECT_EQ(got.token_ids, ref[i].token_ids) << "request " << i;
    EXPECT_EQ(got.text, ref[i].text) << "request " << i;
  }
  auto st = e.stats();
  EXPECT_GT(st.preemptions, 0u);
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_EQ(st.kv_blocks_free, 12);
  EXPECT_EQ(st.running + st.waiting, 0);
  for (auto& step : ex.steps) {
    EXPECT_LE(step.tokens, 24);
    EXPECT_LE(step.seq_ids.size(), 6u);
  }
}

TEST(Engine, ConcurrentClientsOnTheStepThreadMatchSequentialRuns) {
  auto rs = mixed_requests(16);
  auto ref = one_at_a_time(rs);
  FakeExecutor ex(kVocab, 20, 1024);
  Engine e(ex, config(32, 8));
  e.start();
  std::vector<RequestEvent> got(rs.size());
  std::vector<std::thread> ts;
  for (size_t i = 0; i < rs.size(); ++i)
    ts.emplace_back([&, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(i % 4)));
      got[i] = drain(*e.add_request(rs[i]));
    });
  for (auto& t : ts) t.join();
  ASSERT_TRUE(e.wait_idle(std::chrono::seconds(10)));
  for (size_t i = 0; i < rs.size(); ++i) EXPECT_EQ(got[i].token_ids, ref[i].token_ids) << i;
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
  e.stop();
}

TEST(Engine, EosAndStopTokenIdsFinishWithStopAndNoText) {
  auto r = req(8, 20, 5);
  auto ref = one_at_a_time({r})[0];
  ASSERT_GE(ref.token_ids.size(), 6u);
  int32_t eos = ref.token_ids[4];
  size_t first = static_cast<size_t>(std::find(ref.token_ids.begin(), ref.token_ids.end(), eos) -
                                     ref.token_ids.begin());
  auto cfg = config();
  cfg.eos_token_ids = {eos};
  auto got = one_at_a_time({r}, cfg)[0];
  EXPECT_EQ(got.finish, FinishReason::Stop);
  ASSERT_EQ(got.token_ids.size(), first + 1);  // the EOS id is reported, its text is not
  std::string text;
  for (size_t i = 0; i < first; ++i) text += fake::LetterDecoder::piece(ref.token_ids[i]);
  EXPECT_EQ(got.text, text);

  auto r2 = r;
  r2.stop_token_ids = {eos};
  EXPECT_EQ(one_at_a_time({r2})[0].token_ids.size(), first + 1);
  auto r3 = r;
  r3.ignore_eos = true;
  EXPECT_EQ(one_at_a_time({r3}, cfg)[0].token_ids.size(), 20u);
}

TEST(Engine, StopStringSpanningTokensCutsTheText) {
  auto r = req(8, 30, 9);
  auto ref = one_at_a_time({r})[0];
  // A stop string made of the end of token 5's text and the start of token 6's (and 7's).
  std::string p5 = fake::LetterDecoder::piece(ref.token_ids[5]);
  std::string stop = p5.substr(p5.size() - 1) + fake::LetterDecoder::piece(ref.token_ids[6]) +
                     fake::LetterDecoder::piece(ref.token_ids[7]).substr(0, 1);
  size_t at = ref.text.find(stop);
  ASSERT_NE(at, std::string::npos);
  r.stop = {stop};
  auto got = one_at_a_time({r})[0];
  EXPECT_EQ(got.finish, FinishReason::Stop);
  EXPECT_EQ(got.text, ref.text.substr(0, at));
  EXPECT_LE(got.token_ids.size(), 8u);
  r.include_stop_str = true;
  EXPECT_EQ(one_at_a_time({r})[0].text, ref.text.substr(0, at + stop.size()));
}

TEST(Engine, StreamedTextNeverShowsAStopStringPrefixThatTurnsOutToStop) {
  // Stream event by event: the concatenated deltas must equal the final text, and no delta may
  // contain text past the cut.
  auto r = req(8, 30, 9);
  auto ref = one_at_a_time({r})[0];
  std::string stop = ref.text.substr(10, 3);
  size_t at = ref.text.find(stop);
  r.stop = {stop};
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, config());
  auto s = e.add_request(r);
  std::string streamed;
  while (!s->done()) {
    e.step();
    if (auto ev = s->next(std::chrono::milliseconds(0))) {
      streamed += ev->text;
      EXPECT_EQ(ref.text.substr(0, streamed.size()), streamed);
      EXPECT_LE(streamed.size(), at);
    }
  }
  EXPECT_EQ(streamed, ref.text.substr(0, at));
}

TEST(Engine, PromptLogprobsAcrossChunksAndMaxTokensZero) {
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, config(7, 4));  // 7-token chunks: the 30-token prompt spans 5 steps
  auto r = req(30, 0, 3);
  r.prompt_logprobs = true;
  r.logprobs = 2;
  auto got = drain(*e.add_request(r), &e);
  EXPECT_EQ(got.finish, FinishReason::Length);
  EXPECT_TRUE(got.token_ids.empty());
  ASSERT_EQ(got.prompt_logprobs.size(), 30u);
  EXPECT_FALSE(got.prompt_logprobs[0].has_value());
  for (size_t p = 1; p < 30; ++p) {
    ASSERT_TRUE(got.prompt_logprobs[p].has_value()) << p;
    std::vector<float> l(kVocab);
    FakeExecutor::logits_for(FakeExecutor::prefix_hash(r.prompt, p), kVocab, Precision::FP16,
                             l.data());
    double lse = 0;
    for (float x : l) lse += std::exp(static_cast<double>(x));
    lse = std::log(lse);
    EXPECT_EQ(got.prompt_logprobs[p]->chosen.token, r.prompt[p]);
    EXPECT_NEAR(got.prompt_logprobs[p]->chosen.logprob, l[static_cast<size_t>(r.prompt[p])] - lse,
                1e-4)
        << p;
    EXPECT_EQ(got.prompt_logprobs[p]->top.size(), 2u);
  }
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
  // max_tokens 0 without prompt logprobs finishes at once, without a step.
  size_t steps = ex.steps.size();
  auto r2 = req(5, 0, 3);
  auto s2 = e.add_request(r2);
  EXPECT_FALSE(e.step());
  EXPECT_EQ(drain(*s2, &e).finish, FinishReason::Length);
  EXPECT_EQ(ex.steps.size(), steps);
}

TEST(Engine, PromptLogprobsWithGenerationComeFirst) {
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, config(16, 4));
  auto r = req(20, 3, 3);
  r.prompt_logprobs = true;
  auto s = e.add_request(r);
  std::optional<RequestEvent> first;
  while (!first) {
    e.step();
    first = s->next(std::chrono::milliseconds(0));
  }
  EXPECT_EQ(first->prompt_logprobs.size(), 20u);
  EXPECT_EQ(first->token_ids.size(), 1u);
}

TEST(Engine, AbortFreesBlocksAtOnce) {
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, config());
  auto s = e.add_request(req(40, 100, 1));
  auto other = e.add_request(req(10, 5, 2));
  e.step();
  e.step();
  EXPECT_GT(e.stats().kv_blocks_used, 0);
  EXPECT_TRUE(e.abort(s->id()));
  EXPECT_FALSE(e.abort(s->id()));  // already finished
  EXPECT_FALSE(e.abort(424242));
  auto st = e.stats();
  EXPECT_EQ(st.running, 1);
  auto got = drain(*s, &e);
  EXPECT_EQ(got.finish, FinishReason::Abort);
  EXPECT_EQ(drain(*other, &e).finish, FinishReason::Length);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
  EXPECT_EQ(e.stats().requests_aborted, 1u);
}

TEST(Engine, AbortWhileTheStepRunsIsSafe) {
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, config());
  auto s = e.add_request(req(20, 50, 1));
  auto keep = e.add_request(req(20, 4, 2));
  int calls = 0;
  ex.hook = [&](const StepInput&) {
    if (++calls == 3) {
      EXPECT_TRUE(e.abort(s->id()));           // as an HTTP thread would, mid-step
      EXPECT_LT(e.stats().kv_blocks_used, 4);  // s's blocks are free already
    }
  };
  auto got = drain(*s, &e);
  EXPECT_EQ(got.finish, FinishReason::Abort);
  EXPECT_EQ(drain(*keep, &e).finish, FinishReason::Length);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
}

TEST(Engine, ExecutorFailureEndsTheStepsRequestsWithError) {
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, config());
  auto s = e.add_request(req(10, 5, 1));
  ex.hook = [](const StepInput&) { throw std::runtime_error("device lost"); };
  auto got = drain(*s, &e);
  EXPECT_EQ(got.finish, FinishReason::Error);
  EXPECT_NE(got.error.find("device lost"), std::string::npos);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
  ex.hook = nullptr;  // the engine keeps serving
  EXPECT_EQ(drain(*e.add_request(req(10, 5, 1)), &e).finish, FinishReason::Length);
}

TEST(Engine, DynamicPolicyFollowsStepSizeAndChangesAtRunTime) {
  FakeExecutor ex(kVocab, 64, 1024);
  auto cfg = config(64, 8);
  cfg.precision = "dynamic:threshold=8";
  Engine e(ex, cfg);
  std::vector<std::shared_ptr<RequestStream>> ss;
  for (int i = 0; i < 4; ++i) ss.push_back(e.add_request(req(30, 6, static_cast<uint64_t>(i), i)));
  while (e.step()) {
  }
  ASSERT_FALSE(ex.steps.empty());
  for (auto& st : ex.steps)
    EXPECT_EQ(st.precision, st.tokens > 8 ? Precision::FP8 : Precision::FP16) << st.tokens;
  auto stats = e.stats();
  EXPECT_GT(stats.steps_fp8, 0u);   // the prefill burst
  EXPECT_GT(stats.steps_fp16, 0u);  // decodes of 4 sequences
  uint64_t tok = 0;
  for (auto& st : ex.steps) tok += static_cast<uint64_t>(st.tokens);
  EXPECT_EQ(stats.tokens_fp16 + stats.tokens_fp8, tok);

  e.set_precision_policy("fp8");
  EXPECT_EQ(e.precision_policy(), "fp8");
  size_t before = ex.steps.size();
  drain(*e.add_request(req(3, 4, 1)), &e);
  for (size_t i = before; i < ex.steps.size(); ++i)
    EXPECT_EQ(ex.steps[i].precision, Precision::FP8);
  EXPECT_THROW(e.set_precision_policy("dynamic:threshold=x"), Error);
  EXPECT_EQ(e.precision_policy(), "fp8");  // unchanged after a bad spec

  std::string m = e.metrics_text();
  EXPECT_NE(
      m.find("nestedfp_steps_total{precision=\"fp8\"} " + std::to_string(e.stats().steps_fp8)),
      std::string::npos)
      << m;
  EXPECT_NE(m.find("nestedfp_precision_policy_info{policy=\"fp8\"} 1"), std::string::npos);
  EXPECT_NE(m.find("nestedfp_kv_blocks_free 64"), std::string::npos);
  EXPECT_NE(m.find("nestedfp_time_to_first_token_seconds_count 5"), std::string::npos);
  EXPECT_NE(m.find("nestedfp_generation_tokens_total 28"), std::string::npos);
}

TEST(Engine, FixedPrecisionMakesSeedsReproducibleInFp8Too) {
  auto rs = mixed_requests(6);
  auto cfg = config();
  cfg.precision = "fp8";
  auto ref16 = one_at_a_time(rs);
  auto ref8 = one_at_a_time(rs, cfg);
  FakeExecutor ex(kVocab, 16, 1024);
  cfg.max_num_batched_tokens = 16;
  Engine e(ex, cfg);
  std::vector<std::shared_ptr<RequestStream>> ss;
  for (auto& r : rs) ss.push_back(e.add_request(r));
  int differs = 0;
  for (size_t i = 0; i < rs.size(); ++i) {
    auto got = drain(*ss[i], &e);
    EXPECT_EQ(got.token_ids, ref8[i].token_ids);
    differs += got.token_ids != ref16[i].token_ids;
  }
  EXPECT_GT(differs, 0);  // FP8 logits differ in the fake, so some sampled tokens do
}

TEST(Engine, RejectsInvalidRequests) {
  FakeExecutor ex(kVocab, 64, 100);
  Engine e(ex, config());
  EXPECT_EQ(e.max_model_len(), 100);
  auto bad = [&](GenerationRequest r, const char* needle) {
    try {
      e.add_request(std::move(r));
      ADD_FAILURE() << "accepted a request that should fail with " << needle;
    } catch (const RequestError& err) {
      EXPECT_NE(std::string(err.what()).find(needle), std::string::npos) << err.what();
    }
  };
  bad(req(0, 5, 1), "empty");
  bad(req(90, 20, 1), "maximum context length is 100");
  bad(req(101, 0, 1), "maximum context length");
  bad(req(5, -1, 1), "max_tokens");
  auto r = req(5, 5, 1);
  r.prompt[2] = kVocab;
  bad(r, "vocabulary");
  r = req(5, 5, 1);
  r.sampling.temperature = -0.5f;
  bad(r, "temperature");
  r.sampling.temperature = NAN;
  bad(r, "temperature");
  r = req(5, 5, 1);
  r.sampling.top_p = 0;
  bad(r, "top_p");
  r.sampling.top_p = 1.5f;
  bad(r, "top_p");
  r = req(5, 5, 1);
  r.logprobs = 21;
  bad(r, "logprobs");
  EXPECT_NO_THROW(e.add_request(req(90, 10, 1)));  // exactly the context
}

TEST(Engine, FullQueueIsReported) {
  FakeExecutor ex(kVocab, 64, 1024);
  auto cfg = config();
  cfg.max_queue = 3;
  Engine e(ex, cfg);
  for (int i = 0; i < 3; ++i) e.add_request(req(5, 5, 1));
  EXPECT_THROW(e.add_request(req(5, 5, 1)), QueueFullError);
  e.step();  // admits them: the queue empties
  EXPECT_NO_THROW(e.add_request(req(5, 5, 1)));
}

TEST(Engine, ConfigErrorsAndPoolCap) {
  FakeExecutor ex(kVocab, 4, 1024);
  auto cfg = config();
  cfg.precision = "fp9";
  EXPECT_THROW(Engine(ex, cfg), Error);
  cfg = config();
  cfg.num_kv_blocks = 5;
  EXPECT_THROW(Engine(ex, cfg), Error);
  cfg = config();
  cfg.max_model_len = 2000;
  EXPECT_THROW(Engine(ex, cfg), Error);
  cfg = config();
  cfg.max_num_seqs = 0;
  EXPECT_THROW(Engine(ex, cfg), Error);
  Engine e(ex, config());
  EXPECT_EQ(e.max_model_len(), 64);  // 4 blocks of 16: one sequence must fit alone
}

TEST(Engine, DestructionAbortsUnfinishedRequests) {
  FakeExecutor ex(kVocab, 64, 1024);
  std::shared_ptr<RequestStream> s;
  {
    Engine e(ex, config());
    e.start();
    s = e.add_request(req(10, 1000 - 10, 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto got = drain(*s);
  EXPECT_TRUE(got.finish == FinishReason::Abort || got.finish == FinishReason::Length);
}
