// --max-queue semantics: it bounds new requests waiting for admission; preempted requests wait
// ahead of them, outside the bound, and never make a new request's admission fail.
#include <gtest/gtest.h>

#include "engine/fake_executor.hpp"
#include "nestedfp/engine.hpp"

using namespace nestedfp;

namespace {

GenerationRequest request(int salt) {
  GenerationRequest r;
  for (int k = 0; k < 20; ++k) r.prompt.push_back((k * 7 + salt) % 40);
  r.max_tokens = 60;
  r.sampling.seed = static_cast<uint64_t>(salt);
  return r;
}

int queue_length_metric(const Engine& e) {
  const std::string m = e.metrics_text();
  const size_t p = m.find("\nnestedfp_queue_length ");
  return p == std::string::npos ? -1 : std::stoi(m.substr(p + 23));
}

}  // namespace

TEST(QueueBound, PreemptedRequestsDoNotCountAgainstMaxQueue) {
  // 12 blocks (192 tokens) for five requests of 80 tokens: running requests get preempted.
  fake::FakeExecutor ex(40, 12, 1024);
  EngineConfig cfg;
  cfg.max_num_batched_tokens = 24;
  cfg.max_num_seqs = 6;
  cfg.max_queue = 1;
  cfg.text_decoder = fake::letter_decoder();
  Engine e(ex, cfg);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 5; ++i) {  // one at a time: each is admitted before the next arrives
    streams.push_back(e.add_request(request(i)));
    EXPECT_THROW(e.add_request(request(100 + i)), QueueFullError);  // the bound holds for new ones
    e.step();
  }
  // Run without new arrivals until a preempted request waits to resume.
  for (int i = 0; i < 200 && e.stats().waiting_preempted == 0; ++i) e.step();
  auto s = e.stats();
  ASSERT_GT(s.waiting_preempted, 0) << "no preemption: make the pool smaller";
  ASSERT_EQ(s.waiting, s.waiting_preempted);  // nothing new waits
  EXPECT_EQ(queue_length_metric(e), 0);
  // The queue already holds max_queue (1) requests, all preempted: a new one is still accepted...
  EXPECT_NO_THROW(streams.push_back(e.add_request(request(50))));
  EXPECT_EQ(queue_length_metric(e), 1);
  EXPECT_EQ(e.stats().waiting, s.waiting + 1);
  // ...and the next new one is not.
  EXPECT_THROW(e.add_request(request(51)), QueueFullError);
  while (e.step()) {
  }
  for (auto& st : streams) EXPECT_EQ(fake::drain(*st, &e).finish, FinishReason::Length);
  EXPECT_EQ(e.stats().kv_blocks_used, 0);
  EXPECT_EQ(queue_length_metric(e), 0);
}
