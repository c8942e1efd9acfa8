#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "format/reference.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/format.hpp"

using namespace nestedfp;
using namespace nestedfp::format;
using test::fp16_value;
using test::ref_e4m3_encode;

namespace {
bool finite_below_limit(uint16_t h) {
  const double v = fp16_value(h);
  return std::isfinite(v) && std::fabs(v) < 1.875;
}
}  // namespace

TEST(Codec, AllFp16PatternsScalar) {
  int representable_count = 0;
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = uint16_t(i);
    ASSERT_EQ(representable(h), finite_below_limit(h)) << std::hex << h;
    if (!representable(h)) continue;
    ++representable_count;
    const uint8_t up = split_upper(h), lo = split_lower(h);
    ASSERT_EQ(up, ref_e4m3_encode(fp16_value(h) * 256.0)) << std::hex << h;
    ASSERT_EQ(merge(up, lo), h) << std::hex << h;
  }
  EXPECT_EQ(representable_count, 2 * 0x3F80);  // magnitudes 0x0000..0x3F7F, both signs
}

TEST(Codec, AllFp16PatternsBulkScalarAndDispatched) {
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = uint16_t(i);
  std::vector<uint8_t> up(all.size()), lo(all.size()), up2(all.size()), lo2(all.size());
  split_planes_scalar(all.data(), up.data(), lo.data(), all.size());
  split_planes(all.data(), up2.data(), lo2.data(), all.size());
  EXPECT_EQ(up, up2);
  EXPECT_EQ(lo, lo2);
  std::vector<uint16_t> back(all.size()), back2(all.size());
  merge_planes_scalar(up.data(), lo.data(), back.data(), all.size());
  merge_planes(up.data(), lo.data(), back2.data(), all.size());
  EXPECT_EQ(back, back2);
  for (uint32_t i = 0; i < 65536; ++i) {
    if (!representable(uint16_t(i))) continue;
    ASSERT_EQ(back[i], i) << std::hex << i;
    ASSERT_EQ(up[i], ref_e4m3_encode(fp16_value(uint16_t(i)) * 256.0)) << std::hex << i;
  }
}

TEST(Codec, AllFp16PatternsAvx2) {
  if (!have_avx2()) GTEST_SKIP() << "CPU has no AVX2";
  std::vector<uint16_t> all;
  for (uint32_t i = 0; i < 65536; ++i)
    if (representable(uint16_t(i))) all.push_back(uint16_t(i));
  std::vector<uint8_t> up(all.size()), lo(all.size());
  split_planes_avx2(all.data(), up.data(), lo.data(), all.size());
  std::vector<uint16_t> back(all.size());
  merge_planes_avx2(up.data(), lo.data(), back.data(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(back[i], all[i]) << std::hex << all[i];
    ASSERT_EQ(up[i], ref_e4m3_encode(fp16_value(all[i]) * 256.0)) << std::hex << all[i];
  }
}

TEST(Codec, EdgeValues) {
  EXPECT_EQ(split_upper(0x3F00), 0x7E);  // 1.75 -> 448
  EXPECT_EQ(split_upper(0x3F7F), 0x7E);  // just below 1.875: would round to 0x7F (NaN), kept 0x7E
  EXPECT_EQ(merge(0x7E, 0x7F), 0x3F7F);
  EXPECT_EQ(split_upper(0xBF7F), 0xFE);
  EXPECT_EQ(split_upper(0x07FF), 0x10);  // rounding carry ripples into the exponent
  EXPECT_EQ(merge(0x10, 0xFF), 0x07FF);
  EXPECT_EQ(split_upper(0x8000), 0x80);  // -0 keeps its sign
  EXPECT_FALSE(representable(0x3F80));   // 1.875
  EXPECT_FALSE(representable(0x3FFF));   // e4 == 0 but >= 1.875
  EXPECT_FALSE(representable(0x7C00));
}

TEST(Codec, NonRepresentableAreReported) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = uint16_t(i);
    if (representable(h)) {
      ASSERT_TRUE(check(&h, 1, 1, ScaleMode::None).ok) << std::hex << h;
      continue;
    }
    if ((h & 0x7C00) == 0x7C00) {
      ASSERT_THROW(check(&h, 1, 1, ScaleMode::None), Error) << std::hex << h;
      ASSERT_THROW(split_tensor(&h, 1, 1, ScaleMode::Channel), Error) << std::hex << h;
      continue;
    }
    const Eligibility el = check(&h, 1, 1, ScaleMode::None);
    ASSERT_FALSE(el.ok) << std::hex << h;
    ASSERT_EQ(el.bad_row, 0);
    ASSERT_NE(el.reason.find(">= 1.875"), std::string::npos) << el.reason;
    ASSERT_THROW(split_tensor(&h, 1, 1, ScaleMode::None), Error);
    // A single value is always fine with a channel scale (it scales down exactly).
    ASSERT_TRUE(check(&h, 1, 1, ScaleMode::Channel).ok) << std::hex << h;
  }
}

TEST(Codec, WholeTensorOfAllRepresentableValues) {
  std::vector<uint16_t> w;
  for (uint32_t i = 0; i < 65536; ++i)
    if (representable(uint16_t(i))) w.push_back(uint16_t(i));
  const int64_t cols = 127, rows = int64_t(w.size()) / cols;  // 32512 = 256 * 127
  ASSERT_EQ(rows * cols, int64_t(w.size()));
  const Eligibility el = check(w.data(), rows, cols, ScaleMode::None);
  EXPECT_TRUE(el.ok) << el.reason;
  EXPECT_EQ(el.k_min, 0);
  EXPECT_EQ(el.k_max, 0);
  const NestedTensor t = split_tensor(w.data(), rows, cols, ScaleMode::None);
  EXPECT_EQ(merge_tensor(t), w);
  EXPECT_EQ(unscale_merge_tensor(t), w);
  for (size_t i = 0; i < w.size(); ++i)
    ASSERT_EQ(t.upper[i], ref_e4m3_encode(fp16_value(w[i]) * 256.0));
}
