#include <gtest/gtest.h>

#include "nestedfp/half.hpp"
TEST(Half, RoundTripsAllPatterns) {
  for (uint32_t h = 0; h < 65536; ++h) {
    if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue;  // NaN payloads
    ASSERT_EQ(nestedfp::float_to_fp16(nestedfp::fp16_to_float(uint16_t(h))), h);
  }
}
