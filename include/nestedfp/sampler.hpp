#pragma once
// Token sampling. Each request owns a RequestSampler whose RNG is seeded from the request's seed
// (or, without one, from a seed the engine draws), and draws exactly one random number per
// sampled token: the same seed gives the same tokens however requests are batched, as long as
// the logits are the same (the cpu backend's logits do not depend on the batch).
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace nestedfp {

inline constexpr int kMaxLogprobs = 20;  // most alternatives per token (OpenAI's limit)

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy (argmax, lowest id on ties)
  float top_p = 1.0f;        // (0, 1]: nucleus
  int top_k = 0;             // <= 0: all tokens
  std::optional<uint64_t> seed;
  // Throws Error with a message naming the bad field (negative temperature, top_p outside (0, 1]).
  void validate() const;
};

class RequestSampler {
 public:
  // `fallback_seed` is used when params.seed is empty.
  explicit RequestSampler(const SamplingParams& params, uint64_t fallback_seed = 0);
  int32_t sample(std::span<const float> logits);
  const SamplingParams& params() const { return params_; }
  // The request's next uniform draw in [0, 1): one per sampled token (not drawn when greedy).
  // Executors that sample on the device take this number from the host (StepInput).
  double next_uniform();

 private:
  SamplingParams params_;
  uint64_t s_[4];  // xoshiro256** state (portable: same stream on every platform)
  std::vector<std::pair<float, int32_t>> cand_;
};

// What sampling at temperature > 0 draws from: `cand` gets the ids in descending logit order
// (ascending id on ties: a total order, so results are deterministic), cut to top-k, and `w` their
// unnormalized weights exp((logit - max) / T). Returns how many of them top-p keeps. Shared by
// sample_with_uniform and speculative decoding's dense distribution (speculative.hpp), so the
// rejection rule sees exactly the distribution the sampler draws from.
size_t filtered_candidates(std::span<const float> logits, const SamplingParams& params,
                           std::vector<std::pair<float, int32_t>>& cand, std::vector<double>& w);
// The sampling rule of RequestSampler with an explicit uniform draw `u` in [0, 1): top-k, then
// softmax(logit / T), then the top-p nucleus, then the inverse CDF over the kept tokens in
// descending-logit order. `cand` is scratch space (reused between calls).
int32_t sample_with_uniform(std::span<const float> logits, const SamplingParams& params, double u,
                            std::vector<std::pair<float, int32_t>>& cand);

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0.f;
};
struct LogprobInfo {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;  // the top_n most likely tokens, most likely first
};
// Log-probabilities under the model's distribution (log_softmax of the raw logits, before
// temperature / top-k / top-p), of `chosen` and of the top_n alternatives.
LogprobInfo logprobs(std::span<const float> logits, int32_t chosen, int top_n);
// log_softmax(logits)[target], computed in double.
double token_logprob(std::span<const float> logits, int32_t target);
int32_t argmax(std::span<const float> logits);

// One sampled row as an executor returns it.
struct SampledToken {
  int32_t token = -1;
  std::optional<LogprobInfo> logprobs;  // when asked for (top_logprobs >= 0)
};
// The host implementation of an executor's sampling of one row: sample_with_uniform, then
// logprobs(logits, token, top_logprobs) when top_logprobs >= 0.
SampledToken sample_row(std::span<const float> logits, const SamplingParams& params, double u,
                        int top_logprobs, std::vector<std::pair<float, int32_t>>& cand);

}  // namespace nestedfp
