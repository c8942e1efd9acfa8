// to_fp16: BF16/F32 rounding to FP16 and the counts of what it cost, on hand-picked values.
#include <gtest/gtest.h>

#include <cmath>

#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"
#include "nestedfp/safetensors.hpp"

namespace nestedfp::io {
namespace {

TensorView view(DType d, const void* data, int64_t n) {
  TensorView t;
  t.name = std::string(1, 'w');  // (not a literal: GCC 12 gives a false -Wrestrict on those)
  t.file = std::string("model.safetensors");
  t.dtype = d;
  t.shape = {n};
  t.data = static_cast<const uint8_t*>(data);
  t.nbytes = size_t(n) * dtype_size(d);
  return t;
}

TEST(ToFp16, Bf16ReportCountsOverflowInexactUnderflow) {
  struct Case {
    uint16_t bf16, fp16;
    const char* what;
  };
  const Case cases[] = {
      {0x3F80, 0x3C00, "1.0 exact"},
      {0x3F81, 0x3C08, "1 + 2^-7 exact"},
      {0x3C01, 0x2008, "2^-7 (1 + 2^-7) exact"},
      {0x477F, 0x7BF8, "65280 exact"},
      {0x4780, 0x7C00, "65536 overflows"},
      {0xC780, 0xFC00, "-65536 overflows"},
      {0x3380, 0x0001, "2^-24 = smallest subnormal, exact"},
      {0x3381, 0x0001, "2^-24 (1 + 2^-7): inexact subnormal"},
      {0x3581, 0x0010, "2^-20 (1 + 2^-7): inexact subnormal"},
      {0x3300, 0x0000, "2^-25: ties to even -> 0, underflow"},
      {0xB2FF, 0x8000, "just below -2^-25 -> -0, underflow"},
      {0x8000, 0x8000, "-0 exact"},
      {0x7F80, 0x7C00, "+inf stays inf, not counted"},
  };
  std::vector<uint16_t> in;
  for (auto& c : cases) in.push_back(c.bf16);
  in.push_back(0x7FC1);  // NaN: stays NaN, not counted
  ConversionReport r;
  const auto out = to_fp16(view(DType::BF16, in.data(), int64_t(in.size())), &r);
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < std::size(cases); ++i) EXPECT_EQ(out[i], cases[i].fp16) << cases[i].what;
  EXPECT_TRUE(std::isnan(fp16_to_float(out.back())));
  EXPECT_EQ(r.overflow, 2);
  EXPECT_EQ(r.inexact, 4);  // two inexact subnormals + two underflows
  EXPECT_EQ(r.underflow, 2);
}

TEST(ToFp16, F32RoundsToNearestEven) {
  const float in[] = {0.1f, 65519.0f, 65520.0f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, -2.0f};
  ConversionReport r;
  const auto out = to_fp16(view(DType::F32, in, 6), &r);
  EXPECT_EQ(out[0], 0x2E66);  // 0.0999755859375
  EXPECT_EQ(out[1], 0x7BFF);  // 65504: below the overflow threshold 65520
  EXPECT_EQ(out[2], 0x7C00);  // 65520 rounds to inf
  EXPECT_EQ(out[3], 0x3C00);  // tie -> even (down)
  EXPECT_EQ(out[4], 0x3C02);  // tie -> even (up)
  EXPECT_EQ(out[5], 0xC000);
  EXPECT_EQ(r.overflow, 1);
  EXPECT_EQ(r.inexact, 4);
  EXPECT_EQ(r.underflow, 0);
}

TEST(ToFp16, F16IsCopiedAndOtherDtypesAreRejected) {
  const uint16_t h[] = {0x3C00, 0x7E00, 0x0001, 0xFBFF};
  ConversionReport r;
  EXPECT_EQ(to_fp16(view(DType::F16, h, 4), &r), std::vector<uint16_t>(h, h + 4));
  EXPECT_EQ(r.inexact + r.overflow + r.underflow, 0);
  const int32_t i[] = {1, 2};
  try {
    to_fp16(view(DType::I32, i, 2));
    ADD_FAILURE() << "I32 converted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("I32"), std::string::npos);
  }
}

}  // namespace
}  // namespace nestedfp::io
