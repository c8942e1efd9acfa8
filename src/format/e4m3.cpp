// Scalar FP8 E4M3 (the "fn" variant: bias 7, no infinities, 0x7F/0xFF = NaN, max 448).
#include <bit>
#include <cmath>

#include "nestedfp/format.hpp"

namespace nestedfp::format {

uint8_t e4m3_encode(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint8_t sign = uint8_t((bits >> 24) & 0x80);
  const uint32_t a = bits & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return 0x7F;          // NaN
  if (a >= 0x43E00000u) return sign | 0x7E;  // >= 448 (incl. inf): saturate
  if (a < 0x3C800000u) {                     // < 2^-6: subnormal grid of 2^-9
    // |x| * 512 is exact in float; nearbyint rounds half to even in the default mode. A result of
    // 8 is the smallest normal (0x08), so the integer is already the code.
    const float q = std::nearbyint(std::bit_cast<float>(a) * 512.0f);
    return sign | uint8_t(q);
  }
  // Normal: rebias the exponent (127 -> 7) and round the 23-bit mantissa to 3 bits, ties to even.
  const uint32_t e = (a >> 23) - 120, m = a & 0x7FFFFF;
  uint32_t code = e << 3 | m >> 20;
  const uint32_t rem = m & 0xFFFFF;
  if (rem > 0x80000 || (rem == 0x80000 && (code & 1))) ++code;  // carry may ripple into e
  return sign | uint8_t(code > 0x7E ? 0x7E : code);
}

float e4m3_decode(uint8_t b) {
  const float sign = (b & 0x80) ? -1.0f : 1.0f;
  const int e = (b >> 3) & 0xF, m = b & 7;
  if ((b & 0x7F) == 0x7F) return std::nanf("");
  if (e == 0) return sign * std::ldexp(float(m), -9);
  return sign * std::ldexp(float(8 + m), e - 10);
}

}  // namespace nestedfp::format
