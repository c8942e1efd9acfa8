// AVX2 split/merge, bit-identical to the scalar kernels for every input. Compiled with a
// function-level target attribute (no global -mavx2), called only when have_avx2().
#include <immintrin.h>

#include "nestedfp/format.hpp"

namespace nestedfp::format {

namespace {

// 16 FP16 patterns -> 16 upper bytes in 16-bit lanes (same formula as split_upper).
__attribute__((target("avx2"))) inline __m256i upper16(__m256i h) {
  const __m256i x7f = _mm256_set1_epi16(0x7F), x40 = _mm256_set1_epi16(0x40);
  const __m256i one = _mm256_set1_epi16(1), x80 = _mm256_set1_epi16(0x80);
  const __m256i mag = _mm256_and_si256(_mm256_srli_epi16(h, 7), x7f);
  const __m256i low7 = _mm256_and_si256(h, x7f);
  const __m256i tie = _mm256_add_epi16(low7, _mm256_and_si256(mag, one));
  const __m256i up = _mm256_cmpgt_epi16(tie, x40);  // -1 where we round up
  __m256i r = _mm256_sub_epi16(mag, up);
  r = _mm256_min_epi16(r, _mm256_set1_epi16(0x7E));
  return _mm256_or_si256(r, _mm256_and_si256(_mm256_srli_epi16(h, 8), x80));
}

// packus works per 128-bit lane; this restores element order after packing a, b.
__attribute__((target("avx2"))) inline __m256i pack_bytes(__m256i a, __m256i b) {
  return _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xD8);
}

}  // namespace

__attribute__((target("avx2"))) void split_planes_avx2(const uint16_t* src, uint8_t* upper,
                                                       uint8_t* lower, size_t n) {
  const __m256i xff = _mm256_set1_epi16(0xFF);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 16));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(upper + i), pack_bytes(upper16(a), upper16(b)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(lower + i),
                        pack_bytes(_mm256_and_si256(a, xff), _mm256_and_si256(b, xff)));
  }
  split_planes_scalar(src + i, upper + i, lower + i, n - i);
}

__attribute__((target("avx2"))) void merge_planes_avx2(const uint8_t* upper, const uint8_t* lower,
                                                       uint16_t* dst, size_t n) {
  const __m256i x80 = _mm256_set1_epi8(char(0x80)), x3f = _mm256_set1_epi8(0x3F);
  const __m256i zero = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(upper + i));
    const __m256i l = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lower + i));
    // upper - m7: adding -1 where the lower byte's top bit is set. The 16-bit shift pulls a bit
    // of the neighbouring byte into bit 7, which the 0x3F mask drops.
    const __m256i d = _mm256_add_epi8(u, _mm256_cmpgt_epi8(zero, l));
    const __m256i hi =
        _mm256_or_si256(_mm256_and_si256(u, x80), _mm256_and_si256(_mm256_srli_epi16(d, 1), x3f));
    const __m256i lo8 = _mm256_unpacklo_epi8(l, hi);  // elements 0-7 | 16-23
    const __m256i hi8 = _mm256_unpackhi_epi8(l, hi);  // elements 8-15 | 24-31
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm256_permute2x128_si256(lo8, hi8, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 16),
                        _mm256_permute2x128_si256(lo8, hi8, 0x31));
  }
  merge_planes_scalar(upper + i, lower + i, dst + i, n - i);
}

}  // namespace nestedfp::format
