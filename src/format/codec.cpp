// Scalar split/merge kernels and run-time dispatch to the AVX2 ones (codec_avx2.cpp).
#include "nestedfp/format.hpp"

namespace nestedfp::format {

uint8_t split_upper(uint16_t h) {
  // s | e3..e0 m9 m8 m7, rounded to nearest even on m6..m0. (low7 + m7 > 0x40) is exactly
  // "low7 > 0x40, or low7 == 0x40 and m7 == 1". The carry may ripple into the exponent; a
  // magnitude of 0x7F would read as E4M3 NaN, so it stays 0x7E (448).
  const unsigned mag = (h >> 7) & 0x7F, low7 = h & 0x7F;
  unsigned up = mag + ((low7 + (mag & 1)) > 0x40 ? 1 : 0);
  if (up > 0x7E) up = 0x7E;
  return uint8_t(((h >> 8) & 0x80) | up);
}

void split_planes_scalar(const uint16_t* src, uint8_t* upper, uint8_t* lower, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    upper[i] = split_upper(src[i]);
    lower[i] = split_lower(src[i]);
  }
}

void merge_planes_scalar(const uint8_t* upper, const uint8_t* lower, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] = merge(upper[i], lower[i]);
}

bool have_avx2() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return yes;
}

void split_planes(const uint16_t* src, uint8_t* upper, uint8_t* lower, size_t n) {
  if (have_avx2())
    split_planes_avx2(src, upper, lower, n);
  else
    split_planes_scalar(src, upper, lower, n);
}

void merge_planes(const uint8_t* upper, const uint8_t* lower, uint16_t* dst, size_t n) {
  if (have_avx2())
    merge_planes_avx2(upper, lower, dst, n);
  else
    merge_planes_scalar(upper, lower, dst, n);
}

}  // namespace nestedfp::format
