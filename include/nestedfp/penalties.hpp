#pragma once
// Penalties, logit bias and min_tokens (docs/DESIGN.md §3.9), with OpenAI / vLLM semantics. They
// change a sampled row's raw logits before temperature / top-k / top-p, in this order:
//   1. logit_bias:         l += bias[t]                 (min_tokens adds -inf, see below)
//   2. repetition_penalty: l = l > 0 ? l / r : l * r    for t in the prompt or the output
//   3. frequency_penalty:  l -= count[t] * f            count[t] = occurrences in the output
//      presence_penalty:   l -= p                       when count[t] > 0
// min_tokens: until that many tokens were generated, EOS (unless ignore_eos) and the request's
// stop_token_ids get a bias of -inf. Log-probabilities stay those of the raw logits (vLLM's
// default `raw_logprobs`).
//
// A row's inputs are sparse: the tokens seen so far (each once, with its output count and
// whether the prompt holds it) and the bias list (each token once). The engine keeps them up to
// date per request as tokens are committed; an executor applies them with apply_penalties (the
// host rule, which the cuda kernel follows bit for bit).
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "nestedfp/sampler.hpp"

namespace nestedfp {

inline constexpr float kMaxLogitBias = 100.f;   // |bias| limit (OpenAI)
inline constexpr float kMaxFreqPresence = 2.f;  // |frequency_penalty|, |presence_penalty| limit

// What a request asks for.
struct PenaltyParams {
  float repetition_penalty = 1.f;                     // > 0; 1: off
  float frequency_penalty = 0.f;                      // [-2, 2]
  float presence_penalty = 0.f;                       // [-2, 2]
  int min_tokens = 0;                                 // >= 0, at most max_tokens
  std::vector<std::pair<int32_t, float>> logit_bias;  // (token id, bias in [-100, 100]), ids unique
  bool uses_history() const {
    return repetition_penalty != 1.f || frequency_penalty != 0.f || presence_penalty != 0.f;
  }
  // Throws Error naming the field (range, non-finite value, token id outside [0, vocab) or listed
  // twice in logit_bias).
  void validate(int vocab) const;
};

// One sampled row's inputs, borrowed (spans into a RowPenalties or a step's CSR arrays).
struct PenaltyView {
  float repetition = 1.f, frequency = 0.f, presence = 0.f;
  std::span<const int32_t> tokens;         // seen tokens, each once
  std::span<const int32_t> output_counts;  // parallel: occurrences in the output (>= 0)
  std::span<const uint8_t> in_prompt;      // parallel: 1 if the prompt holds the token
  std::span<const int32_t> bias_tokens;    // each once
  std::span<const float> bias_values;      // parallel; -inf masks the token
  bool empty() const { return tokens.empty() && bias_tokens.empty(); }
};

// One sampled row's inputs, owned (what SeqChunk::penalties points at).
struct RowPenalties {
  float repetition = 1.f, frequency = 0.f, presence = 0.f;
  std::vector<int32_t> tokens, output_counts;
  std::vector<uint8_t> in_prompt;
  std::vector<int32_t> bias_tokens;
  std::vector<float> bias_values;
  PenaltyView view() const {
    return {repetition,    frequency, presence,    tokens,
            output_counts, in_prompt, bias_tokens, bias_values};
  }
};

// Throws Error when the arrays disagree in length, a token id is outside [0, vocab) or listed
// twice in one list, a count is negative, repetition is not > 0, frequency / presence are not
// finite, or a bias is NaN or +inf. `seen` is scratch (vocab entries, left all zero).
void check_penalties(const PenaltyView& p, int vocab, std::vector<uint8_t>& seen);

// The penalty rule above, in place on one row of logits. Each step is its own fp32 operation (no
// fused multiply-add), so a device kernel can reproduce it exactly.
void apply_penalties(std::span<float> logits, const PenaltyView& p);

// sample_row with penalties: the token from the penalized logits (copied into `scratch`), its
// log-probabilities from the raw ones. Equals sample_row when `p` is empty.
SampledToken sample_row(std::span<const float> logits, const PenaltyView& p,
                        const SamplingParams& params, double u, int top_logprobs,
                        std::vector<float>& scratch, std::vector<std::pair<float, int32_t>>& cand);

}  // namespace nestedfp
