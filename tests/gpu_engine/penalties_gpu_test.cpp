// Penalties through the whole cuda path (engine -> step blob -> penalty kernel -> device
// sampling), on pystd-16m: a penalized greedy request alone equals the plain reference over the
// cuda backend's own logits (a single sequence fed the same way: same batch composition), a +100
// logit bias forces its token, and log-probs stay those of the raw logits. Needs a Hopper GPU.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "cpu/pystd_fixture.hpp"
#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "engine/penalty_reference.hpp"
#include "gpu_engine/cuda_pystd.hpp"
#include "nestedfp/engine.hpp"

using namespace nestedfp;
using namespace nestedfp::testing_pystd;

namespace {

engine::ModelRunner& gpu_runner() {
  static std::unique_ptr<engine::ModelRunner> r = [] {
    engine::RunnerOptions ro;
    ro.max_num_batched_tokens = 512;
    ro.max_num_seqs = 8;
    ro.num_kv_blocks = 256;
    return load_cuda_pystd(ro);
  }();
  return *r;
}

RequestEvent run_alone(const GenerationRequest& r) {
  EngineConfig ec;
  ec.max_num_batched_tokens = 512;
  ec.max_num_seqs = 8;
  Engine eng(gpu_runner(), ec);
  auto s = eng.add_request(r);
  RequestEvent all;
  while (eng.step()) {
  }
  while (auto ev = s->next(std::chrono::milliseconds(0))) {
    all.token_ids.insert(all.token_ids.end(), ev->token_ids.begin(), ev->token_ids.end());
    all.logprobs.insert(all.logprobs.end(), ev->logprobs.begin(), ev->logprobs.end());
  }
  return all;
}

GenerationRequest request() {
  GenerationRequest r;
  r.prompt = std::vector<int32_t>(text_ids().begin(), text_ids().begin() + 48);
  r.max_tokens = 24;
  r.ignore_eos = true;
  r.sampling.temperature = 0.f;
  r.sampling.seed = 1;
  r.logprobs = 2;
  return r;
}

}  // namespace

TEST(CudaPenalties, GreedyEqualsThePlainReferenceOnCudaLogits) {
  GenerationRequest r = request();
  r.penalties.repetition_penalty = 1.4f;
  r.penalties.frequency_penalty = 0.6f;
  r.penalties.presence_penalty = 0.3f;
  r.penalties.logit_bias = {{r.prompt[5], -2.f}, {r.prompt[7], 1.5f}};
  const RequestEvent got = run_alone(r);
  // The reference: the same sequence fed prompt-then-one-token on the same runner.
  engine::SingleSequence seq(gpu_runner());
  std::vector<float> logits = seq.feed(r.prompt, Precision::FP16);
  std::vector<int32_t> want;
  RequestSampler draws(r.sampling, 1);
  for (int i = 0; i < r.max_tokens; ++i) {
    want.push_back(reference::pick(reference::penalized(logits, r, want, {}), r.sampling, draws));
    if (size_t(i) < got.logprobs.size()) {  // raw log-probs, whatever the penalties
      EXPECT_NEAR(got.logprobs[size_t(i)].chosen.logprob, token_logprob(logits, want.back()), 2e-3);
    }
    logits = seq.feed(std::span(&want.back(), 1), Precision::FP16);
  }
  EXPECT_EQ(got.token_ids, want);
  GenerationRequest plain = request();
  EXPECT_NE(run_alone(plain).token_ids, got.token_ids);  // the penalties did something
}

TEST(CudaPenalties, LogitBiasForcesAToken) {
  GenerationRequest r = request();
  r.sampling.temperature = 1.f;
  r.max_tokens = 8;
  r.penalties.logit_bias = {{123, 100.f}};
  const RequestEvent got = run_alone(r);
  EXPECT_EQ(got.token_ids, std::vector<int32_t>(8, 123));
  ASSERT_EQ(got.logprobs.size(), 8u);
  EXPECT_LT(got.logprobs[0].chosen.logprob, -1.f);  // unlikely under the raw logits
}
