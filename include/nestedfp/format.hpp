#pragma once
// The nested format (docs/DESIGN.md §1, normative): one FP16 weight = FP8-E4M3 upper byte +
// residual lower byte, optionally with a per-row power-of-two scale 2^k_r.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace nestedfp::format {

// ---- scalar E4M3 helpers -------------------------------------------------------------------
// Round-to-nearest-even encode, saturating to ±448 (0x7E / 0xFE); NaN -> 0x7F.
uint8_t e4m3_encode(float x);
float e4m3_decode(uint8_t b);

// ---- scalar codec on FP16 bit patterns -------------------------------------------------------
// Finite and |w| < 1.875 (this implies e4 == 0). Values in [1.875, 2) also have e4 == 0 but
// do not survive the 0x7F -> 0x7E clamp, so the test is on the magnitude, not on e4 alone.
inline bool representable(uint16_t h) { return (h & 0x7FFF) < 0x3F80; }
// Defined for every input (same formula as the AVX2 kernel), meaningful when representable(h).
uint8_t split_upper(uint16_t h);
inline uint8_t split_lower(uint16_t h) { return uint8_t(h & 0xFF); }
inline uint16_t merge(uint8_t upper, uint8_t lower) {
  const uint8_t m7 = lower >> 7;
  const uint8_t hi = uint8_t((upper & 0x80) | (((upper - m7) >> 1) & 0x3F));
  return uint16_t(hi) << 8 | lower;
}

// ---- tensors (row-major [rows, cols], HF layout: rows = output features) ---------------------
enum class ScaleMode { None, Channel };
ScaleMode parse_scale_mode(const std::string& s);  // "none" | "channel"; throws Error otherwise
const char* to_string(ScaleMode m);

struct Eligibility {
  bool ok = false;
  std::string reason;  // empty when ok; else e.g. "row 17: |w| = 2.5 >= 1.875"
  int64_t bad_row = -1;
  float max_abs = 0.f;
  int k_min = 0, k_max = 0;  // range of per-row exponents (0, 0 for ScaleMode::None)
};

// Per-row exponent k_r: the largest integer with max|w_r| * 2^k <= 1.75 (0 for an all-zero row).
// A negative k is only allowed when no value loses a bit (FP16 subnormals). If it would, a row
// with max|w| < 1.875 keeps k = 0 (as in ScaleMode::None); otherwise returns false and a reason.
// Throws Error on NaN/Inf (naming the column).
bool row_scale_exponent(std::span<const uint16_t> row, int8_t& k, std::string* reason = nullptr);

Eligibility check(const uint16_t* w, int64_t rows, int64_t cols, ScaleMode mode);

struct NestedTensor {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> upper, lower;  // rows*cols each
  std::vector<int8_t> k;              // rows entries (all zero for ScaleMode::None)
  ScaleMode mode = ScaleMode::None;
};

// Splits a tensor; throws Error (naming the row and value) if it is not eligible, or on NaN/Inf.
NestedTensor split_tensor(const uint16_t* w, int64_t rows, int64_t cols, ScaleMode mode);
// Merges back to the *scaled* FP16 values w * 2^k_r (bit exact).
std::vector<uint16_t> merge_tensor(const NestedTensor& t);
// Merges and undoes the scale, giving the original FP16 bits.
std::vector<uint16_t> unscale_merge_tensor(const NestedTensor& t);

// Bulk kernels over n elements; the vectorized (AVX2) variant is chosen at run time.
void split_planes(const uint16_t* src, uint8_t* upper, uint8_t* lower, size_t n);
void merge_planes(const uint8_t* upper, const uint8_t* lower, uint16_t* dst, size_t n);
void split_planes_scalar(const uint16_t* src, uint8_t* upper, uint8_t* lower, size_t n);
void merge_planes_scalar(const uint8_t* upper, const uint8_t* lower, uint16_t* dst, size_t n);
bool have_avx2();
// The AVX2 kernels themselves (bit-identical to the scalar ones); call only when have_avx2().
void split_planes_avx2(const uint16_t* src, uint8_t* upper, uint8_t* lower, size_t n);
void merge_planes_avx2(const uint8_t* upper, const uint8_t* lower, uint16_t* dst, size_t n);

// Exact power-of-two scaling on FP16 bits: out = h * 2^k. Returns false (out unspecified) when
// the result is not exactly representable (a subnormal would lose bits, or it overflows), or h is
// NaN/Inf. Signed zeros stay signed zeros.
bool scale_pow2(uint16_t h, int k, uint16_t& out);

}  // namespace nestedfp::format
