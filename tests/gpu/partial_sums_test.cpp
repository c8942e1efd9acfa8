// Tensor parallelism's fp32 partial sums (kernels.hpp, docs/DESIGN.md §3.14): the unrounded
// NestedFP8 GEMM against the exact emulation, and two column slices summed in fp32 and rounded
// once against one whole GEMM (the premise of --tp-fp8-numerics one-gpu). Hopper's FP8 tensor
// cores keep ~14 mantissa bits between promotions to FP32 (gemm_test.cpp), and cuBLASLt groups
// the products otherwise than the NestedFP8 kernels: the bounds are the promoted kernels' 1e-3
// of the largest output, and the counts of outputs an fp16 ulp or more apart are printed.
#include <gtest/gtest.h>

#include <cmath>

#include "gemm_fixture.hpp"

namespace nestedfp::gputest {
namespace {

struct Shape {
  int M, N, K;
};
const Shape kShapes[] = {{1, 1024, 512}, {7, 384, 1024}, {64, 4096, 4096}, {300, 1536, 2048}};

// Ordered-integer distance of two fp16 values (1 = adjacent).
int ulps(uint16_t a, uint16_t b) {
  auto ord = [](uint16_t h) { return (h & 0x8000) ? -int(h & 0x7FFF) : int(h); };
  return std::abs(ord(a) - ord(b));
}

TEST(PartialSums, UnroundedFp8GemmMatchesExactEmulation) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto [M, N, K] : kShapes) {
    SCOPED_TRACE(testing::Message() << "M=" << M << " N=" << N << " K=" << K);
    Weight w(rng, N, K, /*channel=*/true);
    Activations a(rng, M, K);
    DeviceBuffer<float> y(size_t(M) * N);
    y.poison();
    cuda::nested_fp8_gemm_f32(w.view(), a.dq.get(), a.ds.get(), y.get(), M, nullptr);
    const std::vector<float> got = y.download();
    const std::vector<double> ref = fp8_reference(a, w);
    double worst = 0, mx = 0;
    for (size_t i = 0; i < ref.size(); ++i) mx = std::max(mx, std::abs(ref[i]));
    for (size_t i = 0; i < ref.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << "output " << i << " unwritten or not finite";
      worst = std::max(worst, std::abs(double(got[i]) - ref[i]) / mx);
    }
    std::printf("[ M=%d N=%d K=%d: max |unrounded - exact| / max |exact| = %.3g ]\n", M, N, K,
                worst);
    EXPECT_LT(worst, 1e-3);
  }
}

// Each half of K as one rank holds it (the upper plane's columns, k whole, activations quantized
// with the shared whole-row scale): the fp32 halves added and rounded once give the whole GEMM's
// fp16 output within the accumulation bound.
TEST(PartialSums, TwoSlicesSummedInFp32RoundLikeOneGemm) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto [M, N, K] : kShapes) {
    SCOPED_TRACE(testing::Message() << "M=" << M << " N=" << N << " K=" << K);
    Weight w(rng, N, K, /*channel=*/true);
    Activations a(rng, M, K);
    DeviceBuffer<uint16_t> whole(size_t(M) * N);
    cuda::nested_fp8_gemm(w.view(), a.dq.get(), a.ds.get(), as_half(whole.get()), M, nullptr);
    const int Kh = K / 2;
    std::vector<float> sum(size_t(M) * N, 0.f);
    for (int half = 0; half < 2; ++half) {
      std::vector<uint8_t> u(size_t(N) * Kh), q(size_t(M) * Kh);
      for (int n = 0; n < N; ++n)
        std::copy_n(w.upper.begin() + size_t(n) * K + size_t(half) * Kh, Kh,
                    u.begin() + size_t(n) * Kh);
      for (int m = 0; m < M; ++m)
        std::copy_n(a.q.begin() + size_t(m) * K + size_t(half) * Kh, Kh,
                    q.begin() + size_t(m) * Kh);
      DeviceBuffer<uint8_t> du(u), dq(q);
      DeviceBuffer<float> y(size_t(M) * N);
      y.poison();
      const cuda::NestedWeight slice{du.get(), nullptr, w.dk.get(), N, Kh};
      cuda::nested_fp8_gemm_f32(slice, dq.get(), a.ds.get(), y.get(), M, nullptr);
      const std::vector<float> part = y.download();
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += part[i];
    }
    DeviceBuffer<float> dsum(sum);
    DeviceBuffer<uint16_t> rounded(sum.size());
    rounded.poison();
    cuda::round_f32_to_f16(dsum.get(), as_half(rounded.get()), int64_t(sum.size()), nullptr);
    const std::vector<uint16_t> got = rounded.download(), want = whole.download();
    size_t differ = 0, far = 0;
    double mx = 0, worst = 0;
    for (uint16_t h : want) mx = std::max(mx, double(std::abs(h2f(h))));
    for (size_t i = 0; i < sum.size(); ++i) {
      ASSERT_EQ(got[i], float_to_fp16(sum[i])) << "round_f32_to_f16 at " << i;
      const int d = ulps(got[i], want[i]);
      differ += d != 0, far += d > 1;
      worst = std::max(worst, std::abs(double(h2f(got[i])) - h2f(want[i])) / mx);
    }
    std::printf(
        "[ M=%d N=%d K=%d: of %zu outputs %zu differ from one GEMM's, %zu by more than 1 ulp; "
        "max |diff| / max |out| = %.3g ]\n",
        M, N, K, sum.size(), differ, far, worst);
    EXPECT_LT(worst, 1e-3);
  }
}

TEST(PartialSums, RejectsNullPointers) {
  DeviceBuffer<float> y(16);
  const cuda::NestedWeight none{};
  EXPECT_THROW(cuda::nested_fp8_gemm_f32(none, nullptr, nullptr, y.get(), 1, nullptr), Error);
}

}  // namespace
}  // namespace nestedfp::gputest
