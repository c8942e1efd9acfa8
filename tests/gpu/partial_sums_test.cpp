// Tensor parallelism's fp32 partial sums (kernels.hpp, docs/DESIGN.md §3.14): the NestedFP8
// GEMM's bare accumulators against exact sums and finished against the GEMM, and two column
// slices' accumulators summed in fp32 and finished once against one whole GEMM (the premise of
// --tp-fp8-numerics one-gpu). Hopper's FP8 tensor
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

// fn(w, a, M, N, K) on each shape with fresh random data (the seed printed on failure).
template <typename F>
void on_shapes(F fn) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto [M, N, K] : kShapes) {
    SCOPED_TRACE(testing::Message() << "M=" << M << " N=" << N << " K=" << K);
    Weight w(rng, N, K, /*channel=*/true);
    Activations a(rng, M, K);
    fn(w, a, M, N, K);
  }
}

// Ordered-integer distance of two fp16 values (1 = adjacent).
int ulps(uint16_t a, uint16_t b) {
  auto ord = [](uint16_t h) { return (h & 0x8000) ? -int(h & 0x7FFF) : int(h); };
  return std::abs(ord(a) - ord(b));
}

// Exact Σ e4m3(x)·e4m3(u) per output, in fp64 (fp8_reference without the scales).
std::vector<double> exact_accumulators(const Activations& a, const Weight& w) {
  std::vector<double> ref = fp8_reference(a, w);
  for (int m = 0; m < a.M; ++m)
    for (int n = 0; n < w.N; ++n)
      ref[size_t(m) * w.N + n] /= std::ldexp(1.0, -(w.k[n] + 8)) * a.s[m];
  return ref;
}

// The accumulators against the exact sums (cuBLASLt, and the plain kernel that stands in where
// cuBLASLt has no FP8 -> FP32 kernel), and finished: nested_fp8_gemm's output within its bound.
TEST(PartialSums, AccumulatorsMatchExactSumsAndFinishLikeTheGemm) {
  on_shapes([](const Weight& w, const Activations& a, int M, int N, int K) {
    const std::vector<double> ref = exact_accumulators(a, w);
    double mx = 0;
    for (double r : ref) mx = std::max(mx, std::abs(r));
    DeviceBuffer<float> acc(size_t(M) * N);
    for (bool lt : {false, true}) {  // cuBLASLt's accumulators stay for the finish below
      acc.poison();
      const bool ran_lt =
          cuda::nested_fp8_gemm_acc(w.view(), a.dq.get(), acc.get(), M, nullptr, lt);
      EXPECT_EQ(ran_lt, lt) << "cuBLASLt has no E4M3 x E4M3 -> FP32 kernel";
      const std::vector<float> got = acc.download();
      double worst = 0;
      for (size_t i = 0; i < ref.size(); ++i) {
        ASSERT_TRUE(std::isfinite(got[i])) << "output " << i << " unwritten or not finite";
        worst = std::max(worst, std::abs(double(got[i]) - ref[i]) / mx);
      }
      std::printf("[ M=%d N=%d K=%d %s: max |acc - exact| / max |exact| = %.3g ]\n", M, N, K,
                  lt ? "cuBLASLt" : "plain", worst);
      EXPECT_LT(worst, lt ? 1e-3 : 1e-5);  // the plain kernel sums in FP32 throughout
    }
    DeviceBuffer<uint16_t> fin(size_t(M) * N), gemm(size_t(M) * N);
    fin.poison();
    cuda::nested_fp8_finish(acc.get(), w.dk.get(), a.ds.get(), as_half(fin.get()), M, N, nullptr);
    cuda::nested_fp8_gemm(w.view(), a.dq.get(), a.ds.get(), as_half(gemm.get()), M, nullptr);
    expect_close(fin.download(), fp8_reference(a, w), 1e-3, "finished accumulators");
    const auto f = fin.download(), g = gemm.download();
    size_t differ = 0;
    for (size_t i = 0; i < f.size(); ++i) differ += f[i] != g[i];
    std::printf("[ M=%d N=%d K=%d: finished accumulators vs nested_fp8_gemm: %zu of %zu differ ]\n",
                M, N, K, differ, f.size());
  });
}

// Each half of K as one rank holds it (the upper plane's columns, k whole, activations quantized
// with the shared whole-row scale): the fp32 accumulators added and finished once give the GEMM's
// fp16 output within the accumulation bound, and differ from it in fewer outputs than halves
// rounded to fp16 before their sum (the per-rank way) do, over all shapes.
TEST(PartialSums, TwoSlicesSummedInFp32RoundLikeOneGemm) {
  size_t total = 0, total16 = 0;
  on_shapes([&](const Weight& w, const Activations& a, int M, int N, int K) {
    DeviceBuffer<uint16_t> whole(size_t(M) * N);
    cuda::nested_fp8_gemm(w.view(), a.dq.get(), a.ds.get(), as_half(whole.get()), M, nullptr);
    const int Kh = K / 2;
    std::vector<float> sum(size_t(M) * N, 0.f), sum16(size_t(M) * N, 0.f);
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
      DeviceBuffer<uint16_t> y16(size_t(M) * N);
      y.poison();
      const cuda::NestedWeight slice{du.get(), nullptr, w.dk.get(), N, Kh};
      cuda::nested_fp8_gemm_acc(slice, dq.get(), y.get(), M, nullptr);
      const std::vector<float> part = y.download();
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += part[i];
      // The per-rank way: each half's own fp16 output, added and rounded again.
      cuda::nested_fp8_gemm(slice, dq.get(), a.ds.get(), as_half(y16.get()), M, nullptr);
      const std::vector<uint16_t> p16 = y16.download();
      for (size_t i = 0; i < sum.size(); ++i) sum16[i] += h2f(p16[i]);
    }
    DeviceBuffer<float> dsum(sum);
    DeviceBuffer<uint16_t> rounded(sum.size());
    rounded.poison();
    cuda::nested_fp8_finish(dsum.get(), w.dk.get(), a.ds.get(), as_half(rounded.get()), M, N,
                            nullptr);
    const std::vector<uint16_t> got = rounded.download(), want = whole.download();
    size_t differ = 0, far = 0, differ16 = 0;
    double mx = 0, worst = 0;
    for (uint16_t h : want) mx = std::max(mx, double(std::abs(h2f(h))));
    for (size_t i = 0; i < sum.size(); ++i) {
      const int d = ulps(got[i], want[i]);
      differ += d != 0, far += d > 1;
      differ16 += float_to_fp16(sum16[i]) != want[i];
      worst = std::max(worst, std::abs(double(h2f(got[i])) - h2f(want[i])) / mx);
    }
    std::printf(
        "[ M=%d N=%d K=%d: of %zu outputs %zu differ from one GEMM's, %zu by more than 1 ulp, "
        "max |diff| / max |out| = %.3g; fp16 partials: %zu differ ]\n",
        M, N, K, sum.size(), differ, far, worst, differ16);
    EXPECT_LT(worst, 1e-3);
    total += differ, total16 += differ16;
  });
  EXPECT_LT(total, total16);
}

TEST(PartialSums, RejectsNullPointers) {
  DeviceBuffer<float> y(16);
  const cuda::NestedWeight none{};
  EXPECT_THROW(cuda::nested_fp8_gemm_acc(none, nullptr, y.get(), 1, nullptr), Error);
  EXPECT_THROW(cuda::nested_fp8_finish(y.get(), nullptr, nullptr, nullptr, 1, 16, nullptr), Error);
}

}  // namespace
}  // namespace nestedfp::gputest
