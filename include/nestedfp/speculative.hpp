#pragma once
// Exact-FP16 self-speculative decoding (docs/DESIGN.md §3.13): cheap FP8 steps over the nested
// weights draft k tokens, one FP16 step verifies them (k + 1 query tokens per sequence) and keeps
// the longest prefix FP16 agrees with. No draft model, no second weight copy, no extra KV pool.
//
// Spec (`--speculative`): off | fp8[:k=N] | fp8:k=auto[,max=M][,cost=C]
//   k=N     draft N tokens per cycle (1..16; `fp8` alone means k=4)
//   k=auto  per sequence, from its measured acceptance (choose_draft_len), at most M (default 8);
//           C is the cost of an FP8 draft step relative to the FP16 verify step (default 0.6,
//           the NestedFP8/NestedFP16 decode step time ratio measured on the H200)
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nestedfp/sampler.hpp"

namespace nestedfp {

struct SpeculativeConfig {
  bool enabled = false;
  int k = 4;  // fixed draft length, or the starting length when adaptive
  bool adaptive = false;
  int max_k = 8;             // adaptive: most tokens drafted per cycle
  double draft_cost = 0.6;   // adaptive: t(FP8 draft step) / t(FP16 verify step)
  std::string spec() const;  // canonical form, e.g. "fp8:k=4" or "off"
};

inline constexpr int kMaxDraftTokens = 16;

// Throws Error saying what is wrong and the accepted forms.
SpeculativeConfig parse_speculative(std::string_view spec);

// The distribution sample_with_uniform draws from (top-k, temperature, top-p), dense over the
// vocabulary, in double. Greedy params give a one-hot at the argmax.
std::vector<double> sampling_probs(std::span<const float> logits, const SamplingParams& params);
// Inverse CDF over a dense distribution with uniform u in [0, 1) (ascending token ids).
int32_t sample_probs(std::span<const double> p, double u);

// The speculative rejection rule for one drafted token d ~ q (the draft distribution) against the
// target p (both dense, normalized): accept with probability min(1, p[d] / q[d]) using u_accept;
// on rejection draw from the normalized residual max(0, p - q) with u_resample. Either way the
// returned token is distributed exactly as p. `accepted` says which case happened.
struct RuleResult {
  bool accepted = false;
  int32_t token = -1;
};
RuleResult speculative_accept(std::span<const double> p, std::span<const double> q, int32_t d,
                              double u_accept, double u_resample);

// Per-sequence acceptance statistics for adaptive k: exponentially decayed counts of drafted
// positions checked and accepted (a cycle that accepts a of k drafts checked min(a + 1, k)).
struct AcceptanceEstimate {
  double checked = 0, accepted = 0;
  void update(int drafted, int accepted_tokens);
  // Per-token acceptance probability; `prior` until something was measured.
  double rate(double prior = 0.8) const;
};

// The draft length in [1, max_k] maximizing expected tokens per unit of step cost, for a per-token
// acceptance probability alpha: E[tokens](k) = (1 - alpha^(k+1)) / (1 - alpha), cost(k) =
// k * draft_cost + 1 (k FP8 steps plus the FP16 verify, which at small batch costs about one
// decode step). At least 1, so acceptance keeps being measured.
int choose_draft_len(double alpha, int max_k, double draft_cost);

}  // namespace nestedfp
