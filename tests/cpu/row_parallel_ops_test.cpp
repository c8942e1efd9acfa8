// The ops behind tensor parallelism's one-GPU FP8 numerics (docs/DESIGN.md §3.14) on the cpu
// backend: per-token quantization split into its scales and its values (a slice of a row with the
// whole row's scale quantizes as the whole row does), and the FP8 linear in two halves: its bare
// fp32 accumulators, then the epilogue (finished, they are linear()'s output; two column slices'
// accumulators summed in fp32 and finished once are too, up to fp32 summation order).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "nestedfp/backend.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"

using namespace nestedfp;
using namespace nestedfp::backend;

namespace {

std::vector<uint16_t> rnd16(size_t n, std::mt19937& g, float sd) {
  std::normal_distribution<float> nd(0.f, sd);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_fp16(nd(g));
  return v;
}

template <typename T>
BufferPtr up(Backend& be, const std::vector<T>& v) {
  auto b = be.alloc(v.size() * sizeof(T));
  be.upload(*b, v.data(), v.size() * sizeof(T));
  return b;
}

template <typename T>
std::vector<T> down(Backend& be, const Buffer& b, size_t n) {
  std::vector<T> v(n);
  be.download(v.data(), b, n * sizeof(T));
  return v;
}

// Columns [c0, c0 + w) of a row-major [rows, cols] matrix.
template <typename T>
std::vector<T> columns(const std::vector<T>& x, int rows, int cols, int c0, int w) {
  std::vector<T> out(size_t(rows) * w);
  for (int r = 0; r < rows; ++r)
    std::copy_n(x.begin() + size_t(r) * cols + c0, w, out.begin() + size_t(r) * w);
  return out;
}

}  // namespace

TEST(RowParallelOps, ScalesThenScaledQuantizeAreQuantize) {
  auto be = make_cpu_backend(2);
  std::mt19937 g(11);
  const int rows = 6, cols = 512, half = cols / 2;
  auto x = rnd16(size_t(rows) * cols, g, 2.f);
  std::fill(x.begin() + cols, x.begin() + 2 * cols, 0);  // an all-zero row: scale 0, q 0
  for (int c = 0; c < half; ++c) x[size_t(2) * cols + c] = float_to_fp16(0.01f);  // small half
  auto bx = up(*be, x), q = be->alloc(size_t(rows) * cols), s = be->alloc(rows * 4);
  be->quantize(*bx, rows, cols, *q, *s);
  const auto want_q = down<uint8_t>(*be, *q, size_t(rows) * cols);
  const auto want_s = down<float>(*be, *s, rows);

  auto s2 = be->alloc(rows * 4), q2 = be->alloc(size_t(rows) * cols);
  be->token_scales(*bx, rows, cols, *s2);
  EXPECT_EQ(down<float>(*be, *s2, rows), want_s);
  be->quantize_scaled(*bx, rows, cols, *s2, *q2);
  EXPECT_EQ(down<uint8_t>(*be, *q2, size_t(rows) * cols), want_q);

  // Each half as a rank holds it: max of the two halves' scales = the row's; quantized with it,
  // each half is the row's quantization of those columns. With its own scale, it is not.
  std::vector<float> shared(rows, 0.f);
  std::vector<BufferPtr> parts;
  for (int h = 0; h < 2; ++h) {
    parts.push_back(up(*be, columns(x, rows, cols, h * half, half)));
    be->token_scales(*parts.back(), rows, half, *s2);
    const auto sh = down<float>(*be, *s2, rows);
    for (int r = 0; r < rows; ++r) shared[size_t(r)] = std::max(shared[size_t(r)], sh[size_t(r)]);
  }
  EXPECT_EQ(shared, want_s);
  auto bs = up(*be, shared), qh = be->alloc(size_t(rows) * half);
  for (int h = 0; h < 2; ++h) {
    be->quantize_scaled(*parts[size_t(h)], rows, half, *bs, *qh);
    EXPECT_EQ(down<uint8_t>(*be, *qh, size_t(rows) * half),
              columns(want_q, rows, cols, h * half, half))
        << "half " << h;
  }
  be->quantize(*parts[0], rows, half, *qh, *s2);  // the small half's own scale
  EXPECT_NE(down<uint8_t>(*be, *qh, size_t(rows) * half), columns(want_q, rows, cols, 0, half));
}

