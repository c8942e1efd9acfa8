// Per-token E4M3 quantization against a CPU reference, and the fused RMSNorm / SiLU·mul versions
// bit-identical to the standalone kernel applied to their own FP16 output.
#include <gtest/gtest.h>

#include <cmath>

#include "gpu_util.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/format.hpp"

namespace nestedfp::gputest {
namespace {

// The reference: scale = amax / 448, q = RNE_sat(x / scale), fp32 IEEE arithmetic.
void cpu_quantize(const std::vector<uint16_t>& x, int M, int K, int64_t ld, std::vector<uint8_t>& q,
                  std::vector<float>& s) {
  q.assign(size_t(M) * K, 0);
  s.assign(M, 0.f);
  for (int m = 0; m < M; ++m) {
    float amax = 0.f;
    for (int c = 0; c < K; ++c) amax = std::max(amax, std::fabs(h2f(x[m * ld + c])));
    const float scale = amax / 448.f;
    s[m] = scale;
    for (int c = 0; c < K; ++c)
      q[size_t(m) * K + c] = scale == 0.f ? 0 : format::e4m3_encode(h2f(x[m * ld + c]) / scale);
  }
}

struct Shape {
  int M, K;
};
const Shape kShapes[] = {{1, 4096}, {7, 1000}, {64, 2048}, {300, 4104}, {4096, 512}, {3, 14336}};

TEST(Quant, StandaloneMatchesCpuReference) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto [M, K] : kShapes) {
    SCOPED_TRACE(testing::Message() << "M=" << M << " K=" << K);
    for (int64_t ld : {int64_t(K), int64_t(K) + 8, int64_t(K) + 3}) {
      auto x = random_rows(rng, M, int(ld), -6.f, 6.f);
      if (M > 2) std::fill(x.begin() + ld, x.begin() + ld + K, 0);  // one all-zero row
      DeviceBuffer<uint16_t> dx(x);
      DeviceBuffer<uint8_t> q(size_t(M) * K);
      DeviceBuffer<float> s(M);
      q.poison();
      s.poison();
      cuda::quantize_e4m3_per_token(as_half(dx.get()), ld, M, K, q.get(), s.get(), nullptr);
      std::vector<uint8_t> rq;
      std::vector<float> rs;
      cpu_quantize(x, M, K, ld, rq, rs);
      EXPECT_EQ(s.download(), rs) << "ld " << ld;
      EXPECT_EQ(q.download(), rq) << "ld " << ld;
    }
  }
}

// Tensor parallelism's two halves: token scales then quantization under given scales are the
// standalone kernel's bits on whole rows; on a column slice with the whole row's scale, the
// slice of the whole row's quantization.
TEST(Quant, TokenScalesThenScaledQuantizeMatchStandalone) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto [M, K] : kShapes) {
    SCOPED_TRACE(testing::Message() << "M=" << M << " K=" << K);
    auto x = random_rows(rng, M, K, -6.f, 6.f);
    if (M > 2) std::fill(x.begin() + K, x.begin() + 2 * K, 0);  // one all-zero row
    std::vector<uint8_t> rq;
    std::vector<float> rs;
    cpu_quantize(x, M, K, K, rq, rs);
    DeviceBuffer<uint16_t> dx(x);
    DeviceBuffer<uint8_t> q(size_t(M) * K);
    DeviceBuffer<float> s(M);
    q.poison();
    s.poison();
    cuda::token_scales_e4m3(as_half(dx.get()), K, M, K, s.get(), nullptr);
    EXPECT_EQ(s.download(), rs);
    cuda::quantize_e4m3_scaled(as_half(dx.get()), K, M, K, s.get(), q.get(), nullptr);
    EXPECT_EQ(q.download(), rq);
    // The second half of each row under the whole row's scale (vectorized where aligned).
    const int first = K / 2, width = K - first;
    DeviceBuffer<uint8_t> qs(size_t(M) * width);
    qs.poison();
    cuda::quantize_e4m3_scaled(as_half(dx.get()) + first, K, M, width, s.get(), qs.get(), nullptr);
    const std::vector<uint8_t> got = qs.download();
    for (int m = 0; m < M; ++m)
      for (int c = 0; c < width; ++c)
        ASSERT_EQ(got[size_t(m) * width + c], rq[size_t(m) * K + first + c])
            << "row " << m << " column " << first + c;
  }
}

