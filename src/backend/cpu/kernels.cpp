// Scalar kernels, ISA dispatch, weight packing and the blocked GEMM driver.
#include "backend/cpu/kernels.hpp"

#include <cpuid.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "backend/cpu/thread_pool.hpp"
#include "nestedfp/format.hpp"
#include "nestedfp/half.hpp"

namespace nestedfp::cpu {

// ---- ISA ---------------------------------------------------------------------------------------
Isa detected_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    // F16C through cpuid: clang 14's __builtin_cpu_supports does not know "f16c".
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    return (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) ? Isa::Avx2
                                                                                     : Isa::Scalar;
  }();
  return isa;
}

static Isa initial_isa() {
  const char* e = std::getenv("NESTEDFP_CPU_ISA");
  if (e && std::string_view(e) == "scalar") return Isa::Scalar;
  return detected_isa();
}
static Isa g_isa = initial_isa();

Isa active_isa() { return g_isa; }
void set_active_isa(Isa isa) {
  g_isa = (isa == Isa::Avx2 && detected_isa() != Isa::Avx2) ? Isa::Scalar : isa;
}
const char* to_string(Isa isa) { return isa == Isa::Avx2 ? "avx2+fma+f16c" : "scalar"; }

// ---- E4M3 --------------------------------------------------------------------------------------
uint8_t e4m3_rne(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint8_t sign = uint8_t((bits >> 24) & 0x80);
  const uint32_t a = bits & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return 0x7F;
  const float af = std::bit_cast<float>(a);
  if (af >= 448.f) return sign | 0x7E;
  if (af < 0.015625f) {  // subnormal range, unit 2^-9 (the scaling by 512 is exact)
    return sign | uint8_t(std::nearbyint(af * 512.f));  // 8 encodes 2^-6, the smallest normal
  }
  uint32_t r = (a + 0x7FFFFu + ((a >> 20) & 1)) >> 20;  // RNE to 3 mantissa bits
  int code = int(r) - (120 << 3);                       // rebias 127 -> 7
  return sign | uint8_t(std::min(code, 0x7E));
}

const float* e4m3_values() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int b = 0; b < 256; ++b) {
      const int e = (b >> 3) & 0xF, m = b & 7;
      float v = e == 0 ? std::ldexp(float(m), -9) : std::ldexp(1.f + m / 8.f, e - 7);
      if ((b & 0x7F) == 0x7F) v = 0.f;
      t[b] = (b & 0x80) ? -v : v;
    }
    return t;
  }();
  return table.data();
}

template <typename Load>
static float row_scale(Load load, int64_t n) {
  float mx = 0.f;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, std::fabs(load(i)));
  return mx / 448.f;
}

template <typename Load>
static void quantize_with(Load load, int64_t n, float s, uint8_t* q) {
  if (s == 0.f) {
    std::memset(q, 0, size_t(n));
    return;
  }
  for (int64_t i = 0; i < n; ++i) q[i] = e4m3_rne(load(i) / s);
}

template <typename Load>
static void quantize_row(Load load, int64_t n, uint8_t* q, float* scale) {
  *scale = row_scale(load, n);
  quantize_with(load, n, *scale, q);
}

static auto fp16_loader(const uint16_t* x) {
  return [x](int64_t i) { return fp16_to_float(x[i]); };
}

void quantize_row_fp16(const uint16_t* x, int64_t n, uint8_t* q, float* scale) {
  quantize_row(fp16_loader(x), n, q, scale);
}
void quantize_row_f32(const float* x, int64_t n, uint8_t* q, float* scale) {
  quantize_row([x](int64_t i) { return x[i]; }, n, q, scale);
}
float token_scale_fp16(const uint16_t* x, int64_t n) { return row_scale(fp16_loader(x), n); }
void quantize_row_fp16_scaled(const uint16_t* x, int64_t n, float scale, uint8_t* q) {
  quantize_with(fp16_loader(x), n, scale, q);
}

