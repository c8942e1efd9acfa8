// FP8 baseline weight formats (per-tensor / per-channel max-abs E4M3) on the shared FP8 path,
// and the per-layer error report, on models/pystd-16m against REFERENCE.json.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "backend/cpu/kernels.hpp"
#include "backend/cpu/thread_pool.hpp"
#include "cpu/pystd_fixture.hpp"
#include "engine/layer_error.hpp"
#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/fp8_weight.hpp"
#include "nestedfp/half.hpp"
#include "nestedfp/tokenizer.hpp"

using namespace nestedfp;

namespace {

// Independent E4M3 (bias 7, max 448): value by formula, encoding by exhaustive nearest search
// with ties to the even code, saturating.
double ref_decode(int c) {
  const int e = (c >> 3) & 0xF, m = c & 7;
  const double v = e == 0 ? std::ldexp(double(m), -9) : std::ldexp(1.0 + m / 8.0, e - 7);
  return (c & 0x80) ? -v : v;
}
uint8_t ref_encode(double x) {
  const double a = std::fabs(x);
  int best = 0;
  double bd = INFINITY;
  for (int c = 0; c <= 0x7E; ++c) {
    const double d = std::fabs(ref_decode(c) - a);
    if (d < bd || (d == bd && (c & 1) == 0)) bd = d, best = c;
  }
  return uint8_t(best | (std::signbit(x) ? 0x80 : 0));
}

// Rows of random normals with varied magnitudes, an outlier row, a zero row, tiny values.
std::vector<uint16_t> test_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<uint16_t> w(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float sd = std::ldexp(1.f, -int(r % 12));  // 1 ... 2^-11
    for (int64_t c = 0; c < cols; ++c) w[r * cols + c] = float_to_fp16(sd * nd(g));
  }
  for (int64_t c = 0; c < cols; ++c) w[2 * cols + c] = 0;  // all-zero row
  w[3 * cols + 5] = float_to_fp16(37.5f);                  // outlier
  w[4 * cols + 1] = float_to_fp16(-std::ldexp(1.f, -20));  // fp16 subnormal
  return w;
}

void check_against_reference(format::Fp8Granularity g) {
  const int64_t R = 40, C = 96;
  const auto w = test_matrix(R, C, 7);
  const auto t = format::quantize_fp8(w.data(), R, C, g);
  ASSERT_EQ(t.q.size(), size_t(R * C));
  ASSERT_EQ(t.scale.size(), size_t(R));
  float tensor_max = 0;
  for (auto h : w) tensor_max = std::max(tensor_max, std::fabs(fp16_to_float(h)));
  int saturated = 0;
  for (int64_t r = 0; r < R; ++r) {
    float row_max = 0;
    for (int64_t c = 0; c < C; ++c)
      row_max = std::max(row_max, std::fabs(fp16_to_float(w[r * C + c])));
    const float s = (g == format::Fp8Granularity::PerTensor ? tensor_max : row_max) / 448.f;
    ASSERT_EQ(t.scale[r], s) << "row " << r;
    for (int64_t c = 0; c < C; ++c) {
      const float x = fp16_to_float(w[r * C + c]);
      const uint8_t want = s == 0.f ? 0 : ref_encode(double(x / s));
      ASSERT_EQ(int(t.q[r * C + c]), int(want)) << "row " << r << " col " << c << " w " << x;
      saturated += (t.q[r * C + c] & 0x7F) == 0x7E;
    }
  }
  // Each non-zero row's (or the tensor's) max maps to 448.
  EXPECT_GE(saturated, g == format::Fp8Granularity::PerTensor ? 1 : int(R - 1));
  // Round trip: relative error of a max-abs E4M3 value is at most 2^-4 of its binade (normals).
  const auto d = format::dequantize_fp8(t);
  for (int64_t r = 0; r < R; ++r) {
    if (t.scale[r] == 0) continue;
    for (int64_t c = 0; c < C; ++c) {
      const double x = fp16_to_float(w[r * C + c]);
      if (std::fabs(x) >= t.scale[r] * std::ldexp(1.0, -6)) {
        ASSERT_LE(std::fabs(d[r * C + c] - x), std::fabs(x) / 16 + 1e-12) << r << "," << c;
      }
    }
  }
}

}  // namespace

