// ops.hpp memory kernels against host references on fresh random data: embedding, gather_rows,
// add_inplace and split_columns (bit exact, both the 16-byte and the unaligned paths), fill_normal
// statistics and determinism, fill_constant, the fp32-output lm_head GEMM, and the copy-bandwidth
// floor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "backend/cuda/ops.hpp"
#include "gpu_util.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::gputest {
namespace {

std::vector<uint16_t> random_halves(std::mt19937_64& rng, size_t n) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<uint16_t> v(n);
  for (auto& h : v) h = float_to_fp16(nd(rng));
  return v;
}

// A copy kernel's result, run with dst at element offset `off` (off = 1 breaks 16-byte alignment).
template <typename Launch>
std::vector<uint16_t> run_rows(size_t n, int off, Launch launch) {
  DeviceBuffer<uint16_t> out(n + 8);
  out.poison();
  launch(as_half(out.get() + off));
  auto v = out.download();
  return {v.begin() + off, v.begin() + off + ptrdiff_t(n)};
}

TEST(Rows, EmbeddingAndGatherCopyTheIndexedRows) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (int64_t cols : {4096, 264, 100, 8, 1}) {
    for (int off : {0, 1}) {
      SCOPED_TRACE(testing::Message() << "cols " << cols << " dst offset " << off);
      const int vocab = 997, M = 37;
      const auto table = random_halves(rng, size_t(vocab) * cols);
      std::vector<int32_t> ids(M);
      for (auto& i : ids) i = int32_t(rng() % vocab);
      ids[3] = ids[5];  // repeated rows are allowed
      DeviceBuffer<uint16_t> dt(table);
      DeviceBuffer<int32_t> di(ids);
      std::vector<uint16_t> want(size_t(M) * cols);
      for (int m = 0; m < M; ++m)
        std::copy_n(table.begin() + int64_t(ids[m]) * cols, cols, want.begin() + int64_t(m) * cols);
      EXPECT_EQ(run_rows(want.size(), off,
                         [&](__half* o) {
                           cuda::embedding(as_half(dt.get()), cols, di.get(), M, o, nullptr);
                         }),
                want);
      EXPECT_EQ(run_rows(want.size(), off,
                         [&](__half* o) {
                           cuda::gather_rows(as_half(dt.get()), cols, di.get(), M, o, nullptr);
                         }),
                want);
    }
  }
}

TEST(Rows, AddInplaceRoundsTheFp32SumOnce) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (size_t n : {size_t(1), size_t(7), size_t(100003), size_t(1) << 20}) {
    for (int off : {0, 1}) {
      SCOPED_TRACE(testing::Message() << "n " << n << " offset " << off);
      auto x = random_halves(rng, n + 8), y = random_halves(rng, n + 8);
      // Magnitudes far apart in part of the data: the sum then really needs rounding.
      for (size_t i = 0; i < x.size(); i += 3) y[i] = float_to_fp16(h2f(y[i]) * 1e-3f);
      DeviceBuffer<uint16_t> dx(x), dy(y);
      cuda::add_inplace(as_half(dx.get() + off), as_half(dy.get() + off), int64_t(n), nullptr);
      auto got = dx.download();
      auto want = x;
      for (size_t i = off; i < off + n; ++i) want[i] = float_to_fp16(h2f(x[i]) + h2f(y[i]));
      EXPECT_EQ(got, want);  // also: nothing outside [off, off + n) was written
    }
  }
}

