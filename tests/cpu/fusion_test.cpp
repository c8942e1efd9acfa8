// Fused qkv and gate_up projections (docs/DESIGN.md §3.4, engine/fusion.hpp). On the cpu backend
// every output element of a fused GEMM is the dot product the separate GEMM computes, so a fused
// runner gives the unfused runner's logits bit for bit: FP16, NestedFP8 and weights-only FP8,
// through the streaming loader and from host weights, at TP 1 and 2. A layer whose parts are
// stored differently (one nested, one plain) keeps its separate GEMMs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "cpu/model_writer.hpp"
#include "cpu/pystd_fixture.hpp"
#include "engine/offline.hpp"
#include "engine/tp_executor.hpp"
#include "nestedfp/half.hpp"

using namespace nestedfp;

namespace {

const std::string kPystd = NESTEDFP_SOURCE_DIR "/models/pystd-16m";

engine::RunnerOptions opts(bool fuse, bool fp8_activations = true) {
  engine::RunnerOptions o = testing_pystd::small_runner_options(fp8_activations);
  o.fuse_projections = fuse;
  return o;
}

std::unique_ptr<ModelExecutor> load(const std::string& dir, int tp, format::ScaleMode mode,
                                    bool fuse, bool fp8_activations = true, bool dummy = false) {
  return testing_pystd::load_cpu_executor(dir, tp, mode, opts(fuse, fp8_activations), dummy, 2);
}

// Logits of every row of a 40-token prefill, then of 4 decode steps.
std::vector<float> run_logits(ModelExecutor& ex, Precision p) {
  engine::SingleSequence s(ex);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(int32_t((i * 131 + 5) % ex.vocab_size()));
  std::vector<float> all = s.feed(prompt, p, true);
  for (int i = 0; i < 4; ++i) {
    const int32_t t = int32_t((i * 29 + 3) % ex.vocab_size());
    const auto l = s.feed(std::span(&t, 1), p);
    all.insert(all.end(), l.begin(), l.end());
  }
  return all;
}

float max_abs(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

void expect_fused(ModelExecutor& ex, int qkv, int gate_up) {
  for (engine::ModelRunner* r : engine::ranks_of(ex)) {
    EXPECT_EQ(r->fused_layers().qkv, qkv);
    EXPECT_EQ(r->fused_layers().gate_up, gate_up);
  }
}

io::ModelConfig small_config(const std::string& type) {
  io::ModelConfig c;
  c.model_type = type;
  c.hidden_size = 128, c.intermediate_size = 256, c.num_layers = 2, c.num_heads = 8;
  c.num_kv_heads = 2, c.head_dim = 16, c.vocab_size = 512, c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-6;
  c.attention_bias = type == "qwen2";
  c.qk_norm = type == "qwen3";
  return c;
}

}  // namespace

TEST(Fusion, Pystd16mFusedGivesTheUnfusedLogitsBitForBit) {
  for (int tp : {1, 2}) {
    for (bool fp8_acts : {true, false}) {
      SCOPED_TRACE(testing::Message() << "TP " << tp << (fp8_acts ? "" : " weights-only FP8"));
      auto fused = load(kPystd, tp, format::ScaleMode::None, true, fp8_acts);
      auto apart = load(kPystd, tp, format::ScaleMode::None, false, fp8_acts);
      expect_fused(*fused, 6, 6);
      expect_fused(*apart, 0, 0);
      for (engine::ModelRunner* r : engine::ranks_of(*fused)) {
        EXPECT_EQ(r->load_report().nested, 42);  // counted per part
        EXPECT_EQ(r->load_report().plain, 0);
      }
      for (Precision p : {Precision::FP16, Precision::FP8}) {
        const auto a = run_logits(*fused, p), b = run_logits(*apart, p);
        EXPECT_GT(max_abs(a), 5.f) << to_string(p);  // real logits
        EXPECT_TRUE(a == b) << to_string(p) << ": fused logits differ from separate GEMMs";
      }
    }
  }
}

// From host weights (ModelWeights: the accuracy tools' path), with q/k/v biases (qwen2), q/k
// norms (qwen3) and channel scales (per-row k concatenated with the rows).
TEST(Fusion, HostWeightsFusedGivesTheUnfusedLogitsBitForBit) {
  for (const char* type : {"llama", "qwen2", "qwen3"}) {
    SCOPED_TRACE(type);
    const auto w = engine::ModelWeights::random(small_config(type), format::ScaleMode::Channel, 3);
    engine::ModelRunner fused(backend::make_cpu_backend(2), w, opts(true)),
        apart(backend::make_cpu_backend(2), w, opts(false));
    expect_fused(fused, 2, 2);
    for (Precision p : {Precision::FP16, Precision::FP8}) {
      const auto a = run_logits(fused, p);
      EXPECT_GT(max_abs(a), 0.5f);
      EXPECT_TRUE(a == run_logits(apart, p)) << to_string(p);
    }
    // Fusing moves no weight bytes: the memory report counts each weight once.
    EXPECT_EQ(fused.memory().nested_linears, apart.memory().nested_linears);
    EXPECT_EQ(fused.memory().weights(), apart.memory().weights());
  }
}

// Layer 0's k and layer 1's up cannot be nested (a 4.0 under --nested-scale none), so those
// layers' qkv / gate_up stay separate GEMMs (the other parts nested, as without fusion), and the
// rest fuses. Streamed at TP 1 and 2, and from host weights.
TEST(Fusion, PartsStoredDifferentlyKeepSeparateGemms) {
  auto w = engine::ModelWeights::random(small_config("llama"), format::ScaleMode::None, 5);
  for (engine::HostLinear* l : {&w.layers[0].k, &w.layers[1].up}) {
    l->fp16 = format::unscale_merge_tensor(*l->nested);
    l->nested.reset();
    l->fp16[37] = float_to_fp16(4.f);
  }
  const std::string dir = testing_models::write_model(w, "llama", "fusion-mixed");
  for (int tp : {1, 2}) {
    SCOPED_TRACE(testing::Message() << "TP " << tp);
    auto fused = load(dir, tp, format::ScaleMode::None, true);
    auto apart = load(dir, tp, format::ScaleMode::None, false);
    expect_fused(*fused, 1, 1);
    for (engine::ModelRunner* r : engine::ranks_of(*fused)) {
      EXPECT_EQ(r->load_report().plain, 2);
      EXPECT_EQ(r->load_report().nested, 12);
    }
    for (Precision p : {Precision::FP16, Precision::FP8})
      EXPECT_TRUE(run_logits(*fused, p) == run_logits(*apart, p)) << to_string(p);
  }
  const auto disk = engine::ModelWeights::load(dir, format::ScaleMode::None);
  engine::ModelRunner fused(backend::make_cpu_backend(2), disk, opts(true)),
      apart(backend::make_cpu_backend(2), disk, opts(false));
  expect_fused(fused, 1, 1);
  for (Precision p : {Precision::FP16, Precision::FP8})
    EXPECT_TRUE(run_logits(fused, p) == run_logits(apart, p)) << to_string(p);
}

// k and v of 4 rows miss the GPU GEMMs' N alignment (8): alone they would stay plain on a GPU
// while a fused qkv could be nested, so qkv stays apart; gate_up fuses. Streamed and from host
// weights, logits as without fusion.
TEST(Fusion, PartsOffTheGemmAlignmentStayApart) {
  io::ModelConfig c = small_config("llama");
  c.hidden_size = 64, c.num_heads = 2, c.num_kv_heads = 1, c.head_dim = 4;
  const auto w = engine::ModelWeights::random(c, format::ScaleMode::Channel, 9);
  engine::ModelRunner fused(backend::make_cpu_backend(2), w, opts(true)),
      apart(backend::make_cpu_backend(2), w, opts(false));
  expect_fused(fused, 0, 2);
  for (Precision p : {Precision::FP16, Precision::FP8})
    EXPECT_TRUE(run_logits(fused, p) == run_logits(apart, p)) << to_string(p);
  const std::string dir = testing_models::write_model(w, "llama", "fusion-unaligned");
  auto streamed = load(dir, 1, format::ScaleMode::Channel, true);
  expect_fused(*streamed, 0, 2);
  EXPECT_EQ(engine::ranks_of(*streamed).front()->load_report().nested, 14);
  EXPECT_TRUE(run_logits(*streamed, Precision::FP8) == run_logits(apart, Precision::FP8));
}

// --weights fp16 fuses the plain weights; NESTEDFP_NO_FUSE=1 turns fusion off; dummy weights
// fuse into one random fill per group.
TEST(Fusion, PlainWeightsSwitchAndDummyWeights) {
  engine::LoadOptions lo;
  lo.model_dir = kPystd, lo.nested = false;
  auto plain = engine::ModelRunner::load(backend::make_cpu_backend(2), lo, opts(true));
  auto plain_apart = engine::ModelRunner::load(backend::make_cpu_backend(2), lo, opts(false));
  expect_fused(*plain, 6, 6);
  EXPECT_EQ(plain->load_report().plain, 42);
  EXPECT_TRUE(run_logits(*plain, Precision::FP16) == run_logits(*plain_apart, Precision::FP16));

  setenv("NESTEDFP_NO_FUSE", "1", 1);
  auto off = load(kPystd, 1, format::ScaleMode::None, true);
  unsetenv("NESTEDFP_NO_FUSE");
  expect_fused(*off, 0, 0);

  auto dummy = load(kPystd, 1, format::ScaleMode::None, true, true, /*dummy=*/true);
  expect_fused(*dummy, 6, 6);
  const auto l = run_logits(*dummy, Precision::FP8);
  EXPECT_TRUE(std::all_of(l.begin(), l.end(), [](float x) { return std::isfinite(x); }));
  EXPECT_GT(max_abs(l), 0.f);
}