TEST(Fp8Weight, PerTensorMatchesReference) {
  check_against_reference(format::Fp8Granularity::PerTensor);
}
TEST(Fp8Weight, PerChannelMatchesReference) {
  check_against_reference(format::Fp8Granularity::PerChannel);
}

TEST(Fp8Weight, RejectsNonFinite) {
  std::vector<uint16_t> w(8, float_to_fp16(0.5f));
  w[5] = 0x7C00;
  EXPECT_THROW(format::quantize_fp8(w.data(), 2, 4, format::Fp8Granularity::PerChannel), Error);
}

// The FP8 GEMM on a baseline weight: Y = (Σ e4m3(qx)·e4m3(qw)) · scale_m · s_r, in both ISAs.
TEST(Fp8Weight, GemmAppliesPerRowScale) {
  const int64_t M = 9, N = 37, K = 300;
  const auto w = test_matrix(N, K, 11);
  const auto t = format::quantize_fp8(w.data(), N, K, format::Fp8Granularity::PerChannel);
  const auto pw = cpu::pack_fp8(t.q.data(), t.scale.data(), N, K);
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> qa(size_t(M * K)), rs(static_cast<size_t>(M));
  for (auto& v : qa) v = float(ref_decode(ref_encode(nd(g) * 100)));
  for (auto& v : rs) v = 0.01f + 0.001f * float(g() % 100);
  cpu::ThreadPool pool(2);
  const cpu::Isa saved = cpu::active_isa();
  for (cpu::Isa isa : {cpu::Isa::Scalar, cpu::Isa::Avx2}) {
    cpu::set_active_isa(isa);
    std::vector<uint16_t> Y(size_t(M * N));
    cpu::gemm(pool, qa.data(), M, pw, false, rs.data(),
              Y.data());  // FP8 weights decode E4M3 anyway
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += double(qa[m * K + k]) * ref_decode(t.q[n * K + k]);
        const double want = acc * rs[m] * t.scale[n];
        ASSERT_NEAR(fp16_to_float(Y[m * N + n]), want, std::fabs(want) * 2e-3 + 1e-6)
            << cpu::to_string(isa) << " m " << m << " n " << n;
      }
  }
  cpu::set_active_isa(saved);
}

// ---- on the real model ------------------------------------------------------------------------
namespace {

using namespace nestedfp::testing_pystd;

std::vector<double> first8(engine::LinearStorage storage, Precision p) {
  engine::RunnerOptions o;
  o.num_kv_blocks = 32;
  engine::ModelRunner r(backend::make_cpu_backend(),
                        engine::ModelWeights::load(kModel, format::ScaleMode::None, storage), o);
  return first8_chunk_nll(r, p);
}

std::vector<double> want(const char* key) { return reference_first8(key); }

// As NestedFp8ChunkNll in acceptance_test.cpp: per-token E4M3 rounding of activations makes single
// chunks chaotic at the 0.01 level (summation order alone moves them by up to 0.007), so the
// reference is matched on the 8-chunk mean within 0.004 and per chunk within 0.015.
void check_baseline(engine::LinearStorage storage, const char* key) {
  const auto got = first8(storage, Precision::FP8), ref = want(key), f16 = want("fp16");
  EXPECT_NEAR(mean(got), mean(ref), 0.004);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(got[i], ref[i], 0.015) << "chunk " << i;
  // FP8 must change the result (the 8-chunk mean need not rise: per-tensor lowers it slightly,
  // in the reference too), chunk by chunk well beyond the FP16 tolerance of 0.002.
  double moved = 0;
  for (int i = 0; i < 8; ++i) moved = std::max(moved, std::fabs(got[i] - f16[i]));
  EXPECT_GT(moved, 0.004) << "FP8 weights and activations changed nothing";
}

}  // namespace

TEST(Fp8Baseline, PerTensorChunkNll) {
  check_baseline(engine::LinearStorage::Fp8PerTensor, "fp8_per_tensor");
}
TEST(Fp8Baseline, PerChannelChunkNll) {
  check_baseline(engine::LinearStorage::Fp8PerChannel, "fp8_per_channel");
}

