// Acceptance on models/pystd-16m against REFERENCE.json (Hugging Face fp16 on an H200):
// per-chunk mean NLL in FP16 and NestedFP8 and greedy continuations.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "cpu/pystd_fixture.hpp"
#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "nestedfp/sampler.hpp"
#include "nestedfp/tokenizer.hpp"

using namespace nestedfp;

namespace {

using namespace nestedfp::testing_pystd;

engine::ModelRunner& runner(format::ScaleMode mode, bool fp8_activations = true) {
  static std::unique_ptr<engine::ModelRunner> r[4];
  auto& slot = r[(mode == format::ScaleMode::None ? 0 : 1) + (fp8_activations ? 0 : 2)];
  if (!slot) {
    engine::RunnerOptions o;
    o.num_kv_blocks = 64;
    o.fp8_activations = fp8_activations;
    slot = std::make_unique<engine::ModelRunner>(backend::make_cpu_backend(),
                                                 engine::ModelWeights::load(kModel, mode), o);
  }
  return *slot;
}

std::vector<double> chunks(Precision p, bool fp8_activations = true) {
  return first8_chunk_nll(runner(format::ScaleMode::None, fp8_activations), p);
}

std::vector<double> want(const char* key) { return reference_first8(key); }

}  // namespace

TEST(Acceptance, Fp16ChunkNll) {
  const auto got = chunks(Precision::FP16), ref = want("fp16");
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(got[i], ref[i], 0.002) << "chunk " << i;
}

// FP8 weights (upper plane read as E4M3) with fp16 activations: deterministic enough to match
// the reference chunk by chunk as tightly as FP16.
TEST(Acceptance, NestedFp8WeightsOnlyChunkNll) {
  const auto got = chunks(Precision::FP8, false), ref = want("nested_fp8_weights_only");
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(got[i], ref[i], 0.002) << "chunk " << i;
  const auto f16 = chunks(Precision::FP16);
  EXPECT_GT(std::fabs(mean(got) - mean(f16)), 1e-4) << "FP8 weights changed nothing";
}

// Full NestedFP8 (per-token E4M3 activations too). Per-token rounding decisions are chaotic: the
// summation order of attention alone (scalar vs AVX2) moves single chunks by up to 0.007, so the
// reference (cuBLAS order) is matched on the 8-chunk mean within 0.004 and per chunk within 0.015.
TEST(Acceptance, NestedFp8ChunkNll) {
  const auto got = chunks(Precision::FP8), ref = want("nested_fp8"), f16 = chunks(Precision::FP16);
  EXPECT_NEAR(mean(got), mean(ref), 0.004);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(got[i], ref[i], 0.015) << "chunk " << i;
  EXPECT_GT(mean(got) - mean(f16), 0.0005) << "activation quantization should cost accuracy";
}

TEST(Acceptance, GreedyMatchesReference) {
  auto& r = runner(format::ScaleMode::None);
  const auto cases = clear_margin_greedy_cases();
  for (const auto& c : cases) {
    engine::SingleSequence seq(r);
    std::vector<float> logits = seq.feed(c.prompt, Precision::FP16);
    std::vector<int32_t> got;
    for (size_t i = 0; i < c.want.size(); ++i) {
      got.push_back(argmax(logits));
      logits = seq.feed(std::span(&got.back(), 1), Precision::FP16);
    }
    EXPECT_EQ(got, c.want) << "prompt: " << c.label;
  }
  EXPECT_GE(cases.size(), 4u);
}
