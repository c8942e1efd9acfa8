#pragma once
// Independent references for the format tests: written differently from src/format on purpose
// (exhaustive nearest search, double arithmetic) so a bug in the codec cannot hide in both.
#include <array>
#include <cmath>
#include <cstdint>

#include "nestedfp/half.hpp"

namespace nestedfp::test {

// The 127 non-negative finite E4M3 magnitudes, indexed by code 0x00..0x7E.
inline const std::array<double, 127>& e4m3_magnitudes() {
  static const std::array<double, 127> table = [] {
    std::array<double, 127> t{};
    for (int code = 0; code < 127; ++code) {
      const int e = code / 8, m = code % 8;
      t[code] = e == 0 ? m * std::pow(2.0, -9) : (8 + m) * std::pow(2.0, e - 10);
    }
    return t;
  }();
  return table;
}

// Nearest finite E4M3 value, ties to the even code; anything above 448 (and inf) -> 448.
inline uint8_t ref_e4m3_encode(double x) {
  if (std::isnan(x)) return 0x7F;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  const double a = std::fabs(x);
  if (std::isinf(a)) return sign | 0x7E;
  const auto& t = e4m3_magnitudes();
  int best = 0;
  for (int c = 1; c < 127; ++c) {
    const double d = std::fabs(a - t[c]), db = std::fabs(a - t[best]);
    if (d < db || (d == db && (c % 2) == 0 && (best % 2) == 1)) best = c;
  }
  return sign | uint8_t(best);
}

inline double fp16_value(uint16_t h) { return double(fp16_to_float(h)); }

// w * 2^k as FP16 bits if exact (double arithmetic, then a checked round trip).
inline bool ref_scale(uint16_t h, int k, uint16_t& out) {
  if ((h & 0x7C00) == 0x7C00) return false;
  const double v = std::ldexp(fp16_value(h), k);
  if (std::fabs(v) > 65504.0) return false;
  const uint16_t r = float_to_fp16(float(v));
  if (fp16_value(r) != v || std::signbit(fp16_value(r)) != std::signbit(v)) return false;
  out = r;
  return true;
}

}  // namespace nestedfp::test