TEST(Fp8Baseline, LoaderQuantizesDecoderLinearsOnly) {
  const auto w = engine::ModelWeights::load(kModel, format::ScaleMode::None,
                                            engine::LinearStorage::Fp8PerTensor);
  EXPECT_EQ(w.report.fp8, 7 * w.config.num_layers);
  EXPECT_EQ(w.report.nested, 0);
  EXPECT_FALSE(w.lm_head.fp8);
  EXPECT_FALSE(w.lm_head.fp16.empty());
  const auto& q = *w.layers[0].q.fp8;
  EXPECT_TRUE(w.layers[0].q.fp16.empty()) << "a baseline keeps no FP16 copy";
  EXPECT_EQ(q.scale.front(), q.scale.back());
}

// Measured on pystd-16m (1 chunk): errors 0.010 ... 0.036, means none 0.025505, channel
// 0.025505, per-tensor 0.025453, per-channel 0.025181. Power-of-two row scales cannot change
// E4M3's relative rounding in the normal range (3 mantissa bits in every binade), only that of
// weights that fall into E4M3's subnormal range unscaled (|w| < 2^-14), so NestedFP8 channel
// equals none to about 1e-7 here (channel is 2e-9 *above* none on the mean: no "channel <= none"
// claim holds beyond noise), while max-abs FP8 scales keep each row's largest weight exact.
TEST(LayerErrors, SmallNonZeroAndChannelScalesMatchNone) {
  const auto w = engine::ModelWeights::load(kModel, format::ScaleMode::None);
  const auto rep = engine::layer_errors(w, text_ids(), 1);
  const auto& modes = engine::fp8_modes();
  ASSERT_EQ(rep.linears.size(), size_t(7 * w.config.num_layers));
  EXPECT_EQ(rep.tokens, 512);
  for (const auto& e : rep.linears)
    for (size_t m = 0; m < modes.size(); ++m) {
      EXPECT_TRUE(e.fp8[m]) << e.layer << "." << e.linear << " " << modes[m].name;
      // E4M3 keeps 3 mantissa bits: one rounding has an RMS relative error of about 2^-4/sqrt(3)
      // times E[1/m^2]^(1/2) = 0.027 for log-uniform mantissas m, two roundings (weight and
      // activation) about 0.037; sums of many products land a little below (0.010 ... 0.036).
      EXPECT_GT(e.rel_error[m], 0.006) << e.layer << "." << e.linear << " " << modes[m].name;
      EXPECT_LT(e.rel_error[m], 0.05) << e.layer << "." << e.linear << " " << modes[m].name;
    }
  // modes: nested-none, nested-channel, fp8-per-tensor, fp8-per-channel
  int differ = 0;
  for (const auto& e : rep.linears) differ += e.rel_error[0] != e.rel_error[1];
  EXPECT_GT(differ, 0) << "channel scales changed no layer's result";
  EXPECT_NEAR(rep.mean_rel_error[1], rep.mean_rel_error[0], 1e-4 * rep.mean_rel_error[0]);
  EXPECT_LT(rep.mean_rel_error[3], rep.mean_rel_error[2])
      << "per-channel should beat per-tensor on average";
  EXPECT_GT(std::fabs(rep.mean_rel_error[2] - rep.mean_rel_error[0]), 1e-6)
      << "baseline equals nested";
}

