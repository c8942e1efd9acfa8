#include "nestedfp/sampler.hpp"

#include <algorithm>
#include <cmath>

#include "nestedfp/error.hpp"

namespace nestedfp {

void SamplingParams::validate() const {
  if (!(temperature >= 0.f) || !std::isfinite(temperature))
    fail("temperature must be a finite number >= 0, got {}", temperature);
  if (!(top_p > 0.f && top_p <= 1.f)) fail("top_p must be in (0, 1], got {}", top_p);
}

static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

RequestSampler::RequestSampler(const SamplingParams& p, uint64_t fallback_seed) : params_(p) {
  params_.validate();
  uint64_t x = p.seed ? *p.seed : fallback_seed;
  for (auto& s : s_) s = splitmix64(x);
}

double RequestSampler::next_uniform() {
  const auto rotl = [](uint64_t v, int k) { return (v << k) | (v >> (64 - k)); };
  const uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
  s_[2] ^= s_[0], s_[3] ^= s_[1], s_[1] ^= s_[2], s_[0] ^= s_[3], s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return double(r >> 11) * 0x1.0p-53;
}

int32_t argmax(std::span<const float> logits) {
  if (logits.empty()) fail("sampling from empty logits");
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

int32_t RequestSampler::sample(std::span<const float> logits) {
  if (params_.temperature == 0.f) return argmax(logits);
  const double u = next_uniform();  // one number per sampled token, whatever the filters
  return sample_with_uniform(logits, params_, u, cand_);
}

size_t filtered_candidates(std::span<const float> logits, const SamplingParams& params,
                           std::vector<std::pair<float, int32_t>>& cand, std::vector<double>& w) {
  if (logits.empty()) fail("sampling from empty logits");
  cand.clear();
  for (size_t i = 0; i < logits.size(); ++i) cand.emplace_back(logits[i], int32_t(i));
  const size_t k = params.top_k > 0 ? std::min(cand.size(), size_t(params.top_k)) : cand.size();
  auto better = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::partial_sort(cand.begin(), cand.begin() + ptrdiff_t(k), cand.end(), better);
  cand.resize(k);
  const double inv_t = 1.0 / params.temperature, mx = cand[0].first;
  w.resize(k);
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += (w[i] = std::exp((cand[i].first - mx) * inv_t));
  if (params.top_p < 1.f) {  // smallest prefix whose mass reaches top_p
    double acc = 0;
    for (size_t i = 0; i < k; ++i) {
      acc += w[i] / sum;
      if (acc >= params.top_p) return i + 1;
    }
  }
  return k;
}

int32_t sample_with_uniform(std::span<const float> logits, const SamplingParams& params, double u,
                            std::vector<std::pair<float, int32_t>>& cand) {
  if (params.temperature == 0.f) return argmax(logits);
  thread_local std::vector<double> p;  // scratch, like `cand`
  const size_t keep = filtered_candidates(logits, params, cand, p);
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += p[i];
  double target = u * mass, acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[i];
    if (target < acc) return cand[i].second;
  }
  return cand[keep - 1].second;
}

static double log_sum_exp(std::span<const float> logits) {
  const double mx = *std::max_element(logits.begin(), logits.end());
  double s = 0;
  for (float l : logits) s += std::exp(double(l) - mx);
  return mx + std::log(s);
}

double token_logprob(std::span<const float> logits, int32_t target) {
  if (target < 0 || size_t(target) >= logits.size())
    fail("token {} outside the vocabulary", target);
  return double(logits[size_t(target)]) - log_sum_exp(logits);
}

LogprobInfo logprobs(std::span<const float> logits, int32_t chosen, int top_n) {
  if (logits.empty()) fail("logprobs of empty logits");
  LogprobInfo r;
  const double lse = log_sum_exp(logits);
  if (chosen < 0 || size_t(chosen) >= logits.size())
    fail("token {} outside the vocabulary", chosen);
  r.chosen = {chosen, float(double(logits[size_t(chosen)]) - lse)};
  const size_t n = std::min(logits.size(), size_t(std::max(top_n, 0)));
  std::vector<int32_t> idx(logits.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = int32_t(i);
  std::partial_sort(idx.begin(), idx.begin() + ptrdiff_t(n), idx.end(), [&](int32_t a, int32_t b) {
    return logits[size_t(a)] > logits[size_t(b)] ||
           (logits[size_t(a)] == logits[size_t(b)] && a < b);
  });
  for (size_t i = 0; i < n; ++i)
    r.top.push_back({idx[i], float(double(logits[size_t(idx[i])]) - lse)});
  return r;
}

SampledToken sample_row(std::span<const float> logits, const SamplingParams& params, double u,
                        int top_logprobs, std::vector<std::pair<float, int32_t>>& cand) {
  SampledToken r;
  r.token = sample_with_uniform(logits, params, u, cand);
  if (top_logprobs >= 0) r.logprobs = logprobs(logits, r.token, top_logprobs);
  return r;
}

}  // namespace nestedfp
