// What actually reaches the GEMMs of an FP8 step (through ModelRunner::set_linear_tap): every
// decoder linear on E4M3 weights gets per-token E4M3 activations whose scale is the row max / 448,
// bit-exactly the quantization of the fp16 input where that input is known; and full NestedFP8
// moves the logits by more than weights-only FP8 does. Perplexity tolerances cannot tell these
// modes apart (their NLL differs by ~0.001); these checks can.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "format/reference.hpp"
#include "nestedfp/half.hpp"

using namespace nestedfp;

namespace {

io::ModelConfig config() {
  io::ModelConfig c;
  c.model_type = "llama";
  c.hidden_size = 64, c.intermediate_size = 96, c.num_layers = 2, c.num_heads = 4,
  c.num_kv_heads = 2;
  c.head_dim = 16, c.vocab_size = 300, c.max_position_embeddings = 256, c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000;
  return c;
}

std::unique_ptr<engine::ModelRunner> make(bool fp8_activations) {
  engine::RunnerOptions o;
  o.num_kv_blocks = 16;
  o.fp8_activations = fp8_activations;
  return std::make_unique<engine::ModelRunner>(
      backend::make_cpu_backend(2),
      engine::ModelWeights::random(config(), format::ScaleMode::None, 11), o);
}

std::vector<int32_t> tokens() {
  std::vector<int32_t> t;
  for (int i = 0; i < 40; ++i) t.push_back((i * 53 + 7) % 300);
  return t;
}

int64_t in_features(const io::ModelConfig& c, const std::string& linear) {
  if (linear == "o") return int64_t(c.num_heads) * c.head_dim;
  if (linear == "down") return c.intermediate_size;
  return c.hidden_size;
}

// One tap call's activation, copied to the host.
struct Captured {
  int64_t M = 0, K = 0;
  std::vector<uint16_t> f16;  // empty when not given
  std::vector<uint8_t> q8;    // empty when not given
  std::vector<float> scale;
};
using Key = std::pair<int, std::string>;

std::map<Key, Captured> capture(engine::ModelRunner& r, Precision p) {
  std::map<Key, Captured> out;
  r.set_linear_tap([&](int layer, const char* name, const backend::Activation& a, int64_t M) {
    Captured c;
    c.M = M, c.K = in_features(r.config(), name);
    if (a.f16) {
      c.f16.resize(size_t(M * c.K));
      r.backend().download(c.f16.data(), *a.f16, c.f16.size() * 2);
    }
    if (a.q8) {
      EXPECT_TRUE(a.scale) << "E4M3 activations without their scales";
      c.q8.resize(size_t(M * c.K));
      c.scale.resize(size_t(M));
      r.backend().download(c.q8.data(), *a.q8, c.q8.size());
      r.backend().download(c.scale.data(), *a.scale, c.scale.size() * 4);
    }
    out[{layer, name}] = std::move(c);
  });
  engine::SingleSequence seq(r, int64_t(p));
  seq.feed(tokens(), p);
  r.set_linear_tap({});
  return out;
}

}  // namespace

TEST(Fp8Inputs, EveryFp8GemmGetsPerTokenE4m3WithRowMaxScale) {
  auto r = make(true);
  const auto got = capture(*r, Precision::FP8);
  ASSERT_EQ(got.size(), 14u);  // 2 layers x 7 linears
  for (const auto& [key, c] : got) {
    const std::string where = std::to_string(key.first) + "." + key.second;
    ASSERT_EQ(c.q8.size(), size_t(c.M * c.K))
        << where << ": an FP8 step fed this GEMM no E4M3 activations";
    for (int64_t m = 0; m < c.M; ++m) {
      const float s = c.scale[size_t(m)];
      ASSERT_TRUE(std::isfinite(s) && s > 0) << where << " token " << m << " scale " << s;
      int top = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const uint8_t b = c.q8[size_t(m * c.K + k)];
        ASSERT_NE(b & 0x7F, 0x7F) << where << ": E4M3 NaN code";
        top = std::max(top, b & 0x7F);
      }
      // The scale is the row's max-abs / 448: the largest element is exactly +-448 (code 0x7E).
      EXPECT_EQ(top, 0x7E) << where << " token " << m << ": scale is not the row max / 448";
    }
  }
}

TEST(Fp8Inputs, QuantizationIsBitExactAgainstAnIndependentReference) {
  // Layer 0's q/k/v input (RMSNorm of the embeddings) is the same in FP16 and FP8 steps, so the
  // FP16 step shows the fp16 values that the FP8 step must have quantized.
  auto r = make(true);
  const auto f16 = capture(*r, Precision::FP16), f8 = capture(*r, Precision::FP8);
  const Captured &x = f16.at({0, "q"}), &q = f8.at({0, "q"});
  ASSERT_EQ(x.f16.size(), q.q8.size());
  for (int64_t m = 0; m < x.M; ++m) {
    double mx = 0;
    for (int64_t k = 0; k < x.K; ++k)
      mx = std::max(mx, std::fabs(test::fp16_value(x.f16[size_t(m * x.K + k)])));
    const float s = float(mx) / 448.f;
    ASSERT_EQ(q.scale[size_t(m)], s) << "token " << m;
    for (int64_t k = 0; k < x.K; ++k) {
      const float v = float(test::fp16_value(x.f16[size_t(m * x.K + k)]));
      ASSERT_EQ(int(q.q8[size_t(m * x.K + k)]), int(test::ref_e4m3_encode(double(v / s))))
          << "token " << m << " k " << k;
    }
  }
  // The o and down inputs are quantized too (the standalone and the fused SiLU path).
  EXPECT_FALSE(f8.at({1, "o"}).q8.empty());
  EXPECT_FALSE(f8.at({1, "down"}).q8.empty());
  EXPECT_TRUE(f8.at({1, "down"}).f16.empty())
      << "FP8-only consumers should not need fp16 activations";
}

TEST(Fp8Inputs, WeightsOnlyModeFeedsFp16AndMovesLogitsLess) {
  auto full = make(true), wo = make(false);
  const auto taps = capture(*wo, Precision::FP8);
  for (const auto& [key, c] : taps) {
    EXPECT_TRUE(c.q8.empty()) << key.first << "." << key.second;
    EXPECT_FALSE(c.f16.empty()) << key.first << "." << key.second;
  }
  const auto t = tokens();
  engine::SingleSequence a(*full), b(*full, 1), c(*wo);
  const auto l16 = a.feed(t, Precision::FP16, true), l8 = b.feed(t, Precision::FP8, true);
  const auto lw = c.feed(t, Precision::FP8, true);
  auto rms = [&](const std::vector<float>& x, const std::vector<float>& y) {
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += double(x[i] - y[i]) * double(x[i] - y[i]);
    return std::sqrt(s / double(x.size()));
  };
  const double full_err = rms(l8, l16), wo_err = rms(lw, l16), between = rms(l8, lw);
  std::printf(
      "  RMS logit change vs FP16: full FP8 %.4g, weights-only %.4g; full vs weights-only %.4g\n",
      full_err, wo_err, between);
  // Quantizing activations adds an error of the same kind as the weights' (3 mantissa bits), so
  // full FP8 is further from FP16 than weights-only, and the two differ by more than float noise.
  EXPECT_GT(wo_err, 0) << "weights-only FP8 equals FP16";
  EXPECT_GT(full_err, 1.2 * wo_err) << "activation quantization added no error";
  EXPECT_GT(between, 0.5 * wo_err) << "full and weights-only FP8 are nearly the same program";
}
