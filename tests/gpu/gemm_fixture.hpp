#pragma once
// GEMM test fixtures shared by gemm_test.cpp and mma_stream_test.cpp: a nested weight made on the
// device from random FP16 rows, per-token FP8 activations, and FP64 references of both GEMMs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gpu_util.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/format.hpp"

namespace nestedfp::gputest {

// A nested weight on the device, made by the GPU split kernel from random FP16 rows whose
// magnitudes differ per row (so k differs per row in channel mode).
struct Weight {
  int N, K;
  std::vector<uint16_t> w;  // original FP16
  std::vector<uint8_t> upper;
  std::vector<int8_t> k;
  DeviceBuffer<uint16_t> dw;
  DeviceBuffer<uint8_t> du, dl;
  DeviceBuffer<int8_t> dk;
  Weight(std::mt19937_64& rng, int N_, int K_, bool channel)
      : N(N_),
        K(K_),
        w(random_rows(rng, N_, K_, -9.f, -3.f)),
        dw(w),
        du(size_t(N_) * K_),
        dl(size_t(N_) * K_),
        dk(N_) {
    auto st =
        cuda::split_weight(as_half(dw.get()), N, K, channel, du.get(), dl.get(), dk.get(), nullptr);
    if (!st.ok) throw Error("test weight not nestable");
    upper = du.download();
    k = dk.download();
  }
  cuda::NestedWeight view() const { return {du.get(), dl.get(), dk.get(), N, K}; }
};

struct Activations {
  int M, K;
  std::vector<uint16_t> x;
  std::vector<uint8_t> q;
  std::vector<float> s;
  DeviceBuffer<uint16_t> dx;
  DeviceBuffer<uint8_t> dq;
  DeviceBuffer<float> ds;
  Activations(std::mt19937_64& rng, int M_, int K_)
      : M(M_), K(K_), x(random_rows(rng, M_, K_, -4.f, 4.f)), dx(x), dq(size_t(M_) * K_), ds(M_) {
    cuda::quantize_e4m3_per_token(as_half(dx.get()), K, M, K, dq.get(), ds.get(), nullptr);
    q = dq.download();
    s = ds.download();
  }
};

// Exact emulation of the NestedFP8 GEMM: Σ e4m3(x)·e4m3(u) in fp64, times 2^-(k+8) · scale_m.
inline std::vector<double> fp8_reference(const Activations& a, const Weight& w) {
  std::vector<double> xd(a.q.size()), ud(w.upper.size());
  for (size_t i = 0; i < xd.size(); ++i) xd[i] = format::e4m3_decode(a.q[i]);
  for (size_t i = 0; i < ud.size(); ++i) ud[i] = format::e4m3_decode(w.upper[i]);
  std::vector<double> ref(size_t(a.M) * w.N);
  for (int m = 0; m < a.M; ++m)
    for (int n = 0; n < w.N; ++n) {
      const double* xr = &xd[size_t(m) * a.K];
      const double* ur = &ud[size_t(n) * w.K];
      double acc = 0;
      for (int c = 0; c < a.K; ++c) acc += xr[c] * ur[c];
      ref[size_t(m) * w.N + n] = acc * std::ldexp(1.0, -(w.k[n] + 8)) * a.s[m];
    }
  return ref;
}

// fp64 reference of X · Wᵀ on the original FP16 values.
inline std::vector<double> fp16_reference(const Activations& a, const Weight& w) {
  std::vector<double> xd(a.x.size()), wd(w.w.size());
  for (size_t i = 0; i < xd.size(); ++i) xd[i] = h2f(a.x[i]);
  for (size_t i = 0; i < wd.size(); ++i) wd[i] = h2f(w.w[i]);
  std::vector<double> ref(size_t(a.M) * w.N);
  for (int m = 0; m < a.M; ++m)
    for (int n = 0; n < w.N; ++n) {
      double acc = 0;
      for (int c = 0; c < a.K; ++c) acc += xd[size_t(m) * a.K + c] * wd[size_t(n) * w.K + c];
      ref[size_t(m) * w.N + n] = acc;
    }
  return ref;
}

inline void expect_close(const std::vector<uint16_t>& out, const std::vector<double>& ref,
                         double tol, const std::string& what) {
  const double rel = rel_error(out, ref), mx = max_error_over_max(out, ref);
  EXPECT_LE(rel, tol) << what << ": ‖out − ref‖/‖ref‖ (NaN = unwritten or non-finite output)";
  EXPECT_LE(mx, 10 * tol) << what << ": max |out − ref| / max |ref|";
}

}  // namespace nestedfp::gputest