// Runs the standalone quantization on y (dense [M, K]) on the GPU.
void standalone(const std::vector<uint16_t>& y, int M, int K, std::vector<uint8_t>& q,
                std::vector<float>& s) {
  DeviceBuffer<uint16_t> dy(y);
  DeviceBuffer<uint8_t> dq(size_t(M) * K);
  DeviceBuffer<float> ds(M);
  dq.poison();
  ds.poison();
  cuda::quantize_e4m3_per_token(as_half(dy.get()), K, M, K, dq.get(), ds.get(), nullptr);
  q = dq.download();
  s = ds.download();
}

// Counts FP16 results that differ (as ordered integers) and those more than two ulps away: the
// reference's fp64 sum of squares can move r by one fp32 ulp, hence fp16(x·r) by one ulp, and
// the product with w by up to two.
void compare_ulps(const std::vector<uint16_t>& got, const std::vector<uint16_t>& want, size_t& off1,
                  size_t& far) {
  auto ord = [](uint16_t h) { return (h & 0x8000) ? -int(h & 0x7FFF) : int(h); };
  off1 = far = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const int d = std::abs(ord(got[i]) - ord(want[i]));
    off1 += d >= 1;
    far += d > 2 || !std::isfinite(h2f(got[i]));
  }
}

TEST(Quant, FusedRmsNormIsBitIdenticalToStandalone) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const float eps = 1e-5f;
  for (auto [M, K] : kShapes) {
    SCOPED_TRACE(testing::Message() << "M=" << M << " K=" << K);
    for (bool with_residual : {false, true}) {
      auto x = random_rows(rng, M, K, -3.f, 3.f);
      auto res = random_rows(rng, M, K, -3.f, 1.f);
      auto w = random_rows(rng, 1, K, -1.f, 0.f);
      DeviceBuffer<uint16_t> dx(x), dw(w), dres(res), y(size_t(M) * K);
      DeviceBuffer<uint8_t> q(size_t(M) * K), q2(size_t(M) * K);
      DeviceBuffer<float> s(M), s2(M);
      for (auto* b : {&y}) b->poison();
      q.poison();
      q2.poison();
      s.poison();
      s2.poison();
      cuda::rmsnorm(as_half(dx.get()), K, as_half(dw.get()), eps, M, K, as_half(y.get()), q.get(),
                    s.get(), nullptr, with_residual ? as_half(dres.get()) : nullptr);
      const auto got_y = y.download();
      // CPU reference of the FP16 output (fp64 sum of squares): equal or one ulp (summation order).
      std::vector<uint16_t> want(size_t(M) * K), new_res(size_t(M) * K);
      for (int m = 0; m < M; ++m) {
        double ss = 0;
        for (int c = 0; c < K; ++c) {
          uint16_t v = x[size_t(m) * K + c];
          if (with_residual) v = float_to_fp16(h2f(v) + h2f(res[size_t(m) * K + c]));
          new_res[size_t(m) * K + c] = v;
          ss += double(h2f(v)) * h2f(v);
        }
        const float r = 1.f / std::sqrt(float(ss / K) + eps);
        for (int c = 0; c < K; ++c) {
          const uint16_t n = float_to_fp16(h2f(new_res[size_t(m) * K + c]) * r);
          want[size_t(m) * K + c] = float_to_fp16(h2f(n) * h2f(w[c]));
        }
      }
      size_t off1, far;
      compare_ulps(got_y, want, off1, far);
      EXPECT_EQ(far, 0u);
      EXPECT_LE(off1, want.size() / 100 + 1) << "too many 1-ulp differences";
      if (with_residual) {
        EXPECT_EQ(dres.download(), new_res) << "residual stream x + r";
      }
      // The fused quantization equals the standalone kernel on the same FP16 values.
      std::vector<uint8_t> sq;
      std::vector<float> ss;
      standalone(got_y, M, K, sq, ss);
      EXPECT_EQ(q.download(), sq);
      EXPECT_EQ(s.download(), ss);
      // Quantized output only (no FP16 store) gives the same bytes.
      if (!with_residual) {
        cuda::rmsnorm(as_half(dx.get()), K, as_half(dw.get()), eps, M, K, nullptr, q2.get(),
                      s2.get(), nullptr);
        EXPECT_EQ(q2.download(), sq);
        EXPECT_EQ(s2.download(), ss);
      }
    }
  }
}

