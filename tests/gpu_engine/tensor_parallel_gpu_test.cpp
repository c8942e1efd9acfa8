// Tensor parallelism on GPUs (docs/DESIGN.md §3.14): pystd-16m split over 2 GPUs with NCCL must
// give the single-GPU perplexity within 0.1% and the same greedy tokens where the reference
// margin is clear, with and without CUDA graphs; a rank that fails to start or fails mid-step
// must end in a clear error, not a hang. Skips (saying why) with fewer than 2 usable GPUs.
// Run: ctest --test-dir build/cuda -L gpu -R TensorParallelGpu (scripts/gpu-check.sh, TP_CHECK=1).
// TensorParallelOneGpu runs the sharded CUDA path (sharded planes and scales, column/row-parallel
// GEMM shapes and their kernel-table entries, the all-reduce points) with two ranks on one GPU
// and the in-process all-reduce instead of NCCL, so a one-GPU machine checks everything but NCCL.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <future>
#include <memory>

#include "cpu/pystd_fixture.hpp"
#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "engine/tp_executor.hpp"
#include "nestedfp/communicator.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/tokenizer.hpp"

using namespace nestedfp;
using namespace nestedfp::testing_pystd;
using namespace std::chrono_literals;

namespace {

engine::RunnerOptions opts(bool graphs = true) {
  engine::RunnerOptions ro;
  ro.max_num_batched_tokens = 512;
  ro.max_num_seqs = 8;
  ro.num_kv_blocks = 512;
  ro.cuda_graphs = graphs;
  return ro;
}

std::unique_ptr<backend::Backend> cuda_backend(int gpu) {
  backend::BackendOptions bo;
  bo.device = "cuda", bo.gpu = gpu;
  return backend::make_backend(bo);
}

std::unique_ptr<ModelExecutor> load(int tp, bool graphs = true) {
  engine::LoadOptions lo;
  lo.model_dir = kModel;
  if (tp == 1) return engine::ModelRunner::load(cuda_backend(0), lo, opts(graphs));
  return engine::load_tensor_parallel(tp, cuda_backend, lo, opts(graphs));
}

// Why two GPUs are not usable here ("" when they are).
std::string two_gpus_missing() {
  static const std::string why = [] {
    try {
      cuda_backend(1);
      return std::string();
    } catch (const Error& e) {
      return std::string(e.what());
    }
  }();
  return why;
}

#define NEED_TWO_GPUS()                                         \
  if (const std::string why = two_gpus_missing(); !why.empty()) \
  GTEST_SKIP() << "tensor parallelism needs 2 Hopper GPUs: " << why

ModelExecutor& tp1() {
  static auto r = load(1);
  return *r;
}
ModelExecutor& tp2() {
  static auto r = load(2);
  return *r;
}

const std::vector<int32_t>& long_ids() {
  static const std::vector<int32_t> ids = [] {
    const char* env = std::getenv("NESTEDFP_PYSTD_TEXT");
    const std::string text = engine::read_text_file(env && *env ? env : kText);
    auto v = Tokenizer::load(kModel).encode(std::string_view(text).substr(0, 1 << 20), false);
    if (v.size() < 64u * 512) throw std::runtime_error("text too short for 64 chunks of 512");
    return v;
  }();
  return ids;
}

std::vector<std::vector<int32_t>> greedy_batch(ModelExecutor& ex, Precision p,
                                               const std::vector<std::vector<int32_t>>& prompts,
                                               int max_tokens) {
  EngineConfig ec;
  ec.max_num_batched_tokens = 512;
  ec.max_num_seqs = 8;
  ec.precision = to_string(p);
  Engine eng(ex, ec);
  std::vector<GenerationRequest> reqs;
  for (const auto& pr : prompts) reqs.push_back(greedy_request(pr, max_tokens));
  return run_to_completion(eng, reqs);
}

// FP16 greedy tokens through the engine equal REFERENCE.json's where its top-2 margin is clear
// (the tokens up to the first step whose margin is under 0.05, at least 8), on >= 4 prompts.
void expect_greedy_matches_reference(ModelExecutor& ex) {
  const auto cases = clear_margin_greedy_cases();
  for (const auto& c : cases)
    EXPECT_EQ(greedy_batch(ex, Precision::FP16, {c.prompt}, int(c.want.size()))[0], c.want)
        << "prompt: " << c.label;
  EXPECT_GE(cases.size(), 4u);
}

}  // namespace

// 64 chunks of the public text, both precisions: TP 2 within 0.1% of one GPU.
TEST(TensorParallelGpu, Tp2PerplexityMatchesOneGpu) {
  NEED_TWO_GPUS();
  for (Precision p : {Precision::FP16, Precision::FP8}) {
    const double a = engine::perplexity(tp1(), long_ids(), p, 64).ppl;
    const double b = engine::perplexity(tp2(), long_ids(), p, 64).ppl;
    std::printf("[ perplexity %s, 64 chunks: 1 GPU %.5f, TP 2 %.5f ]\n", to_string(p), a, b);
    EXPECT_NEAR(b / a, 1.0, 1e-3) << to_string(p);
  }
}

// Greedy through the engine (device argmax, decode steps as CUDA graphs with NCCL inside)
// equals REFERENCE.json where its top-2 margin is clear.
TEST(TensorParallelGpu, Tp2GreedyMatchesReference) {
  NEED_TWO_GPUS();
  expect_greedy_matches_reference(tp2());
}

