// NestedFP16 GEMM on the GPU against an FP64 CPU reference (docs/KERNELS.md §2.2, issue 5).
// Fresh random data every case (never zeros), Y poisoned with NaN before every run, and the
// results of k = 0 planes and per-channel k planes compared bit for bit.
#include "backend/cuda/nested_fp16_gemm.hpp"

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "nestedfp/error.hpp"
#include "nestedfp/format.hpp"
#include "nestedfp/half.hpp"

namespace {

using nestedfp::float_to_fp16;
using nestedfp::fp16_to_float;
namespace fmt_ = nestedfp::format;
namespace nc = nestedfp::cuda;

template <class T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    if (cudaMalloc(&p, count * sizeof(T) + 16) != cudaSuccess) p = nullptr;
  }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

// Weights that can be nested: |w| < 1.75, rows of very different magnitudes (so the per-channel
// exponents differ), a share of FP16 subnormals, no zero rows.
std::vector<uint16_t> random_weights(std::mt19937& rng, int N, int K) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::uniform_int_distribution<int> row_exp(-14, 0), sub_man(1, 1023), coin(0, 99);
  std::vector<uint16_t> w(size_t(N) * K);
  for (int r = 0; r < N; ++r) {
    const float scale = 1.75f * std::ldexp(1.f, row_exp(rng));
    for (int c = 0; c < K; ++c) {
      uint16_t h;
      if (coin(rng) < 4) {  // subnormal: man * 2^-24
        h = uint16_t(sub_man(rng)) | (coin(rng) < 50 ? 0x8000 : 0);
      } else {
        float v = u(rng) * scale;
        if (v == 0.f) v = scale * 0.5f;
        h = float_to_fp16(v);
        if ((h & 0x7FFF) >= 0x3F00) h = (h & 0x8000) | 0x3EFF;  // keep |w| < 1.75
      }
      w[size_t(r) * K + c] = h;
    }
  }
  return w;
}

std::vector<uint16_t> random_activations(std::mt19937& rng, int M, int K) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<uint16_t> x(size_t(M) * K);
  for (auto& h : x) {
    float v = u(rng);
    if (std::fabs(v) < 1e-3f) v = 0.5f;
    h = float_to_fp16(v);
  }
  return x;
}

struct Planes {
  DevBuf<uint8_t> upper, lower;
  DevBuf<int8_t> k;
  explicit Planes(const fmt_::NestedTensor& t)
      : upper(t.upper.size()), lower(t.lower.size()), k(t.k.size()) {
    cudaMemcpy(upper.p, t.upper.data(), t.upper.size(), cudaMemcpyHostToDevice);
    cudaMemcpy(lower.p, t.lower.data(), t.lower.size(), cudaMemcpyHostToDevice);
    cudaMemcpy(k.p, t.k.data(), t.k.size(), cudaMemcpyHostToDevice);
  }
};

// Runs the GEMM into a NaN-poisoned Y and returns the FP16 bits.
std::vector<uint16_t> run_gemm(const Planes& pl, bool use_k, const DevBuf<__half>& X, int M, int N,
                               int K, int config) {
  DevBuf<__half> Y(size_t(M) * N);
  EXPECT_EQ(cudaMemset(Y.p, 0xFF, size_t(M) * N * 2), cudaSuccess);  // 0xFFFF is a NaN
  nc::nested_fp16_gemm(pl.upper.p, pl.lower.p, use_k ? pl.k.p : nullptr, X.p, Y.p, M, N, K, nullptr,
                       config);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<uint16_t> y(size_t(M) * N);
  EXPECT_EQ(cudaMemcpy(y.data(), Y.p, y.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  return y;
}

struct Case {
  int M, N, K;
  int config;  // -1: heuristic
};

std::string name(const Case& c) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "M%d_N%d_K%d_cfg%d", c.M, c.N, c.K, c.config);
  return buf;
}

