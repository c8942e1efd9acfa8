#include "nestedfp/penalties.hpp"

#include <algorithm>
#include <cmath>

#include "nestedfp/error.hpp"

namespace nestedfp {

void PenaltyParams::validate(int vocab) const {
  if (!(repetition_penalty > 0.f) || !std::isfinite(repetition_penalty))
    fail("repetition_penalty must be a finite number > 0 (1 = off), got {}", repetition_penalty);
  if (!(std::fabs(frequency_penalty) <= kMaxFreqPresence))
    fail("frequency_penalty must be between -2 and 2, got {}", frequency_penalty);
  if (!(std::fabs(presence_penalty) <= kMaxFreqPresence))
    fail("presence_penalty must be between -2 and 2, got {}", presence_penalty);
  if (min_tokens < 0) fail("min_tokens must be >= 0, got {}", min_tokens);
  std::vector<int32_t> ids;
  for (const auto& [t, b] : logit_bias) {
    if (t < 0 || (vocab > 0 && t >= vocab))
      fail("logit_bias token id {} is outside the vocabulary [0, {})", t, vocab);
    if (!(std::fabs(b) <= kMaxLogitBias))
      fail("logit_bias value {} for token {} must be between -100 and 100", b, t);
    ids.push_back(t);
  }
  std::sort(ids.begin(), ids.end());
  if (auto d = std::adjacent_find(ids.begin(), ids.end()); d != ids.end())
    fail("logit_bias lists token id {} twice", *d);
}

void check_penalties(const PenaltyView& p, int vocab, std::vector<uint8_t>& seen) {
  if (p.output_counts.size() != p.tokens.size() || p.in_prompt.size() != p.tokens.size())
    fail("penalties: {} seen tokens but {} counts and {} prompt flags", p.tokens.size(),
         p.output_counts.size(), p.in_prompt.size());
  if (p.bias_values.size() != p.bias_tokens.size())
    fail("penalties: {} bias tokens but {} bias values", p.bias_tokens.size(),
         p.bias_values.size());
  if (!(p.repetition > 0.f) || !std::isfinite(p.repetition) || !std::isfinite(p.frequency) ||
      !std::isfinite(p.presence))
    fail("penalties: repetition {} must be finite and > 0, frequency {} and presence {} finite",
         p.repetition, p.frequency, p.presence);
  seen.resize(size_t(vocab));
  // Each list holds a token once (the device kernel updates entries in parallel): mark, then clear.
  auto unique_ids = [&](std::span<const int32_t> ids, const char* what) {
    size_t i = 0;
    for (; i < ids.size(); ++i) {
      const int32_t t = ids[i];
      if (t < 0 || t >= vocab || seen[size_t(t)]) break;
      seen[size_t(t)] = 1;
    }
    const bool ok = i == ids.size();
    const int32_t bad = ok ? 0 : ids[i];
    for (size_t j = 0; j < i; ++j) seen[size_t(ids[j])] = 0;
    if (!ok) fail("penalties: {} token id {} is outside [0, {}) or listed twice", what, bad, vocab);
  };
  unique_ids(p.tokens, "seen");
  unique_ids(p.bias_tokens, "bias");
  for (int32_t c : p.output_counts)
    if (c < 0) fail("penalties: negative output count {}", c);
  for (float b : p.bias_values)
    if (std::isnan(b) || b == INFINITY) fail("penalties: bias {} must be finite or -inf", b);
}

void apply_penalties(std::span<float> logits, const PenaltyView& p) {
  for (size_t i = 0; i < p.bias_tokens.size(); ++i)
    logits[size_t(p.bias_tokens[i])] += p.bias_values[i];
  for (size_t i = 0; i < p.tokens.size(); ++i) {
    float& l = logits[size_t(p.tokens[i])];
    const int32_t c = p.output_counts[i];
    if (c > 0 || p.in_prompt[i]) l = l > 0.f ? l / p.repetition : l * p.repetition;
    if (c > 0) {
      const float f = float(c) * p.frequency;
      l = l - f;
      l = l - p.presence;
    }
  }
}

SampledToken sample_row(std::span<const float> logits, const PenaltyView& p,
                        const SamplingParams& params, double u, int top_logprobs,
                        std::vector<float>& scratch, std::vector<std::pair<float, int32_t>>& cand) {
  if (p.empty()) return sample_row(logits, params, u, top_logprobs, cand);
  scratch.assign(logits.begin(), logits.end());
  apply_penalties(scratch, p);
  SampledToken r;
  r.token = sample_with_uniform(scratch, params, u, cand);
  if (top_logprobs >= 0) r.logprobs = logprobs(logits, r.token, top_logprobs);
  return r;
}

}  // namespace nestedfp
