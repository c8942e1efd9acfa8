// Whole-tensor split/merge on top of the bulk kernels and the per-row scales.
#include <vector>

#include "detail.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::format {

namespace {

void check_shape(const NestedTensor& t) {
  const size_t n = size_t(t.rows * t.cols);
  if (t.rows < 0 || t.cols < 0 || t.upper.size() != n || t.lower.size() != n ||
      t.k.size() != size_t(t.rows))
    fail("nested tensor [{}, {}] has inconsistent planes (upper {}, lower {}, k {})", t.rows,
         t.cols, t.upper.size(), t.lower.size(), t.k.size());
}

}  // namespace

NestedTensor split_tensor(const uint16_t* w, int64_t rows, int64_t cols, ScaleMode mode) {
  NestedTensor t;
  const Eligibility el = detail::check_rows(w, rows, cols, mode, &t.k);
  if (!el.ok)
    fail("tensor [{}, {}] cannot be nested with --nested-scale {}: {}; {}", rows, cols,
         to_string(mode), el.reason,
         mode == ScaleMode::None ? "try --nested-scale channel, or keep it FP16" : "keep it FP16");
  t.rows = rows;
  t.cols = cols;
  t.mode = mode;
  const size_t n = size_t(rows * cols), c = size_t(cols);
  t.upper.resize(n);
  t.lower.resize(n);
  if (el.k_min == 0 && el.k_max == 0) {
    split_planes(w, t.upper.data(), t.lower.data(), n);
    return t;
  }
  std::vector<uint16_t> scaled(c);
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* src = w + r * cols;
    if (const int k = t.k[size_t(r)]; k != 0) {
      for (size_t i = 0; i < c; ++i)
        if (!scale_pow2(src[i], k, scaled[i]))  // check_rows verified exactness
          fail("internal error: row {} col {} does not scale exactly by 2^{}", r, i, k);
      src = scaled.data();
    }
    split_planes(src, t.upper.data() + r * cols, t.lower.data() + r * cols, c);
  }
  return t;
}

std::vector<uint16_t> merge_tensor(const NestedTensor& t) {
  check_shape(t);
  std::vector<uint16_t> out(t.upper.size());
  merge_planes(t.upper.data(), t.lower.data(), out.data(), out.size());
  return out;
}

std::vector<uint16_t> unscale_merge_tensor(const NestedTensor& t) {
  std::vector<uint16_t> out = merge_tensor(t);
  for (int64_t r = 0; r < t.rows; ++r) {
    const int k = t.k[size_t(r)];
    if (k == 0) continue;
    uint16_t* row = out.data() + r * t.cols;
    for (int64_t i = 0; i < t.cols; ++i)
      if (!scale_pow2(row[i], -k, row[i]))
        fail(
            "nested tensor row {} col {}: value does not unscale exactly by 2^{} (corrupt planes "
            "or exponents)",
            r, i, -k);
  }
  return out;
}

}  // namespace nestedfp::format