// k=0 and per-channel planes give bit-identical FP16 results, except at a near tie (seen on the
// H200, docs/DESIGN.md §1.4): the FP64 result within 2^-20 of its magnitude sum from the
// midpoint of two adjacent FP16 values, where the tensor cores' FP32 sums of the two encodings
// (one with many FP16-subnormal weights, the other scaled up to normal ones) round apart.
bool near_tie(uint16_t a, uint16_t b, double ref, double mag) {
  if ((a ^ b) & 0x8000) return false;          // signs differ
  if (a + 1 != b && b + 1 != a) return false;  // not adjacent
  const double mid = 0.5 * (double(fp16_to_float(a)) + double(fp16_to_float(b)));
  return std::fabs(ref - mid) <= std::ldexp(mag, -20);
}

void check_case(const Case& c, uint32_t seed) {
  SCOPED_TRACE(testing::Message() << name(c) << " seed " << seed);
  std::mt19937 rng(seed);
  const auto w = random_weights(rng, c.N, c.K);
  const auto x = random_activations(rng, c.M, c.K);

  const auto none = fmt_::split_tensor(w.data(), c.N, c.K, fmt_::ScaleMode::None);
  const auto chan = fmt_::split_tensor(w.data(), c.N, c.K, fmt_::ScaleMode::Channel);
  // The per-channel planes must really differ from the plain ones (else the bit test is empty).
  int nonzero_k = 0;
  for (int8_t k : chan.k) nonzero_k += k != 0;
  ASSERT_GT(nonzero_k, c.N / 2);

  DevBuf<__half> X(x.size());
  ASSERT_EQ(cudaMemcpy(X.p, x.data(), x.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  Planes p_none(none), p_chan(chan);
  const auto y_none = run_gemm(p_none, false, X, c.M, c.N, c.K, c.config);
  const auto y_chan = run_gemm(p_chan, true, X, c.M, c.N, c.K, c.config);

  // FP64 reference on the original weights.
  std::vector<double> wd(w.size()), xd(x.size());
  for (size_t i = 0; i < w.size(); ++i) wd[i] = fp16_to_float(w[i]);
  for (size_t i = 0; i < x.size(); ++i) xd[i] = fp16_to_float(x[i]);
  double err2 = 0, ref2 = 0;
  size_t bad = 0, mismatch = 0, differ = 0;
  for (int m = 0; m < c.M; ++m) {
    for (int n = 0; n < c.N; ++n) {
      double ref = 0, mag = 0;
      const double* xr = &xd[size_t(m) * c.K];
      const double* wr = &wd[size_t(n) * c.K];
      for (int k = 0; k < c.K; ++k) {
        ref += xr[k] * wr[k];
        mag += std::fabs(xr[k] * wr[k]);
      }
      const size_t i = size_t(m) * c.N + n;
      differ += y_none[i] != y_chan[i];
      const double y = fp16_to_float(y_none[i]);
      err2 += (y - ref) * (y - ref);
      ref2 += ref * ref;
      // FP16 output rounding (2^-11 relative, 2^-25 absolute for subnormal results) plus FP32
      // accumulation error; a NaN (unwritten poison) fails the comparison.
      const double tol =
          std::ldexp(std::fabs(ref), -10) + std::ldexp(mag, -17) + std::ldexp(1.0, -24);
      if (!(std::fabs(y - ref) <= tol)) {
        if (bad < 5)
          ADD_FAILURE() << "Y[" << m << "," << n << "] = " << y << " (bits 0x" << std::hex
                        << y_none[i] << std::dec << "), reference " << ref << ", tol " << tol;
        ++bad;
      }
      if (y_none[i] != y_chan[i] && !near_tie(y_none[i], y_chan[i], ref, mag)) {
        if (mismatch < 5)
          ADD_FAILURE() << "k=0 and per-channel results differ at [" << m << "," << n << "]: 0x"
                        << std::hex << y_none[i] << " vs 0x" << y_chan[i] << std::dec;
        ++mismatch;
      }
    }
  }
  const double rel = std::sqrt(err2 / ref2);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(mismatch, 0u);
  // Near ties are rare (two outputs in all runs so far): many would mean a real difference.
  EXPECT_LE(differ, 2u) << "outputs that differ between k=0 and per-channel at near ties";
  EXPECT_LT(rel, 1e-3) << "relative Frobenius error";
  std::printf("  %-28s rel_err %.3e  nonzero k rows %d/%d%s\n", name(c).c_str(), rel, nonzero_k,
              c.N, differ ? "  (a near tie differs between k=0 and per-channel)" : "");
}

// A fresh seed per test run, printed with every failure (SCOPED_TRACE) to reproduce it.
uint32_t fresh_seed() {
  std::random_device rd;
  return rd();
}

TEST(NestedFp16Gemm, HeuristicAllM) {
  uint32_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "first seed " << seed);
  for (int M : {1, 7, 64, 300, 4096}) {
    check_case({M, 200, 336, -1}, seed++);  // N and K tails (200 = 128 + 72, 336 = 5*64 + 16)
  }
  for (int M : {1, 16, 128, 300})
    check_case({M, 1024, 2048, -1}, seed++);  // many K tiles, stream-K
  check_case({4096, 520, 1040, -1}, seed++);
}

TEST(NestedFp16Gemm, EveryConfig) {
  uint32_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "first seed " << seed);
  for (int cfg = 0; cfg < nc::kNfp16_NumConfigs; ++cfg) {
    if (!nc::nested_fp16_config_available(cfg)) {
      std::printf("config %d: %s not built, skipped\n", cfg, nc::nested_fp16_config_name(cfg));
      continue;
    }
    std::printf("config %d: %s\n", cfg, nc::nested_fp16_config_name(cfg));
    check_case({7, 200, 336, cfg}, seed++);
    check_case({300, 392, 1008, cfg}, seed++);
    check_case({64, 256, 4096, cfg}, seed++);
  }
}

