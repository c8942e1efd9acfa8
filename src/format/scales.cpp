// Per-row power-of-two scales and eligibility (docs/DESIGN.md §1.4-1.5).
#include <algorithm>
#include <cmath>

#include "detail.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"

namespace nestedfp::format {

namespace {

constexpr uint16_t kLimit = 0x3F80;  // 1.875: smallest magnitude that is not representable

[[noreturn]] void fail_nonfinite(int64_t row, int64_t col, uint16_t h) {
  const std::string where =
      row >= 0 ? fmt::format("row {}, col {}", row, col) : fmt::format("col {}", col);
  fail(
      "weight at {} is {} (bits 0x{:04x}); the checkpoint is corrupt or was saved after an "
      "overflow, so it cannot be loaded",
      where, (h & 0x3FF) ? "NaN" : (h & 0x8000 ? "-Inf" : "+Inf"), h);
}

// Largest magnitude (as FP16 bits without sign) of a row; throws on NaN/Inf.
uint16_t row_max_bits(std::span<const uint16_t> row, int64_t row_index) {
  uint16_t m = 0;
  for (size_t c = 0; c < row.size(); ++c) {
    const uint16_t a = row[c] & 0x7FFF;
    if (a >= 0x7C00) fail_nonfinite(row_index, int64_t(c), row[c]);
    m = std::max(m, a);
  }
  return m;
}

// k for a row whose largest magnitude is max_bits (not 0).
bool k_from_max(std::span<const uint16_t> row, uint16_t max_bits, int8_t& k, std::string* reason) {
  // max = f * 2^ex with f in [0.5, 1); max * 2^k <= 1.75 = 0.875 * 2 gives k = 1 - ex when
  // f <= 0.875, else -ex. Everything here is exact in float.
  int ex = 0;
  const float f = std::frexp(fp16_to_float(max_bits), &ex);
  const int kk = std::clamp(f <= 0.875f ? 1 - ex : -ex, -128, 127);
  if (kk < 0) {
    for (size_t c = 0; c < row.size(); ++c) {
      uint16_t out;
      if (scale_pow2(row[c], kk, out)) continue;
      // Scaling down would drop a low bit of a small value. A row that is representable as is
      // (max < 1.875) keeps k = 0 (upper saturates at 448 for its few values >= 1.75, exactly
      // like ScaleMode::None), so channel mode never nests fewer rows than none.
      if (max_bits < kLimit) {
        k = 0;
        return true;
      }
      if (reason)
        *reason = fmt::format(
            "|w| = {} needs k = {}, but w = {} at col {} would lose bits "
            "(FP16 subnormal range)",
            fp16_to_float(max_bits), kk, fp16_to_float(row[c]), c);
      return false;
    }
  }
  k = int8_t(kk);
  return true;
}

}  // namespace

bool scale_pow2(uint16_t h, int k, uint16_t& out) {
  const uint16_t s = h & 0x8000, a = h & 0x7FFF;
  if (a >= 0x7C00) return false;
  if (a == 0) {
    out = h;
    return true;
  }
  const int e = a >> 10;
  const uint32_t m = a & 0x3FF;
  if (e != 0 && e + k >= 1 && e + k <= 30) {  // normal stays normal: move the exponent
    out = uint16_t(s | (e + k) << 10 | m);
    return true;
  }
  // General case on the integer significand: value = M * 2^E.
  uint32_t M = e ? (0x400 | m) : m;
  int E = (e ? e : 1) - 25 + k;
  while (M < 0x400) {  // normalise (subnormal inputs)
    M <<= 1;
    --E;
  }
  const int be = E + 25;  // biased exponent if the result is normal
  if (be >= 31) return false;
  if (be >= 1) {
    out = uint16_t(s | be << 10 | (M & 0x3FF));
    return true;
  }
  const int shift = 1 - be;  // subnormal result in units of 2^-24
  if (shift >= 11 || (M & ((1u << shift) - 1))) return false;
  out = uint16_t(s | (M >> shift));
  return true;
}

bool row_scale_exponent(std::span<const uint16_t> row, int8_t& k, std::string* reason) {
  const uint16_t mx = row_max_bits(row, -1);
  if (mx == 0) {
    k = 0;
    return true;
  }
  return k_from_max(row, mx, k, reason);
}

ScaleMode parse_scale_mode(const std::string& s) {
  if (s == "none") return ScaleMode::None;
  if (s == "channel") return ScaleMode::Channel;
  fail("unknown nested scale mode '{}': use 'none' or 'channel'", s);
}

const char* to_string(ScaleMode m) { return m == ScaleMode::None ? "none" : "channel"; }

Eligibility detail::check_rows(const uint16_t* w, int64_t rows, int64_t cols, ScaleMode mode,
                               std::vector<int8_t>* ks) {
  if (rows < 0 || cols < 0) fail("invalid tensor shape [{}, {}]", rows, cols);
  Eligibility el;
  el.ok = true;
  if (ks) ks->assign(size_t(rows), 0);
  bool any_k = false;
  uint16_t tensor_max = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const std::span<const uint16_t> row(w + r * cols, size_t(cols));
    const uint16_t mx = row_max_bits(row, r);  // scans the whole tensor for NaN/Inf
    tensor_max = std::max(tensor_max, mx);
    if (!el.ok) continue;
    int8_t k = 0;
    std::string why;
    bool row_ok;
    if (mode == ScaleMode::None) {
      row_ok = mx < kLimit;
      if (!row_ok) why = fmt::format("|w| = {} >= 1.875", fp16_to_float(mx));
    } else {
      row_ok = mx == 0 || k_from_max(row, mx, k, &why);
    }
    if (!row_ok) {
      el.ok = false;
      el.bad_row = r;
      el.reason = fmt::format("row {}: {}", r, why);
      continue;
    }
    if (ks) (*ks)[size_t(r)] = k;
    el.k_min = any_k ? std::min<int>(el.k_min, k) : k;
    el.k_max = any_k ? std::max<int>(el.k_max, k) : k;
    any_k = true;
  }
  el.max_abs = fp16_to_float(tensor_max);
  return el;
}

Eligibility check(const uint16_t* w, int64_t rows, int64_t cols, ScaleMode mode) {
  return detail::check_rows(w, rows, cols, mode, nullptr);
}

}  // namespace nestedfp::format
