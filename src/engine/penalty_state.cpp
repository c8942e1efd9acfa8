#include "engine/penalty_state.hpp"

#include <cmath>

namespace nestedfp::engine {

PenaltyState::PenaltyState(const PenaltyParams& p, std::span<const int32_t> prompt,
                           std::span<const int32_t> stop_ids)
    : history_(p.uses_history()), min_tokens_(p.min_tokens) {
  row_.repetition = p.repetition_penalty;
  row_.frequency = p.frequency_penalty;
  row_.presence = p.presence_penalty;
  for (const auto& [t, b] : p.logit_bias) bias_tokens_.push_back(t), bias_values_.push_back(b);
  row_.bias_tokens = bias_tokens_, row_.bias_values = bias_values_;
  // The mask: -inf on every stop id (once each) until min_tokens tokens were generated.
  if (min_tokens_ > 0)
    for (int32_t t : stop_ids) {
      size_t i = 0;
      while (i < row_.bias_tokens.size() && row_.bias_tokens[i] != t) ++i;
      if (i == row_.bias_tokens.size())
        row_.bias_tokens.push_back(t), row_.bias_values.push_back(0);
      row_.bias_values[i] = -INFINITY;
    }
  if (history_)
    for (int32_t t : prompt) row_.in_prompt[size_t(entry(t))] = 1;
  active_ = history_ || !row_.bias_tokens.empty();
}

int32_t PenaltyState::entry(int32_t token) {
  auto [it, fresh] = index_.try_emplace(token, int32_t(row_.tokens.size()));
  if (fresh) {
    row_.tokens.push_back(token);
    row_.output_counts.push_back(0);
    row_.in_prompt.push_back(0);
  }
  return it->second;
}

void PenaltyState::commit(int32_t token, int generated) {
  if (history_) ++row_.output_counts[size_t(entry(token))];
  if (generated == min_tokens_) {  // the mask ends: back to the request's own bias
    row_.bias_tokens = bias_tokens_, row_.bias_values = bias_values_;
    active_ = history_ || !row_.bias_tokens.empty();
  }
}

}  // namespace nestedfp::engine