// The shared-memory merge configurations (CoopSm, collective/nested_mma_ss.hpp) over more output
// tiles than SMs, so that CTAs run mma() for several work units (A buffers and pipeline state
// carried across units), and under forced stream-K, whose units start in the middle of K.
TEST(NestedFp16Gemm, SmemMergeConfigsOverManyUnitsAndStreamK) {
  struct SchedEnv {  // NFP16_SCHED for one scope (read by every call)
    explicit SchedEnv(const char* v) { setenv("NFP16_SCHED", v, 1); }
    ~SchedEnv() { unsetenv("NFP16_SCHED"); }
  };
  uint32_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "first seed " << seed);
  int tested = 0;
  for (int cfg = 0; cfg < nc::kNfp16_NumConfigs; ++cfg) {
    if (std::string(nc::nested_fp16_config_name(cfg)).find("coopsm") == std::string::npos) continue;
    if (!nc::nested_fp16_config_available(cfg)) continue;
    ++tested;
    std::printf("config %d: %s\n", cfg, nc::nested_fp16_config_name(cfg));
    check_case({1152, 2176, 272, cfg}, seed++);  // 17 x 9 tiles of 128 x 128 > 132 SMs; 5 K tiles
    SchedEnv stream_k("decomp=3");
    check_case({640, 1040, 1040, cfg}, seed++);  // stream-K over 17 K tiles
  }
  if (tested == 0)
    GTEST_SKIP() << "no CoopSm configuration in this build (kernel set all has them)";
}

TEST(NestedFp16Gemm, RejectsUnalignedShapes) {
  DevBuf<uint8_t> u(4096), l(4096);
  DevBuf<__half> x(4096), y(4096);
  EXPECT_THROW(nc::nested_fp16_gemm(u.p, l.p, nullptr, x.p, y.p, 4, 16, 24, nullptr),
               nestedfp::Error);  // K % 16
  EXPECT_THROW(nc::nested_fp16_gemm(u.p, l.p, nullptr, x.p, y.p, 4, 12, 32, nullptr),
               nestedfp::Error);  // N % 8
  EXPECT_THROW(nc::nested_fp16_gemm(u.p, l.p, nullptr, x.p, y.p, 0, 16, 32, nullptr),
               nestedfp::Error);  // M = 0
  EXPECT_THROW(nc::nested_fp16_gemm(u.p + 1, l.p, nullptr, x.p, y.p, 4, 16, 32, nullptr),
               nestedfp::Error);
  EXPECT_THROW(nc::nested_fp16_gemm(u.p, l.p, nullptr, x.p, y.p, 4, 16, 32, nullptr, 99),
               nestedfp::Error);
}