namespace {

double ref_dequant(uint8_t b) {
  const int e = (b >> 3) & 0xF, m = b & 7;
  const double v = e == 0 ? std::ldexp(double(m), -9) : std::ldexp(1.0 + m / 8.0, e - 7);
  return (b & 0x80) ? -v : v;
}

// ‖Y8 − Y‖ / ‖Y‖ of one linear on captured fp16 inputs, in double with the independent E4M3 above:
// activations per token (max-abs / 448); weights as NestedFP8 reads them (RNE of w·2^8 to E4M3,
// times 2^-8) or per-channel max-abs FP8.
double independent_rel_error(const std::vector<uint16_t>& x, int64_t M,
                             const std::vector<uint16_t>& w, int64_t N, int64_t K,
                             bool per_channel) {
  std::vector<double> xd(size_t(M * K)), x8(size_t(M * K)), wd(size_t(N * K)), w8(size_t(N * K));
  for (int64_t m = 0; m < M; ++m) {
    double mx = 0;
    for (int64_t k = 0; k < K; ++k)
      mx = std::max(mx, std::fabs(xd[m * K + k] = fp16_to_float(x[m * K + k])));
    const float s = float(mx) / 448.f;
    for (int64_t k = 0; k < K; ++k)
      x8[m * K + k] = s == 0 ? 0.0 : ref_dequant(ref_encode(double(float(xd[m * K + k]) / s))) * s;
  }
  for (int64_t n = 0; n < N; ++n) {
    double mx = 0;
    for (int64_t k = 0; k < K; ++k)
      mx = std::max(mx, std::fabs(wd[n * K + k] = fp16_to_float(w[n * K + k])));
    const float s = float(mx) / 448.f;
    for (int64_t k = 0; k < K; ++k) {
      const double v = wd[n * K + k];
      w8[n * K + k] = per_channel
                          ? (s == 0 ? 0.0 : ref_dequant(ref_encode(double(float(v) / s))) * s)
                          : ref_dequant(ref_encode(v * 256.0)) / 256.0;
    }
  }
  double num = 0, den = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double y = 0, y8 = 0;
      for (int64_t k = 0; k < K; ++k)
        y += xd[m * K + k] * wd[n * K + k], y8 += x8[m * K + k] * w8[n * K + k];
      num += (y8 - y) * (y8 - y), den += y * y;
    }
  return std::sqrt(num / den);
}

}  // namespace

// The report's numbers against an independent computation of two linears (first and last layer)
// on the same captured inputs: a wrong quantization, scale or error formula in layer_errors (or in
// the FP8 GEMM it runs) moves them by far more than the fp16 output rounding (~1e-4) allowed here.
TEST(LayerErrors, MatchIndependentComputation) {
  const auto w = engine::ModelWeights::load(kModel, format::ScaleMode::None);
  const auto rep = engine::layer_errors(w, text_ids(), 1);
  const int last = w.config.num_layers - 1;
  engine::RunnerOptions o;
  o.num_kv_blocks = 32;
  engine::ModelRunner r(backend::make_cpu_backend(), w, o);
  std::vector<uint16_t> xq, xd;
  r.set_linear_tap([&](int layer, const char* name, const backend::Activation& a, int64_t M) {
    std::vector<uint16_t>* dst = layer == 0 && std::string(name) == "q"         ? &xq
                                 : layer == last && std::string(name) == "down" ? &xd
                                                                                : nullptr;
    if (!dst) return;
    const int64_t K = dst == &xq ? w.config.hidden_size : w.config.intermediate_size;
    dst->resize(size_t(M * K));
    r.backend().download(dst->data(), *a.f16, dst->size() * 2);
  });
  engine::SingleSequence seq(r);
  seq.feed(std::span(text_ids()).subspan(0, 512), Precision::FP16);
  const struct {
    const engine::HostLinear& l;
    const std::vector<uint16_t>& x;
    const engine::LinearError& e;
  } cases[] = {{w.layers[0].q, xq, rep.linears[0]},
               {w.layers[size_t(last)].down, xd, rep.linears.back()}};
  for (const auto& c : cases) {
    ASSERT_TRUE(c.l.nested) << c.l.name;
    ASSERT_EQ(c.x.size(), size_t(512 * c.l.cols)) << c.l.name;
    const auto w16 = format::unscale_merge_tensor(*c.l.nested);
    const double none = independent_rel_error(c.x, 512, w16, c.l.rows, c.l.cols, false);
    const double chan = independent_rel_error(c.x, 512, w16, c.l.rows, c.l.cols, true);
    EXPECT_NEAR(c.e.rel_error[0], none, 0.01 * none) << c.l.name << " nested-none";
    EXPECT_NEAR(c.e.rel_error[3], chan, 0.01 * chan) << c.l.name << " fp8-per-channel";
  }
  EXPECT_EQ(rep.linears[0].linear, "q");
  EXPECT_EQ(rep.linears.back().linear, "down");
}
