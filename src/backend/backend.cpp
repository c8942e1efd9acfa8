// Backend-independent helpers of nestedfp/backend.hpp.
#include "nestedfp/backend.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "nestedfp/error.hpp"

namespace nestedfp::backend {

const char* to_string(WeightFormat f) {
  switch (f) {
    case WeightFormat::Nested: return "nested";
    case WeightFormat::FP8: return "fp8";
    case WeightFormat::FP16: break;
  }
  return "fp16";
}

std::vector<OpTime> sum_segments(const std::vector<std::pair<const char*, double>>& segments) {
  std::vector<OpTime> r;
  for (const auto& [op, ms] : segments) {
    if (!op) continue;
    auto it = std::find_if(r.begin(), r.end(), [&](const OpTime& t) { return t.op == op; });
    if (it == r.end()) it = r.insert(r.end(), OpTime{op});
    it->ms += ms, ++it->segments;
  }
  return r;
}

PenaltyView StepLayout::penalties(size_t i) const {
  if (penalty_indptr.size() <= i + 1 || bias_indptr.size() <= i + 1) return {};
  const auto p0 = size_t(penalty_indptr[i]), pn = size_t(penalty_indptr[i + 1]) - p0;
  const auto b0 = size_t(bias_indptr[i]), bn = size_t(bias_indptr[i + 1]) - b0;
  const auto& f = penalty_factors[i];
  return {f[0],
          f[1],
          f[2],
          std::span(penalty_tokens).subspan(p0, pn),
          std::span(penalty_counts).subspan(p0, pn),
          std::span(penalty_in_prompt).subspan(p0, pn),
          std::span(bias_tokens).subspan(b0, bn),
          std::span(bias_values).subspan(b0, bn)};
}

std::vector<float> rope_inv_freq(const RopeSpec& s) {
  if (s.head_dim <= 0 || s.head_dim % 2)
    fail("rope: head_dim {} must be positive and even", s.head_dim);
  const int half = s.head_dim / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half), 0.f);
  // As transformers computes it in fp32: 1 / base^(2i / dim).
  for (int i = 0; i < half; ++i)
    inv_freq[size_t(i)] = 1.f / std::pow(float(s.theta), float(2 * i) / float(s.head_dim));
  if (s.scaling == "linear") {
    for (auto& f : inv_freq) f = float(f / s.factor);
  } else if (s.scaling == "llama3") {
    const double old_len = s.original_max_position_embeddings;
    const double low_wl = old_len / s.low_freq_factor, high_wl = old_len / s.high_freq_factor;
    for (auto& f : inv_freq) {
      const double wl = 2 * std::numbers::pi / f;
      if (wl > low_wl) {
        f = float(f / s.factor);
      } else if (wl >= high_wl) {  // medium band: interpolate
        const double smooth =
            (old_len / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = float((1 - smooth) * f / s.factor + smooth * f);
      }
    }
  } else if (s.scaling != "default") {
    fail("rope: unsupported scaling type '{}' (supported: default, llama3, linear)", s.scaling);
  }
  return inv_freq;
}

}  // namespace nestedfp::backend