// A fused qkv output [M, qd + 2 kvd] apart into q, k, v: bit copies, on the 16-byte path (every
// width a multiple of 8, aligned) and the scalar one (an odd width or an unaligned part), and
// nothing written past a part.
TEST(Rows, SplitColumnsCopiesEachPartsColumns) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto [M, w0, w1, w2, off] :
       {std::tuple{1, 4096, 1024, 1024, 0}, std::tuple{37, 384, 128, 128, 0},
        std::tuple{5, 24, 8, 8, 1}, std::tuple{9, 40, 12, 5, 0}}) {
    SCOPED_TRACE(testing::Message() << "M " << M << " widths " << w0 << "/" << w1 << "/" << w2
                                    << " dst offset " << off);
    const int64_t widths[] = {w0, w1, w2}, W = w0 + w1 + w2;
    const auto x = random_halves(rng, size_t(M) * W);
    DeviceBuffer<uint16_t> dx(x);
    std::vector<std::unique_ptr<DeviceBuffer<uint16_t>>> parts;
    __half* dst[3];
    for (int p = 0; p < 3; ++p) {
      parts.push_back(std::make_unique<DeviceBuffer<uint16_t>>(size_t(M) * widths[p] + 8));
      parts.back()->poison();
      dst[p] = as_half(parts.back()->get() + (p == 1 ? off : 0));
    }
    cuda::split_columns(as_half(dx.get()), M, 3, dst, widths, nullptr);
    int64_t c0 = 0;
    for (int p = 0; p < 3; ++p) {
      const auto got = parts[size_t(p)]->download();
      const int o = p == 1 ? off : 0;
      for (int m = 0; m < M; ++m)
        for (int64_t c = 0; c < widths[p]; ++c)
          ASSERT_EQ(got[size_t(o + m * widths[p] + c)], x[size_t(m * W + c0 + c)])
              << "part " << p << " row " << m << " col " << c;
      for (size_t i = size_t(o + M * widths[p]); i < got.size(); ++i)
        ASSERT_EQ(got[i], 0xFFFF) << "part " << p << " written past its end";
      c0 += widths[p];
    }
  }
  DeviceBuffer<uint16_t> b(64);
  __half* self[] = {as_half(b.get())};
  const int64_t w[] = {8};
  EXPECT_THROW(cuda::split_columns(as_half(b.get()), 1, 1, self, w, nullptr), Error);
  EXPECT_THROW(cuda::split_columns(as_half(b.get()), 1, 0, self, w, nullptr), Error);
}

TEST(Rows, FillConstant) {
  for (int off : {0, 1}) {
    const size_t n = 1001;
    const auto got =
        run_rows(n, off, [&](__half* o) { cuda::fill_constant(o, int64_t(n), 0.3f, nullptr); });
    EXPECT_EQ(got, std::vector<uint16_t>(n, float_to_fp16(0.3f))) << "offset " << off;
  }
}

TEST(Rows, FillNormalIsDeterministicAndNormal) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  const size_t n = size_t(1) << 22;
  const float sd = 0.02f;
  const auto a =
      run_rows(n, 0, [&](__half* o) { cuda::fill_normal(o, int64_t(n), sd, seed, nullptr); });
  const auto b =
      run_rows(n, 0, [&](__half* o) { cuda::fill_normal(o, int64_t(n), sd, seed, nullptr); });
  EXPECT_EQ(a, b) << "same (seed, n) gave different weights";
  // A different length and an unaligned start (another grid and the scalar path): same prefix.
  const size_t n2 = 1001;
  const auto c =
      run_rows(n2, 1, [&](__half* o) { cuda::fill_normal(o, int64_t(n2), sd, seed, nullptr); });
  EXPECT_TRUE(std::equal(c.begin(), c.end(), a.begin()))
      << "element i depends on more than (seed, i)";
  const auto d =
      run_rows(n2, 0, [&](__half* o) { cuda::fill_normal(o, int64_t(n2), sd, seed + 1, nullptr); });
  size_t same = 0;
  for (size_t i = 0; i < n2; ++i) same += d[i] == a[i];
  EXPECT_LT(same, n2 / 20) << "another seed gave (nearly) the same weights";

  // Moments and two-sided tail masses of N(0, sd²). Standard errors for n = 4M: mean sd/2048,
  // std 0.035 %, a mass p ±sqrt(p(1-p)/n) ≈ 2.3e-4; the bounds are over 5 standard errors. The
  // fp16 rounding (relative 2^-11, unbiased) moves none of these by a visible amount.
  double s1 = 0, s2 = 0, s4 = 0;
  size_t in1 = 0, in2 = 0;
  for (uint16_t h : a) {
    const double z = h2f(h) / sd;
    ASSERT_TRUE(std::isfinite(z));
    s1 += z, s2 += z * z, s4 += z * z * z * z;
    in1 += std::fabs(z) < 1, in2 += std::fabs(z) < 2;
  }
  const double mean = s1 / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 5.0 / std::sqrt(double(n)));
  EXPECT_NEAR(std::sqrt(var), 1.0, 2.5e-3);
  EXPECT_NEAR(s4 / n, 3.0, 0.03);  // kurtosis of a normal; its standard error is sqrt(96/n) ≈ 0.005
  EXPECT_NEAR(double(in1) / n, 0.682689, 1.2e-3);
  EXPECT_NEAR(double(in2) / n, 0.954500, 0.6e-3);
}