TEST(RowParallelOps, AccumulatorsFinishedAreLinear) {
  auto be = make_cpu_backend(2);
  std::mt19937 g(12);
  const int M = 5, N = 48, K = 256, half = K / 2;
  const auto w = rnd16(size_t(N) * K, g, 0.05f), x = rnd16(size_t(M) * K, g, 1.f);
  auto make = [&](const std::vector<uint16_t>& v, int k) {
    LinearSpec spec;
    spec.out_features = N, spec.in_features = k, spec.raw16 = v.data();
    return be->create_linear(spec);
  };
  auto whole = make(w, K);
  ASSERT_EQ(whole->format, WeightFormat::Nested);
  auto bx = up(*be, x), q = be->alloc(size_t(M) * K), s = be->alloc(M * 4);
  be->quantize(*bx, M, K, *q, *s);
  const Activation a{nullptr, q.get(), s.get()};
  auto y16 = be->alloc(size_t(M) * N * 2), acc = be->alloc(size_t(M) * N * 4),
       r16 = be->alloc(size_t(M) * N * 2);
  be->linear(Precision::FP8, *whole, a, M, *y16);
  be->linear_acc(*whole, a, M, *acc);
  be->finish_acc(*whole, a, M, *acc, *r16);
  const auto want = down<uint16_t>(*be, *y16, size_t(M) * N);
  EXPECT_EQ(down<uint16_t>(*be, *r16, size_t(M) * N), want);
  // The accumulators come before the token scale (k = 0 here; the cpu's decode of the upper
  // plane carries its 2^-8): times the scale, they are the output.
  const auto bare = down<float>(*be, *acc, size_t(M) * N);
  const auto sc = down<float>(*be, *s, M);
  EXPECT_NE(float_to_fp16(bare[0]), want[0]);
  EXPECT_NEAR(fp16_to_float(want[0]), bare[0] * sc[0],
              std::abs(fp16_to_float(want[0])) * 1e-3f + 1e-6f);

  // Two column slices, as two ranks hold the weight (no channel scales: k = 0 on every row, whole
  // or sliced), under the whole rows' activation scales.
  const auto q_all = down<uint8_t>(*be, *q, size_t(M) * K);
  std::vector<float> sum(size_t(M) * N, 0.f);
  for (int h = 0; h < 2; ++h) {
    auto part = make(columns(w, N, K, h * half, half), half);
    auto qp = up(*be, columns(q_all, M, K, h * half, half));
    be->linear_acc(*part, Activation{nullptr, qp.get(), s.get()}, M, *acc);
    const auto p = down<float>(*be, *acc, size_t(M) * N);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += p[i];
  }
  auto bsum = up(*be, sum);
  be->finish_acc(*whole, a, M, *bsum, *r16);
  const auto got = down<uint16_t>(*be, *r16, size_t(M) * N);
  size_t differ = 0;
  for (size_t i = 0; i < sum.size(); ++i) {
    EXPECT_LE(std::abs(fp16_to_float(got[i]) - fp16_to_float(want[i])),
              std::ldexp(std::abs(fp16_to_float(want[i])), -10) + 1e-7f)
        << i;
    differ += got[i] != want[i];
  }
  EXPECT_LE(differ, sum.size() / 50);  // fp32 order only: rarely across a rounding boundary

  LinearSpec spec;
  spec.out_features = N, spec.in_features = K, spec.fp16 = w.data();
  auto fp16_weight = be->create_linear(spec);
  EXPECT_THROW(be->linear_acc(*fp16_weight, a, M, *acc), Error);
  EXPECT_THROW(be->finish_acc(*fp16_weight, a, M, *acc, *r16), Error);
}
