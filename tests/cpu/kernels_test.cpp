// cpu kernels against naive double-precision references on random data.
#include "backend/cpu/kernels.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/thread_pool.hpp"
#include "format/reference.hpp"
#include "nestedfp/format.hpp"
#include "nestedfp/half.hpp"

using namespace nestedfp;
using namespace nestedfp::cpu;

namespace {

// Nearest E4M3 by exhaustive search over an independent table (tests/format/reference.hpp: built
// from the bit layout by formula, not from the code under test); ties to the even code, saturating.
uint8_t naive_e4m3(double x) { return test::ref_e4m3_encode(x); }
double ref_decode(uint8_t b) {
  if ((b & 0x7F) == 0x7F) return NAN;
  return (b & 0x80 ? -1.0 : 1.0) * test::e4m3_magnitudes()[size_t(b & 0x7F)];
}

std::vector<uint16_t> random_fp16(size_t n, std::mt19937& g, float sd) {
  std::normal_distribution<float> nd(0.f, sd);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_fp16(nd(g));
  return v;
}

struct IsaGuard {
  Isa saved = active_isa();
  ~IsaGuard() { set_active_isa(saved); }
};

}  // namespace

TEST(CpuE4m3, DecodeTableIsExactForAll256Codes) {
  const auto& mag = test::e4m3_magnitudes();
  for (int c = 0; c < 256; ++c) {
    const float v = e4m3_values()[c];
    if ((c & 0x7F) == 0x7F) {  // NaN codes decode to 0 in the GEMM table (never produced)
      EXPECT_EQ(v, 0.f) << c;
      continue;
    }
    EXPECT_EQ(double(v), (c & 0x80 ? -1.0 : 1.0) * mag[size_t(c & 0x7F)]) << "code " << c;
    EXPECT_EQ(std::signbit(v), bool(c & 0x80)) << "code " << c;
  }
  // Landmarks written out by hand: max normal, smallest subnormal, smallest normal, -1, 1.75.
  EXPECT_EQ(e4m3_values()[0x7E], 448.f);
  EXPECT_EQ(e4m3_values()[0x01], std::ldexp(1.f, -9));
  EXPECT_EQ(e4m3_values()[0x08], std::ldexp(1.f, -6));
  EXPECT_EQ(e4m3_values()[0xB8], -1.f);
  EXPECT_EQ(e4m3_values()[0x3E], 1.75f);
}

TEST(CpuE4m3, RneRoundTripsEveryCode) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;
    const double v = (c & 0x80 ? -1.0 : 1.0) * test::e4m3_magnitudes()[size_t(c & 0x7F)];
    ASSERT_EQ(int(e4m3_rne(float(v))), c) << v;
  }
}

TEST(CpuE4m3, RneMatchesExhaustiveSearch) {
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(-500.f, 500.f);
  std::vector<float> xs = {0.f,
                           -0.f,
                           448.f,
                           449.f,
                           464.f,
                           1e9f,
                           -1e9f,
                           std::ldexp(1.f, -10),
                           std::ldexp(3.f, -10),
                           std::ldexp(1.f, -6) * 1.0625f,
                           0.0146484375f};
  const auto& mag = test::e4m3_magnitudes();
  for (int c = 0; c < 0x7E; ++c) {  // every midpoint between neighbours: exercises ties to even
    xs.push_back(float(0.5 * (mag[size_t(c)] + mag[size_t(c + 1)])));
    xs.push_back(-xs.back());
  }
  for (int i = 0; i < 200000; ++i) xs.push_back(u(g) * std::ldexp(1.f, -int(g() % 16)));
  for (float x : xs) {
    ASSERT_EQ(e4m3_rne(x), naive_e4m3(x)) << x;
    ASSERT_EQ(e4m3_rne(x), format::e4m3_encode(x)) << x;
  }
}