TEST(Rows, LmHeadGemmHasFp32Output) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto [M, N, K] :
       {std::tuple{1, 1000, 520}, std::tuple{5, 32000, 2048}, std::tuple{33, 136, 4096}}) {
    SCOPED_TRACE(testing::Message() << "M=" << M << " N=" << N << " K=" << K);
    const auto w = random_rows(rng, N, K, -6.f, -4.f), x = random_rows(rng, M, K, -1.f, 1.f);
    DeviceBuffer<uint16_t> dw(w), dx(x);
    DeviceBuffer<float> y(size_t(M) * N);
    y.poison();
    cuda::cublas_fp16_gemm_f32out(as_half(dw.get()), N, K, as_half(dx.get()), y.get(), M, nullptr);
    const auto got = y.download();
    // FP32 accumulation of exact fp16 products: worst case ~K · 2^-24 · Σ|x·w| (2^-12 at K 4096),
    // typical errors far below; 2^-14 · Σ|x·w| leaves room for tensor-core accumulation order. That
    // bound alone cannot see an fp16-rounded output (|y| ≈ Σ|x·w| / sqrt(K)), so also: an fp32
    // result is an fp16 value only by chance (~2^-13 of them).
    size_t bad = 0, fp16_valued = 0;
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) {
        double ref = 0, mag = 0;
        for (int k = 0; k < K; ++k) {
          const double p = double(h2f(x[size_t(m) * K + k])) * h2f(w[size_t(n) * K + k]);
          ref += p, mag += std::fabs(p);
        }
        const float g = got[size_t(m) * N + n];
        bad += !(std::fabs(double(g) - ref) <= mag * 0x1p-14);
        fp16_valued += h2f(float_to_fp16(g)) == g;
      }
    EXPECT_LE(fp16_valued, size_t(M) * N / 256 + 2) << "the output looks rounded to fp16";
    EXPECT_EQ(bad, 0u);
  }
}

TEST(Rows, CopyBandwidthIsPlausible) {
  const double bw = cuda::measure_copy_bandwidth(size_t(256) << 20);
  // An H200 copies at ~4 TB/s counted as read + write; any current GPU is within these bounds.
  EXPECT_GT(bw, 1e11);
  EXPECT_LT(bw, 2e13);
  std::printf("copy bandwidth (256 MiB, read + write): %.0f GB/s\n", bw / 1e9);
}

TEST(Rows, BadArgumentsThrow) {
  EXPECT_THROW(cuda::add_inplace(nullptr, nullptr, 10, nullptr), Error);
  EXPECT_THROW(cuda::fill_normal(nullptr, -1, 1.f, 0, nullptr), Error);
  EXPECT_THROW(cuda::measure_copy_bandwidth(0), Error);
  DeviceBuffer<uint16_t> b(64);
  DeviceBuffer<int32_t> idx(std::vector<int32_t>{0});
  EXPECT_THROW(cuda::gather_rows(as_half(b.get()), 8, idx.get(), 1, as_half(b.get()), nullptr),
               Error);
}

}  // namespace
}  // namespace nestedfp::gputest