TEST(Quant, FusedSiluMulIsBitIdenticalToStandalone) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto [M, I] : kShapes) {
    SCOPED_TRACE(testing::Message() << "M=" << M << " I=" << I);
    // A fused gate_up output [M, 2I]: gate = columns [0, I), up = [I, 2I).
    auto gu = random_rows(rng, M, 2 * I, -2.f, 3.f);
    DeviceBuffer<uint16_t> dgu(gu), y(size_t(M) * I);
    DeviceBuffer<uint8_t> q(size_t(M) * I), q2(size_t(M) * I);
    DeviceBuffer<float> s(M), s2(M);
    y.poison();
    q.poison();
    q2.poison();
    s.poison();
    s2.poison();
    cuda::silu_mul(as_half(dgu.get()), as_half(dgu.get() + I), 2 * I, M, I, as_half(y.get()),
                   q.get(), s.get(), nullptr);
    const auto got_y = y.download();
    std::vector<uint16_t> want(size_t(M) * I);
    for (int m = 0; m < M; ++m)
      for (int c = 0; c < I; ++c) {
        const float g = h2f(gu[size_t(m) * 2 * I + c]), u = h2f(gu[size_t(m) * 2 * I + I + c]);
        const uint16_t a = float_to_fp16(g / (1.f + std::exp(-g)));
        want[size_t(m) * I + c] = float_to_fp16(h2f(a) * u);
      }
    size_t off1, far;
    compare_ulps(got_y, want, off1, far);
    EXPECT_EQ(far, 0u);
    EXPECT_LE(off1, want.size() / 100 + 1);
    std::vector<uint8_t> sq;
    std::vector<float> ss;
    standalone(got_y, M, I, sq, ss);
    EXPECT_EQ(q.download(), sq);
    EXPECT_EQ(s.download(), ss);
    cuda::silu_mul(as_half(dgu.get()), as_half(dgu.get() + I), 2 * I, M, I, nullptr, q2.get(),
                   s2.get(), nullptr);
    EXPECT_EQ(q2.download(), sq);
    EXPECT_EQ(s2.download(), ss);
  }
}

TEST(Quant, RejectsBadArguments) {
  DeviceBuffer<uint16_t> x(16);
  DeviceBuffer<uint8_t> q(16);
  DeviceBuffer<float> s(1);
  EXPECT_THROW(cuda::quantize_e4m3_per_token(as_half(x.get()), 8, 1, 16, q.get(), s.get(), nullptr),
               Error);
  EXPECT_THROW(
      cuda::quantize_e4m3_per_token(as_half(x.get()), 70000, 1, 70000, q.get(), s.get(), nullptr),
      Error);
  EXPECT_THROW(cuda::rmsnorm(as_half(x.get()), 16, as_half(x.get()), 1e-5f, 1, 16, nullptr, nullptr,
                             nullptr, nullptr),
               Error);
}

}  // namespace
}  // namespace nestedfp::gputest