TEST(CpuE4m3, QuantizeRowPerToken) {
  std::mt19937 g(2);
  auto x = random_fp16(333, g, 3.f);
  std::vector<uint8_t> q(x.size());
  float s = 0;
  quantize_row_fp16(x.data(), int64_t(x.size()), q.data(), &s);
  float mx = 0;
  for (auto h : x) mx = std::max(mx, std::fabs(fp16_to_float(h)));
  EXPECT_EQ(s, mx / 448.f);
  bool hit_max = false;
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(q[i], naive_e4m3(double(fp16_to_float(x[i]) / s)));
    hit_max |= (q[i] & 0x7F) == 0x7E;
  }
  EXPECT_TRUE(hit_max);  // the row maximum maps to +-448
  std::vector<uint16_t> zeros(7, 0);
  quantize_row_fp16(zeros.data(), 7, q.data(), &s);
  EXPECT_EQ(s, 0.f);
  EXPECT_EQ(q[3], 0);
}

namespace {

struct GemmCase {
  int64_t M, N, K;
  bool nested, fp8, bias;
  format::ScaleMode mode;
};

// Runs the packed GEMM and a double-precision reference on the same decoded operands.
void run_gemm_case(const GemmCase& c, std::mt19937& g, Isa isa,
                   std::vector<uint16_t>* out = nullptr) {
  IsaGuard guard;
  set_active_isa(isa);
  ThreadPool pool(2);
  auto w = random_fp16(size_t(c.N * c.K), g, 0.3f);
  for (auto& h : w)
    if (!format::representable(h)) h = float_to_fp16(1.5f);
  auto x = random_fp16(size_t(c.M * c.K), g, 2.f);
  std::vector<float> bias;
  PackedWeight pw;
  format::NestedTensor nt;
  if (c.nested) {
    nt = format::split_tensor(w.data(), c.N, c.K, c.mode);
    pw = pack_nested(nt.upper.data(), nt.lower.data(), nt.k.data(), c.N, c.K);
  } else {
    pw = pack_plain(w.data(), c.N, c.K);
  }
  if (c.bias) {
    auto b = random_fp16(size_t(c.N), g, 1.f);
    for (auto h : b) bias.push_back(fp16_to_float(h));
    pw.bias = bias;
  }
  // Activations as the backend feeds them: fp16 -> fp32, or E4M3 values + per-token scale.
  const bool fp8 = c.fp8 && c.nested;
  std::vector<float> A(size_t(c.M * c.K)), rs(size_t(c.M), 1.f);
  std::vector<uint8_t> q(size_t(c.K));
  for (int64_t m = 0; m < c.M; ++m) {
    if (fp8) {
      quantize_row_fp16(&x[size_t(m * c.K)], c.K, q.data(), &rs[size_t(m)]);
      for (int64_t k = 0; k < c.K; ++k) A[size_t(m * c.K + k)] = float(ref_decode(q[size_t(k)]));
    } else {
      for (int64_t k = 0; k < c.K; ++k)
        A[size_t(m * c.K + k)] = fp16_to_float(x[size_t(m * c.K + k)]);
    }
  }
  std::vector<uint16_t> Y(size_t(c.M * c.N), 0x7E00);  // poisoned
  gemm(pool, A.data(), c.M, pw, c.fp8, fp8 ? rs.data() : nullptr, Y.data());
  // Reference weights: merged planes * 2^-k (FP16), or E4M3(upper) * 2^-8 * 2^-k (FP8).
  for (int64_t n = 0; n < c.N; ++n) {
    const int kr = c.nested ? nt.k[size_t(n)] : 0;
    for (int64_t m = 0; m < c.M; ++m) {
      double acc = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const size_t wi = size_t(n * c.K + k);
        double wv = !c.nested ? fp16_to_float(w[wi])
                    : fp8     ? ref_decode(nt.upper[wi]) / 256.0
                              : fp16_to_float(format::merge(nt.upper[wi], nt.lower[wi]));
        wv = std::ldexp(wv, -kr);
        acc += double(A[size_t(m * c.K + k)]) * wv;
        mag += std::fabs(double(A[size_t(m * c.K + k)]) * wv);
      }
      acc = acc * rs[size_t(m)] + (c.bias ? bias[size_t(n)] : 0.0);
      mag = mag * rs[size_t(m)];
      const double got = fp16_to_float(Y[size_t(m * c.N + n)]);
      const double tol =
          std::fabs(acc) * std::ldexp(1.0, -11) + mag * c.K * std::ldexp(1.0, -24) + 1e-7;
      ASSERT_NEAR(got, acc, tol) << "M=" << c.M << " N=" << c.N << " K=" << c.K
                                 << " nested=" << c.nested << " fp8=" << c.fp8 << " at m=" << m
                                 << " n=" << n;
    }
  }
  if (out) *out = Y;
}