// ---- packing -----------------------------------------------------------------------------------
template <typename T>
static void tile(const T* src, int64_t N, int64_t K, std::vector<T>& dst) {
  const int64_t panels = (N + kPanel - 1) / kPanel;
  dst.assign(size_t(panels * K * kPanel), T(0));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      dst[size_t(((n / kPanel) * K + k) * kPanel + n % kPanel)] = src[n * K + k];
}

PackedWeight pack_nested(const uint8_t* upper, const uint8_t* lower, const int8_t* k, int64_t N,
                         int64_t K) {
  PackedWeight w;
  w.N = N, w.K = K, w.panels = (N + kPanel - 1) / kPanel, w.format = backend::WeightFormat::Nested;
  tile(upper, N, K, w.upper);
  tile(lower, N, K, w.lower);
  w.col_scale.assign(size_t(w.panels * kPanel), 1.f);
  for (int64_t n = 0; n < N; ++n) w.col_scale[n] = std::ldexp(1.f, -int(k ? k[n] : 0));
  return w;
}

PackedWeight pack_fp8(const uint8_t* q, const float* scale, int64_t N, int64_t K) {
  PackedWeight w;
  w.N = N, w.K = K, w.panels = (N + kPanel - 1) / kPanel, w.format = backend::WeightFormat::FP8;
  tile(q, N, K, w.upper);
  w.col_scale.assign(size_t(w.panels * kPanel), 1.f);
  for (int64_t n = 0; n < N; ++n) w.col_scale[n] = scale[n] * 256.f;  // decode gives e4m3 * 2^-8
  return w;
}

PackedWeight pack_plain(const uint16_t* src, int64_t N, int64_t K) {
  PackedWeight w;
  w.N = N, w.K = K, w.panels = (N + kPanel - 1) / kPanel, w.format = backend::WeightFormat::FP16;
  tile(src, N, K, w.f16);
  w.col_scale.assign(size_t(w.panels * kPanel), 1.f);
  return w;
}

// ---- scalar pieces -----------------------------------------------------------------------------
namespace detail {

void decode_panel_scalar(const PackedWeight& w, int64_t panel, int64_t k0, int64_t kc, bool fp8,
                         float* out) {
  const size_t base = size_t((panel * w.K + k0) * kPanel), n = size_t(kc * kPanel);
  if (!w.has_e4m3()) {
    for (size_t i = 0; i < n; ++i) out[i] = fp16_to_float(w.f16[base + i]);
  } else if (fp8) {
    const float* lut = e4m3_values();
    for (size_t i = 0; i < n; ++i) out[i] = lut[w.upper[base + i]] * (1.f / 256.f);
  } else {
    for (size_t i = 0; i < n; ++i)
      out[i] = fp16_to_float(format::merge(w.upper[base + i], w.lower[base + i]));
  }
}

void micro_scalar(const float* A, int64_t lda, const float* B, int64_t kc, float* C, int64_t ldc,
                  int rows, bool zero) {
  for (int r = 0; r < rows; ++r) {
    float acc[kPanel];
    for (int c = 0; c < kPanel; ++c) acc[c] = zero ? 0.f : C[r * ldc + c];
    const float* a = A + r * lda;
    for (int64_t k = 0; k < kc; ++k)
      for (int c = 0; c < kPanel; ++c) acc[c] = std::fma(a[k], B[k * kPanel + c], acc[c]);
    for (int c = 0; c < kPanel; ++c) C[r * ldc + c] = acc[c];
  }
}

}  // namespace detail

// ---- GEMM driver -------------------------------------------------------------------------------
// The fp32 value an output rounds from: accumulator, per-token scale, per-row scale, bias.
static float epilogue(float acc, float row_scale, const PackedWeight& w, int64_t n) {
  float v = acc * row_scale * w.col_scale[size_t(n)];
  if (!w.bias.empty()) v += w.bias[size_t(n)];
  return v;
}

