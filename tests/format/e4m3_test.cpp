#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "format/reference.hpp"
#include "nestedfp/format.hpp"

using namespace nestedfp;
using namespace nestedfp::format;
using test::ref_e4m3_encode;

TEST(E4M3, DecodeMatchesTableAndSpecials) {
  const auto& t = test::e4m3_magnitudes();
  for (int c = 0; c < 256; ++c) {
    const uint8_t b = uint8_t(c);
    if ((c & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(e4m3_decode(b))) << c;
      continue;
    }
    const double want = (c & 0x80 ? -1.0 : 1.0) * t[c & 0x7F];
    EXPECT_EQ(double(e4m3_decode(b)), want) << c;
    EXPECT_EQ(std::signbit(e4m3_decode(b)), bool(c & 0x80)) << c;
    EXPECT_EQ(e4m3_encode(e4m3_decode(b)), b) << c;
  }
  EXPECT_EQ(e4m3_decode(0x7E), 448.0f);
  EXPECT_EQ(e4m3_decode(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(e4m3_decode(0x01), std::ldexp(1.0f, -9));
}

TEST(E4M3, EncodeSpecials) {
  EXPECT_EQ(e4m3_encode(std::numeric_limits<float>::quiet_NaN()), 0x7F);
  EXPECT_EQ(e4m3_encode(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(e4m3_encode(-std::numeric_limits<float>::infinity()), 0xFE);
  EXPECT_EQ(e4m3_encode(1e30f), 0x7E);
  EXPECT_EQ(e4m3_encode(464.0f), 0x7E);  // tie between 448 and (non-existent) 480
  EXPECT_EQ(e4m3_encode(-0.0f), 0x80);
  EXPECT_EQ(e4m3_encode(std::ldexp(1.0f, -10)), 0x00);      // tie between 0 and 2^-9 -> even 0
  EXPECT_EQ(e4m3_encode(3 * std::ldexp(1.0f, -10)), 0x02);  // tie 1 vs 2 -> even 2
}

TEST(E4M3, EncodeMatchesNearestSearchOnTiesAndNeighbours) {
  // Every midpoint between adjacent codes is an exact tie; one float ulp either side is not.
  const auto& t = test::e4m3_magnitudes();
  for (int c = 0; c + 1 < 127; ++c) {
    const float mid = float((t[c] + t[c + 1]) / 2);
    ASSERT_EQ(double(mid), (t[c] + t[c + 1]) / 2);
    for (float x : {mid, std::nextafter(mid, 0.f), std::nextafter(mid, 1e9f), float(t[c])})
      for (float s : {1.f, -1.f}) ASSERT_EQ(e4m3_encode(s * x), ref_e4m3_encode(s * x)) << x;
  }
}

TEST(E4M3, EncodeMatchesNearestSearchOnRandomAndFp16Values) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> expo(-14.f, 10.f), mant(-1.f, 1.f);
  for (int i = 0; i < 200000; ++i) {
    const float x = mant(rng) * std::exp2(expo(rng));
    ASSERT_EQ(e4m3_encode(x), ref_e4m3_encode(x)) << x;
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7C00) == 0x7C00) continue;
    const float x = fp16_to_float(uint16_t(h));
    ASSERT_EQ(e4m3_encode(x), ref_e4m3_encode(x)) << h;
  }
}