const GemmCase kCases[] = {
    {1, 1, 1, true, false, false, format::ScaleMode::None},
    {7, 17, 5, true, false, true, format::ScaleMode::None},
    {13, 33, 300, true, false, false, format::ScaleMode::Channel},
    {100, 48, 257, true, true, false, format::ScaleMode::None},
    {101, 31, 513, true, true, true, format::ScaleMode::Channel},
    {1, 70, 64, true, true, false, format::ScaleMode::Channel},
    {9, 19, 130, false, false, true, format::ScaleMode::None},
    {9, 19, 130, false, true, false, format::ScaleMode::None},  // plain weights ignore fp8
};

}  // namespace

TEST(CpuGemm, MatchesDoubleReferenceAvx2) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2";
  std::mt19937 g(3);
  for (const auto& c : kCases) run_gemm_case(c, g, Isa::Avx2);
}

TEST(CpuGemm, MatchesDoubleReferenceScalar) {
  std::mt19937 g(3);
  for (const auto& c : kCases) run_gemm_case(c, g, Isa::Scalar);
}

TEST(CpuGemm, ScalarAndAvx2AreBitIdentical) {
  if (detected_isa() != Isa::Avx2) GTEST_SKIP() << "no AVX2";
  for (const auto& c : kCases) {
    std::mt19937 g1(4), g2(4);
    std::vector<uint16_t> a, b;
    run_gemm_case(c, g1, Isa::Avx2, &a);
    run_gemm_case(c, g2, Isa::Scalar, &b);
    ASSERT_EQ(a, b) << "M=" << c.M << " N=" << c.N << " K=" << c.K;
  }
}

TEST(CpuGemm, RowsDoNotDependOnBatch) {
  // Row m of a batched GEMM equals the same row computed alone (needed for batch-invariant
  // sampling): the FMA order per output never depends on M or the tiling.
  GemmCase c{150, 40, 300, true, false, false, format::ScaleMode::None};
  std::mt19937 g(5);
  ThreadPool pool(2);
  auto w = random_fp16(size_t(c.N * c.K), g, 0.3f);
  auto nt = format::split_tensor(w.data(), c.N, c.K, c.mode);
  auto pw = pack_nested(nt.upper.data(), nt.lower.data(), nt.k.data(), c.N, c.K);
  std::vector<float> A(size_t(c.M * c.K));
  std::normal_distribution<float> nd;
  for (auto& a : A) a = fp16_to_float(float_to_fp16(nd(g)));
  std::vector<uint16_t> Y(size_t(c.M * c.N)), y1(size_t(c.N));
  gemm(pool, A.data(), c.M, pw, false, nullptr, Y.data());
  for (int64_t m : {0, 5, 97, 149}) {
    gemm(pool, &A[size_t(m * c.K)], 1, pw, false, nullptr, y1.data());
    ASSERT_TRUE(std::equal(y1.begin(), y1.end(), Y.begin() + m * c.N)) << m;
  }
}
