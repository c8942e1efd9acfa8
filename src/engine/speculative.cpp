#include "nestedfp/speculative.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "nestedfp/error.hpp"

namespace nestedfp {

std::string SpeculativeConfig::spec() const {
  if (!enabled) return "off";
  if (!adaptive) return fmt::format("fp8:k={}", k);
  return fmt::format("fp8:k=auto,max={},cost={}", max_k, draft_cost);
}

namespace {

[[noreturn]] void bad_spec(std::string_view spec, std::string_view why) {
  fail(
      "--speculative '{}': {}; accepted forms: off, fp8, fp8:k=N (1..{}), "
      "fp8:k=auto[,max=M][,cost=C] (C in (0, 1])",
      spec, why, kMaxDraftTokens);
}

int parse_int(std::string_view spec, std::string_view v, std::string_view key) {
  int x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || x < 1 || x > kMaxDraftTokens)
    bad_spec(spec, fmt::format("{}={} is not an integer in 1..{}", key, v, kMaxDraftTokens));
  return x;
}

}  // namespace

SpeculativeConfig parse_speculative(std::string_view spec) {
  SpeculativeConfig c;
  if (spec.empty() || spec == "off" || spec == "none") return c;
  const auto colon = spec.find(':');
  if (spec.substr(0, colon) != "fp8")
    bad_spec(spec, "the draft method must be fp8 (the FP8 plane of the same weights)");
  c.enabled = true;
  if (colon == std::string_view::npos) return c;
  std::string_view rest = spec.substr(colon + 1);
  bool seen_max = false, seen_cost = false;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string_view kv = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) bad_spec(spec, fmt::format("'{}' is not key=value", kv));
    const std::string_view key = kv.substr(0, eq), v = kv.substr(eq + 1);
    if (key == "k") {
      if (v == "auto")
        c.adaptive = true;
      else
        c.k = parse_int(spec, v, key);
    } else if (key == "max") {
      seen_max = true;
      c.max_k = parse_int(spec, v, key);
    } else if (key == "cost") {
      seen_cost = true;
      char* end = nullptr;
      const std::string s(v);
      c.draft_cost = std::strtod(s.c_str(), &end);
      if (s.empty() || *end || !(c.draft_cost > 0 && c.draft_cost <= 1))
        bad_spec(spec, fmt::format("cost={} is not a number in (0, 1]", v));
    } else {
      bad_spec(spec, fmt::format("unknown key '{}'", key));
    }
  }
  if (!c.adaptive && (seen_max || seen_cost)) bad_spec(spec, "max and cost go with k=auto");
  if (c.adaptive) c.k = std::min(c.k, c.max_k);
  return c;
}

std::vector<double> sampling_probs(std::span<const float> logits, const SamplingParams& params) {
  if (logits.empty()) fail("sampling from empty logits");
  std::vector<double> out(logits.size(), 0.0);
  if (params.temperature == 0.f) {
    out[size_t(argmax(logits))] = 1.0;
    return out;
  }
  // The same candidates, order and cut-offs as sample_with_uniform (sampler.cpp).
  std::vector<std::pair<float, int32_t>> cand;
  std::vector<double> p;
  const size_t keep = filtered_candidates(logits, params, cand, p);
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += p[i];
  for (size_t i = 0; i < keep; ++i) out[size_t(cand[i].second)] = p[i] / mass;
  return out;
}

int32_t sample_probs(std::span<const double> p, double u) {
  double total = 0;
  for (double x : p) total += x;
  if (!(total > 0)) fail("sampling from a distribution with no mass");
  const double target = u * total;
  double acc = 0;
  int32_t last = -1;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] <= 0) continue;
    acc += p[i];
    last = int32_t(i);
    if (target < acc) return last;
  }
  return last;  // u * total rounded up to the last bucket
}

RuleResult speculative_accept(std::span<const double> p, std::span<const double> q, int32_t d,
                              double u_accept, double u_resample) {
  if (p.size() != q.size() || d < 0 || size_t(d) >= p.size())
    fail("speculative rule: distributions of {} and {} entries, draft token {}", p.size(), q.size(),
         d);
  const double pd = p[size_t(d)], qd = q[size_t(d)];
  // q[d] > 0 since d was drawn from q; min(1, p/q) without dividing.
  if (u_accept * qd < pd) return {true, d};
  std::vector<double> residual(p.size());
  double mass = 0;
  for (size_t i = 0; i < p.size(); ++i) mass += (residual[i] = std::max(0.0, p[i] - q[i]));
  // No residual mass means p == q up to rounding: rejection then has probability ~0; draw from p.
  return {false, sample_probs(mass > 0 ? std::span<const double>(residual) : p, u_resample)};
}

void AcceptanceEstimate::update(int drafted, int accepted_tokens) {
  constexpr double kDecay = 0.8;  // about the last five cycles
  checked = kDecay * checked + double(std::min(accepted_tokens + 1, drafted));
  accepted = kDecay * accepted + double(accepted_tokens);
}

double AcceptanceEstimate::rate(double prior) const {
  return checked > 0 ? accepted / checked : prior;
}

int choose_draft_len(double alpha, int max_k, double draft_cost) {
  alpha = std::clamp(alpha, 0.0, 0.999);
  int best = 1;
  double best_rate = -1;
  for (int k = 1; k <= max_k; ++k) {
    const double tokens = (1 - std::pow(alpha, k + 1)) / (1 - alpha);
    const double rate = tokens / (k * draft_cost + 1);
    if (rate > best_rate + 1e-12) best = k, best_rate = rate;
  }
  return best;
}

}  // namespace nestedfp