// Every FP16 value a weight can hold (|w| < 1.75, subnormals and zeros included) goes through the
// merge exactly, in both scale modes and every built configuration: with one-hot activations each
// output is a single product w * 1 (all other products are zero), so Y must be Wᵀ bit for bit.
// A merge that is off by a low bit would otherwise show only as rare 1-ulp flips of a dot product.
TEST(NestedFp16Gemm, MergesEveryValueExactly) {
  const int K = 1024, N = 32, M = K;  // row r holds bit patterns [r*K, (r+1)*K): one binade each
  std::vector<uint16_t> w(size_t(N) * K);
  for (size_t i = 0; i < w.size(); ++i) {
    const uint32_t mag = uint32_t(i / 2) % 0x3F00;  // 0 .. 1.75 - ulp, each with both signs
    w[i] = uint16_t(mag | (i % 2 ? 0x8000u : 0u));
  }
  std::vector<uint16_t> x(size_t(M) * K, 0);
  for (int m = 0; m < M; ++m) x[size_t(m) * K + m] = 0x3C00;  // 1.0
  DevBuf<__half> X(x.size());
  ASSERT_EQ(cudaMemcpy(X.p, x.data(), x.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  for (auto mode : {fmt_::ScaleMode::None, fmt_::ScaleMode::Channel}) {
    const auto planes = fmt_::split_tensor(w.data(), N, K, mode);
    Planes pl(planes);
    for (int cfg = -1; cfg < nc::kNfp16_NumConfigs; ++cfg) {
      if (cfg >= 0 && !nc::nested_fp16_config_available(cfg)) continue;
      SCOPED_TRACE(testing::Message()
                   << "mode " << (mode == fmt_::ScaleMode::None ? "none" : "channel") << " config "
                   << cfg);
      const auto y = run_gemm(pl, mode == fmt_::ScaleMode::Channel, X, M, N, K, cfg);
      size_t bad = 0;
      for (int n = 0; n < N; ++n) {
        for (int m = 0; m < M; ++m) {
          const uint16_t want = w[size_t(n) * K + m], got = y[size_t(m) * N + n];
          // -0 * 1 summed with +0 products gives +0.
          if (got == want || ((want & 0x7FFF) == 0 && (got & 0x7FFF) == 0)) continue;
          if (bad++ < 5)
            ADD_FAILURE() << "w[" << n << "," << m << "] = 0x" << std::hex << want << " came out 0x"
                          << got << std::dec
                          << " (row k = " << int(planes.k.empty() ? 0 : planes.k[n]) << ")";
        }
      }
      EXPECT_EQ(bad, 0u);
    }
  }
}

// The same planes and activations give the same bits twice (stream-K reductions are
// deterministic), so a none/channel difference can only come from the values themselves.
TEST(NestedFp16Gemm, RepeatsBitIdentically) {
  uint32_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  for (const Case c :
       {Case{4096, 520, 1040, -1}, Case{128, 1024, 2048, -1}, Case{16, 4096, 4096, -1}}) {
    const auto w = random_weights(rng, c.N, c.K);
    const auto x = random_activations(rng, c.M, c.K);
    DevBuf<__half> X(x.size());
    ASSERT_EQ(cudaMemcpy(X.p, x.data(), x.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    Planes pl(fmt_::split_tensor(w.data(), c.N, c.K, fmt_::ScaleMode::Channel));
    const auto a = run_gemm(pl, true, X, c.M, c.N, c.K, c.config);
    const auto b = run_gemm(pl, true, X, c.M, c.N, c.K, c.config);
    size_t diff = 0;
    for (size_t i = 0; i < a.size(); ++i) diff += a[i] != b[i];
    EXPECT_EQ(diff, 0u) << name(c);
  }
}

}  // namespace
