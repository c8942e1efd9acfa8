#pragma once
// The penalty rule of penalties.hpp written out plainly over a request's whole history (a recount
// per token, no sparse lists, no incremental state): what the engine tests and the pystd-16m
// tests compare executors against.
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "nestedfp/engine.hpp"
#include "nestedfp/sampler.hpp"

namespace nestedfp::reference {

// `logits` of the token after prompt + output, as sampling must see them.
inline std::vector<float> penalized(std::vector<float> l, const GenerationRequest& r,
                                    std::span<const int32_t> output,
                                    const std::vector<int32_t>& eos_ids) {
  const PenaltyParams& p = r.penalties;
  for (const auto& [t, b] : p.logit_bias) l[size_t(t)] += b;
  if (int(output.size()) < p.min_tokens) {
    for (int32_t t : r.stop_token_ids) l[size_t(t)] = -INFINITY;
    if (!r.ignore_eos)
      for (int32_t t : eos_ids) l[size_t(t)] = -INFINITY;
  }
  for (size_t v = 0; v < l.size(); ++v) {
    const auto count = std::count(output.begin(), output.end(), int32_t(v));
    const bool in_prompt =
        std::find(r.prompt.begin(), r.prompt.end(), int32_t(v)) != r.prompt.end();
    if (count > 0 || in_prompt)
      l[v] = l[v] > 0 ? l[v] / p.repetition_penalty : l[v] * p.repetition_penalty;
    if (count > 0) {
      l[v] = l[v] - float(count) * p.frequency_penalty;
      l[v] = l[v] - p.presence_penalty;
    }
  }
  return l;
}

// The token the engine must pick from penalized logits: argmax when greedy, else the rule of
// sample_with_uniform with the request's next uniform draw (`draws` seeded as the engine seeds it).
inline int32_t pick(const std::vector<float>& penalized, const SamplingParams& sp,
                    RequestSampler& draws) {
  if (sp.temperature == 0.f) return argmax(penalized);
  std::vector<std::pair<float, int32_t>> cand;
  return sample_with_uniform(penalized, sp, draws.next_uniform(), cand);
}

}  // namespace nestedfp::reference