void gemm(ThreadPool& pool, const float* A, int64_t M, const PackedWeight& w, bool fp8,
          const float* row_scale, uint16_t* Y, float* Y32) {
  constexpr int64_t kKc = 256, kMb = 96, kMr = 6;
  const int64_t K = w.K, N = w.N;
  if (M <= 0 || N <= 0) return;
  fp8 = w.has_e4m3() && (fp8 || !w.has_fp16());
  const bool avx2 = active_isa() == Isa::Avx2;
  const auto decode = avx2 ? detail::decode_panel_avx2 : detail::decode_panel_scalar;
  const auto micro = avx2 ? detail::micro_avx2 : detail::micro_scalar;

  const int64_t G = M <= 16 ? 1 : 4;  // panels per task: small M needs more tasks
  const int64_t groups = (w.panels + G - 1) / G, mblocks = (M + kMb - 1) / kMb;
  pool.parallel_for(groups * mblocks, [&](int64_t t, int) {
    thread_local std::vector<float> bbuf, ctile;
    bbuf.resize(size_t(G * kKc * kPanel));
    const int64_t g = t / mblocks, mb = t % mblocks;
    const int64_t p0 = g * G, np = std::min(G, w.panels - p0);
    const int64_t m0 = mb * kMb, rows = std::min(kMb, M - m0);
    const int64_t ldc = np * kPanel;
    ctile.assign(size_t(rows * ldc), 0.f);
    for (int64_t k0 = 0; k0 < K; k0 += kKc) {
      const int64_t kc = std::min(kKc, K - k0);
      for (int64_t p = 0; p < np; ++p)
        decode(w, p0 + p, k0, kc, fp8, bbuf.data() + p * kKc * kPanel);
      for (int64_t p = 0; p < np; ++p)
        for (int64_t r = 0; r < rows; r += kMr)
          micro(A + (m0 + r) * K + k0, K, bbuf.data() + p * kKc * kPanel, kc,
                ctile.data() + r * ldc + p * kPanel, ldc, int(std::min(kMr, rows - r)), k0 == 0);
    }
    // Epilogue: per-token scale, per-row 2^-k, bias, round to fp16 (or the bare accumulators).
    for (int64_t r = 0; r < rows; ++r) {
      const float rs = row_scale ? row_scale[m0 + r] : 1.f;
      for (int64_t c = 0; c < ldc; ++c) {
        const int64_t n = p0 * kPanel + c;
        if (n >= N) break;
        if (Y32) {
          Y32[(m0 + r) * N + n] = ctile[size_t(r * ldc + c)];
          continue;
        }
        Y[(m0 + r) * N + n] = float_to_fp16(epilogue(ctile[size_t(r * ldc + c)], rs, w, n));
      }
    }
  });
}

void finish_gemm(ThreadPool& pool, const float* acc, int64_t M, const PackedWeight& w,
                 const float* row_scale, uint16_t* Y) {
  const int64_t N = w.N;
  pool.parallel_for(M, [&](int64_t m, int) {
    const float rs = row_scale ? row_scale[m] : 1.f;
    for (int64_t n = 0; n < N; ++n)
      Y[m * N + n] = float_to_fp16(epilogue(acc[m * N + n], rs, w, n));
  });
}

// ---- vector helpers ----------------------------------------------------------------------------
float dot_f32(const float* a, const float* b, int64_t n) {
  if (active_isa() == Isa::Avx2) return detail::dot_avx2(a, b, n);
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
void axpy_f32(float alpha, const float* x, float* y, int64_t n) {
  if (active_isa() == Isa::Avx2) return detail::axpy_avx2(alpha, x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}
void fp16_to_f32(const uint16_t* src, float* dst, int64_t n) {
  if (active_isa() == Isa::Avx2) return detail::fp16_to_f32_avx2(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_float(src[i]);
}

}  // namespace nestedfp::cpu
