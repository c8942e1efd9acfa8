// Baseline FP8 weight quantization (max-abs scales); see nestedfp/fp8_weight.hpp.
#include "nestedfp/fp8_weight.hpp"

#include <algorithm>
#include <cmath>

#include "nestedfp/error.hpp"
#include "nestedfp/format.hpp"
#include "nestedfp/half.hpp"

namespace nestedfp::format {

const char* to_string(Fp8Granularity g) {
  return g == Fp8Granularity::PerTensor ? "per-tensor" : "per-channel";
}

Fp8Tensor quantize_fp8(const uint16_t* w, int64_t rows, int64_t cols, Fp8Granularity g) {
  Fp8Tensor t;
  t.rows = rows, t.cols = cols, t.granularity = g;
  t.q.resize(size_t(rows * cols));
  t.scale.resize(size_t(rows));
  std::vector<float> row_max(size_t(rows), 0.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const uint16_t h = w[r * cols + c];
      if ((h & 0x7C00) == 0x7C00)
        fail("fp8 quantization: row {}, column {} is {} (weights must be finite)", r, c,
             (h & 0x3FF) ? "NaN" : "Inf");
      row_max[r] = std::max(row_max[r], std::fabs(fp16_to_float(h)));
    }
  if (g == Fp8Granularity::PerTensor) {
    const float mx = rows ? *std::max_element(row_max.begin(), row_max.end()) : 0.f;
    std::fill(row_max.begin(), row_max.end(), mx);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float s = row_max[r] / 448.f;
    t.scale[r] = s;
    for (int64_t c = 0; c < cols; ++c)
      t.q[r * cols + c] = s == 0.f ? 0 : e4m3_encode(fp16_to_float(w[r * cols + c]) / s);
  }
  return t;
}

std::vector<float> dequantize_fp8(const Fp8Tensor& t) {
  std::vector<float> out(t.q.size());
  for (int64_t r = 0; r < t.rows; ++r)
    for (int64_t c = 0; c < t.cols; ++c)
      out[r * t.cols + c] = e4m3_decode(t.q[r * t.cols + c]) * t.scale[r];
  return out;
}

}  // namespace nestedfp::format
