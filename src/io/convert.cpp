// Floating tensors to FP16 bits, round-to-nearest-even, counting what the rounding cost.
#include <cmath>
#include <cstring>

#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"
#include "nestedfp/safetensors.hpp"

namespace nestedfp::io {

namespace {

// Rounds one finite-or-not float and updates the report; NaN stays NaN and is not counted.
inline uint16_t round_one(float x, ConversionReport& r) {
  const uint16_t h = float_to_fp16(x);
  if (std::isnan(x)) return h;
  const float back = fp16_to_float(h);
  if (back != x) {
    if (std::isinf(back) && !std::isinf(x))
      ++r.overflow;
    else
      ++r.inexact;
    if (back == 0.f && x != 0.f) ++r.underflow;
  }
  return h;
}

}  // namespace

std::vector<uint16_t> to_fp16(const TensorView& t, ConversionReport* report) {
  const size_t n = size_t(t.numel());
  std::vector<uint16_t> out(n);
  ConversionReport r;
  switch (t.dtype) {
    case DType::F16:
      if (n) std::memcpy(out.data(), t.data, n * 2);
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, t.data + 2 * i, 2);  // data may be unaligned
        out[i] = round_one(bf16_to_float(b), r);
      }
      break;
    case DType::F32:
      for (size_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, t.data + 4 * i, 4);
        out[i] = round_one(f, r);
      }
      break;
    default:
      fail("{}: tensor '{}' has dtype {}; only F16, BF16 and F32 convert to FP16", t.file, t.name,
           dtype_name(t.dtype));
  }
  if (report) {
    report->overflow += r.overflow;
    report->inexact += r.inexact;
    report->underflow += r.underflow;
  }
  return out;
}

}  // namespace nestedfp::io
