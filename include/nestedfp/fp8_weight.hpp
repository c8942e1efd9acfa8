#pragma once
// Plain FP8 E4M3 weights with their own max-abs scales: the baseline formats NestedFP8 is
// compared against (`eval ppl --precision fp8-per-tensor|fp8-per-channel`). Unlike the nested
// format there is no FP16 copy: W ≈ e4m3(q[r, c]) * scale[r].
#include <cstdint>
#include <string>
#include <vector>

namespace nestedfp::format {

enum class Fp8Granularity { PerTensor, PerChannel };
const char* to_string(Fp8Granularity g);  // "per-tensor" | "per-channel"

struct Fp8Tensor {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> q;    // E4M3 bytes [rows, cols]
  std::vector<float> scale;  // one per row (all equal for PerTensor)
  Fp8Granularity granularity = Fp8Granularity::PerChannel;
};

// scale = max|W| / 448 (PerTensor) or max|W_row| / 448 (PerChannel), in fp32;
// q = e4m3_encode(w / scale): round-to-nearest-even, saturating at ±448. An all-zero row (or
// tensor) gets scale 0 and q = 0. Throws Error on NaN/Inf, naming the row and column.
Fp8Tensor quantize_fp8(const uint16_t* w, int64_t rows, int64_t cols, Fp8Granularity g);

// e4m3(q) * scale as float [rows, cols] (tests, error reports).
std::vector<float> dequantize_fp8(const Fp8Tensor& t);

}  // namespace nestedfp::format
