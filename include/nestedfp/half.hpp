#pragma once
// Scalar IEEE half / bfloat16 <-> float conversions on raw bits (no compiler half type needed).
#include <bit>
#include <cstdint>
#include <cstring>

namespace nestedfp {

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        man <<= 1;
        ++e;
      } while ((man & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3FF) << 13;
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | man << 13;
  } else {
    bits = sign | (exp + 112) << 23 | man << 13;
  }
  return std::bit_cast<float>(bits);
}

// Round-to-nearest-even float -> half, with overflow to inf and correct subnormals.
inline uint16_t float_to_fp16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  x &= 0x7FFFFFFFu;
  if (x >= 0x7F800000u) return sign | (x > 0x7F800000u ? 0x7E00 : 0x7C00);  // NaN / inf
  if (x >= 0x477FF000u) return sign | 0x7C00;                               // rounds to inf
  if (x < 0x38800000u) {                                                    // subnormal or zero
    if (x < 0x33000000u) return sign;                                       // < 2^-25: zero
    const uint32_t e = x >> 23, m = (x & 0x7FFFFF) | 0x800000;
    const uint32_t shift = 126 - e;  // 14 + (113 - e) - 1 ... value = m * 2^(e-150), unit 2^-24
    const uint32_t full = m >> (shift - 0), rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    uint32_t r = full;
    if (rem > half || (rem == half && (full & 1))) ++r;
    return sign | uint16_t(r);
  }
  uint32_t r = x + 0xC8000FFFu + ((x >> 13) & 1);  // rebias 127->15 and round to nearest even
  return sign | uint16_t(r >> 13);
}

inline float bf16_to_float(uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  x += 0x7FFFu + ((x >> 16) & 1);
  return uint16_t(x >> 16);
}

}  // namespace nestedfp
