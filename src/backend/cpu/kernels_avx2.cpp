// AVX2 + FMA + F16C kernels, compiled per function with target attributes (no global -march):
// detected_isa() makes sure they only run on CPUs that have these extensions.
#include <immintrin.h>

#include "backend/cpu/kernels.hpp"

#define NFP_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace nestedfp::cpu::detail {

NFP_AVX2 void decode_panel_avx2(const PackedWeight& w, int64_t panel, int64_t k0, int64_t kc,
                                bool fp8, float* out) {
  const size_t base = size_t((panel * w.K + k0) * kPanel);
  if (!w.has_e4m3()) {
    const uint16_t* src = w.f16.data() + base;
    for (int64_t k = 0; k < kc; ++k) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + k * kPanel));
      _mm256_storeu_ps(out + k * kPanel, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
      _mm256_storeu_ps(out + k * kPanel + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
    }
    return;
  }
  const uint8_t* up = w.upper.data() + base;
  if (fp8) {
    // fp16 bits (s << 15) | (magnitude << 7) are exactly e4m3(upper) * 2^-8 (normals and
    // subnormals alike), so F16C does the decode.
    const __m256i m80 = _mm256_set1_epi16(0x80), m7f = _mm256_set1_epi16(0x7F);
    for (int64_t k = 0; k < kc; ++k) {
      const __m256i u =
          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(up + k * kPanel)));
      const __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(u, m80), 8),
                                        _mm256_slli_epi16(_mm256_and_si256(u, m7f), 7));
      _mm256_storeu_ps(out + k * kPanel, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
      _mm256_storeu_ps(out + k * kPanel + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
    }
    return;
  }
  // Merge (docs/DESIGN.md §1.3):
  //   hi = sign(upper) | (((upper - m7) >> 1) & 0x3F), fp16 = hi << 8 | lower.
  const uint8_t* lo = w.lower.data() + base;
  const __m128i zero = _mm_setzero_si128(), s80 = _mm_set1_epi8(char(0x80)),
                s3f = _mm_set1_epi8(0x3F);
  for (int64_t k = 0; k < kc; ++k) {
    const __m128i u = _mm_loadu_si128(reinterpret_cast<const __m128i*>(up + k * kPanel));
    const __m128i l = _mm_loadu_si128(reinterpret_cast<const __m128i*>(lo + k * kPanel));
    const __m128i minus_m7 = _mm_cmpgt_epi8(zero, l);  // -1 where lower's top bit is set
    const __m128i t = _mm_and_si128(_mm_srli_epi16(_mm_add_epi8(u, minus_m7), 1), s3f);
    const __m128i hi = _mm_or_si128(_mm_and_si128(u, s80), t);
    _mm256_storeu_ps(out + k * kPanel, _mm256_cvtph_ps(_mm_unpacklo_epi8(l, hi)));
    _mm256_storeu_ps(out + k * kPanel + 8, _mm256_cvtph_ps(_mm_unpackhi_epi8(l, hi)));
  }
}

template <int R>
NFP_AVX2 static void micro_rows(const float* A, int64_t lda, const float* B, int64_t kc, float* C,
                                int64_t ldc, bool zero) {
  __m256 c0[R], c1[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    c0[r] = zero ? _mm256_setzero_ps() : _mm256_loadu_ps(C + r * ldc);
    c1[r] = zero ? _mm256_setzero_ps() : _mm256_loadu_ps(C + r * ldc + 8);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(B + k * kPanel), b1 = _mm256_loadu_ps(B + k * kPanel + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + k);
      c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(C + r * ldc, c0[r]);
    _mm256_storeu_ps(C + r * ldc + 8, c1[r]);
  }
}

NFP_AVX2 void micro_avx2(const float* A, int64_t lda, const float* B, int64_t kc, float* C,
                         int64_t ldc, int rows, bool zero) {
  switch (rows) {
    case 6: return micro_rows<6>(A, lda, B, kc, C, ldc, zero);
    case 5: return micro_rows<5>(A, lda, B, kc, C, ldc, zero);
    case 4: return micro_rows<4>(A, lda, B, kc, C, ldc, zero);
    case 3: return micro_rows<3>(A, lda, B, kc, C, ldc, zero);
    case 2: return micro_rows<2>(A, lda, B, kc, C, ldc, zero);
    default: return micro_rows<1>(A, lda, B, kc, C, ldc, zero);
  }
}

NFP_AVX2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  s0 = _mm256_add_ps(s0, s1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  float r = _mm_cvtss_f32(s);
  for (; i < n; ++i) r += a[i] * b[i];
  return r;
}

NFP_AVX2 void axpy_avx2(float alpha, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

NFP_AVX2 void fp16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) {
    const __m128 v = _mm_cvtph_ps(_mm_cvtsi32_si128(src[i]));
    dst[i] = _mm_cvtss_f32(v);
  }
}

}  // namespace nestedfp::cpu::detail