// Graph replays (NCCL all-reduces captured in the graphs) give the tokens of eager TP 2 steps.
TEST(TensorParallelGpu, Tp2GraphsMatchEagerSteps) {
  NEED_TWO_GPUS();
  auto eager = load(2, /*graphs=*/false);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 3; ++i)
    prompts.emplace_back(text_ids().begin() + 100 * i, text_ids().begin() + 100 * i + 30 + 7 * i);
  for (Precision p : {Precision::FP16, Precision::FP8}) {
    const uint64_t before = dynamic_cast<engine::TpExecutor&>(tp2()).rank(0).graph_replays();
    EXPECT_EQ(greedy_batch(tp2(), p, prompts, 24), greedy_batch(*eager, p, prompts, 24))
        << to_string(p);
    EXPECT_GT(dynamic_cast<engine::TpExecutor&>(tp2()).rank(0).graph_replays(), before + 10);
  }
}

// Two ranks on GPU 0, eager (the in-process all-reduce synchronizes with the host, so it cannot
// be captured in a graph).
// one_gpu_numerics = false: --tp-fp8-numerics per-rank.
std::unique_ptr<ModelExecutor> load_tp2_one_gpu(bool one_gpu_numerics = true) {
  engine::LoadOptions lo;
  lo.model_dir = kModel;
  engine::RunnerOptions ro = opts(/*graphs=*/false);
  ro.tp_fp8_one_gpu_numerics = one_gpu_numerics;
  return std::make_unique<engine::TpExecutor>(
      2,
      [&](int r) {
        engine::LoadOptions l = lo;
        l.shard = {r, 2};
        return engine::ModelRunner::load(cuda_backend(0), l, ro);
      },
      [](const std::vector<backend::Backend*>& b) {
        return backend::make_inprocess_group(int(b.size()));
      });
}

// 64 chunks of the public text at both precisions: sharded on one GPU within 0.1% of unsharded
// (FP8 with the default one-GPU numerics; per-rank FP8, vLLM's way, is printed for the record:
// 1.00107 of unsharded in session 27, at the bound).
TEST(TensorParallelOneGpu, ShardedPerplexityMatchesUnsharded) {
  auto tp = load_tp2_one_gpu();
  auto one = load(1, /*graphs=*/false);
  EXPECT_EQ(dynamic_cast<engine::TpExecutor&>(*tp).size(), 2);
  for (Precision p : {Precision::FP16, Precision::FP8}) {
    const double a = engine::perplexity(*one, long_ids(), p, 64).ppl;
    const double b = engine::perplexity(*tp, long_ids(), p, 64).ppl;
    std::printf("[ perplexity %s, 64 chunks: unsharded %.5f, 2 shards on one GPU %.5f (%.5f) ]\n",
                to_string(p), a, b, b / a);
    EXPECT_NEAR(b / a, 1.0, 1e-3) << to_string(p);
    EXPECT_GT(a, 1.0);
    if (p == Precision::FP8) {
      auto per_rank = load_tp2_one_gpu(false);
      const double c = engine::perplexity(*per_rank, long_ids(), p, 64).ppl;
      std::printf("[ perplexity fp8 per-rank numerics, 2 shards on one GPU %.5f (%.5f) ]\n", c,
                  c / a);
      EXPECT_NEAR(c / a, 1.0, 1e-2);  // a working model: within FP8's noise, not the 0.1%
    }
  }
}

// Greedy through the engine on the sharded model equals REFERENCE.json where its top-2 margin is
// clear.
TEST(TensorParallelOneGpu, ShardedGreedyMatchesReference) {
  auto tp = load_tp2_one_gpu();
  expect_greedy_matches_reference(*tp);
}

// A rank on a GPU that does not exist: a clear error naming it, not a hang (needs 1 GPU).
TEST(TensorParallelGpu, ARankThatFailsToStartIsReported) {
  auto fut = std::async(std::launch::async, [] {
    engine::LoadOptions lo;
    lo.model_dir = kModel;
    try {
      engine::load_tensor_parallel(
          2, [](int r) { return cuda_backend(r == 1 ? 4096 : 0); }, lo, opts());
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  });
  if (fut.wait_for(120s) != std::future_status::ready) {
    ADD_FAILURE() << "a rank that failed to start hung the others";
    std::abort();
  }
  const std::string msg = fut.get();
  EXPECT_NE(msg.find("rank 1:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("GPU 4096 does not exist"), std::string::npos) << msg;
}

// Rank 1 throws mid-step while rank 0 waits in an NCCL all-reduce: the executor aborts the
// communicators, and the step fails with rank 1's reason.
TEST(TensorParallelGpu, ARankThatFailsMidStepDoesNotHang) {
  NEED_TWO_GPUS();
  auto ex = load(2, /*graphs=*/false);
  auto& tp = dynamic_cast<engine::TpExecutor&>(*ex);
  tp.rank(1).set_linear_tap([](int layer, const char* name, const backend::Activation&, int64_t) {
    if (layer == 3 && std::string(name) == "down") fail("injected failure in layer 3");
  });
  auto fut = std::async(std::launch::async, [&] {
    try {
      engine::SingleSequence s(*ex);
      s.feed(std::span(text_ids()).first(64), Precision::FP16);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  });
  if (fut.wait_for(120s) != std::future_status::ready) {
    ADD_FAILURE() << "rank 0 hung in its all-reduce after rank 1 failed";
    std::abort();
  }
  const std::string msg = fut.get();
  EXPECT_NE(msg.find("rank 1: injected failure in layer 3"), std::string::npos) << msg;
}
