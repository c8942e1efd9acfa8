#include "engine/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace nestedfp::engine {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i =
      static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name,
                     sum_, name, count_);
}

namespace {
const char* const kReasons[] = {"stop", "length", "abort", "error"};
std::vector<double> latency_bounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.15, 0.2, 0.3,
          0.4,   0.5,    0.75,  1.0,  2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
}
size_t pi(Precision p) { return p == Precision::FP16 ? 0 : 1; }
}  // namespace

Metrics::Metrics()
    : ttft_(latency_bounds()),
      itl_(latency_bounds()),
      tpot_(latency_bounds()),
      e2e_(latency_bounds()),
      step_time_(latency_bounds()) {}

size_t Metrics::reason_index(const char* reason) {
  for (size_t i = 0; i < 4; ++i)
    if (std::strcmp(reason, kReasons[i]) == 0) return i;
  return 3;
}

void Metrics::request_added(int prompt_tokens) {
  std::lock_guard lk(mu_);
  ++requests_;
  prompt_tokens_ += static_cast<uint64_t>(prompt_tokens);
}
void Metrics::request_finished(const char* reason) {
  std::lock_guard lk(mu_);
  ++finished_[reason_index(reason)];
}
void Metrics::generation_tokens(int n) {
  std::lock_guard lk(mu_);
  generation_tokens_ += static_cast<uint64_t>(n);
}
void Metrics::first_token(double s) {
  std::lock_guard lk(mu_);
  ttft_.observe(s);
}
void Metrics::inter_token(double s) {
  std::lock_guard lk(mu_);
  itl_.observe(s);
}
void Metrics::request_tpot(double s) {
  std::lock_guard lk(mu_);
  tpot_.observe(s);
}
void Metrics::request_latency(double s) {
  std::lock_guard lk(mu_);
  e2e_.observe(s);
}
void Metrics::step(Precision p, int tokens, double seconds) {
  std::lock_guard lk(mu_);
  ++steps_[pi(p)];
  step_tokens_[pi(p)] += static_cast<uint64_t>(tokens);
  step_seconds_[pi(p)] += seconds;
  step_time_.observe(seconds);
}

void Metrics::speculation(int drafted, int accepted, int committed) {
  std::lock_guard lk(mu_);
  ++spec_.cycles;
  spec_.drafted += static_cast<uint64_t>(drafted);
  spec_.accepted += static_cast<uint64_t>(accepted);
  spec_.committed += static_cast<uint64_t>(committed);
}
Metrics::SpecCounts Metrics::spec_counts() const {
  std::lock_guard lk(mu_);
  return spec_;
}

uint64_t Metrics::steps(Precision p) const {
  std::lock_guard lk(mu_);
  return steps_[pi(p)];
}
uint64_t Metrics::step_tokens(Precision p) const {
  std::lock_guard lk(mu_);
  return step_tokens_[pi(p)];
}
uint64_t Metrics::requests_added() const {
  std::lock_guard lk(mu_);
  return requests_;
}
uint64_t Metrics::requests_finished(const char* reason) const {
  std::lock_guard lk(mu_);
  return finished_[reason_index(reason)];
}

std::string Metrics::render(const Gauges& g) const {
  std::lock_guard lk(mu_);
  std::string o;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    o += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, v);
  };
  auto gauge = [&](const char* name, const char* help, double v) {
    o += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n{0} {2}\n", name, help, v);
  };
  counter("nestedfp_requests_total", "Requests accepted by the engine.", requests_);
  o += "# HELP nestedfp_requests_finished_total Requests finished, by finish reason.\n"
       "# TYPE nestedfp_requests_finished_total counter\n";
  for (size_t i = 0; i < 4; ++i)
    o += fmt::format("nestedfp_requests_finished_total{{reason=\"{}\"}} {}\n", kReasons[i],
                     finished_[i]);
  counter("nestedfp_prompt_tokens_total", "Prompt tokens of accepted requests.", prompt_tokens_);
  counter("nestedfp_generation_tokens_total", "Tokens generated.", generation_tokens_);
  const char* names[] = {"fp16", "fp8"};
  o += "# HELP nestedfp_steps_total Engine steps, by precision.\n# TYPE nestedfp_steps_total "
       "counter\n";
  for (size_t i = 0; i < 2; ++i)
    o += fmt::format("nestedfp_steps_total{{precision=\"{}\"}} {}\n", names[i], steps_[i]);
  o += "# HELP nestedfp_step_tokens_total Tokens processed by engine steps, by precision.\n"
       "# TYPE nestedfp_step_tokens_total counter\n";
  for (size_t i = 0; i < 2; ++i)
    o += fmt::format("nestedfp_step_tokens_total{{precision=\"{}\"}} {}\n", names[i],
                     step_tokens_[i]);
  o += "# HELP nestedfp_step_seconds_total Time spent in the model executor, by precision.\n"
       "# TYPE nestedfp_step_seconds_total counter\n";
  for (size_t i = 0; i < 2; ++i)
    o += fmt::format("nestedfp_step_seconds_total{{precision=\"{}\"}} {}\n", names[i],
                     step_seconds_[i]);
  counter("nestedfp_spec_verify_total",
          "Speculative cycles (one sequence's FP8 drafts verified by an FP16 step).", spec_.cycles);
  counter("nestedfp_spec_draft_tokens_total", "Tokens drafted by FP8 steps.", spec_.drafted);
  counter("nestedfp_spec_accepted_tokens_total", "Drafted tokens FP16 verification accepted.",
          spec_.accepted);
  counter("nestedfp_spec_emitted_tokens_total",
          "Tokens committed by speculative cycles (accepted drafts + FP16's own token).",
          spec_.committed);
  gauge("nestedfp_spec_acceptance_rate", "spec_accepted_tokens_total / spec_draft_tokens_total.",
        spec_.drafted ? static_cast<double>(spec_.accepted) / static_cast<double>(spec_.drafted)
                      : 0.0);
  gauge("nestedfp_spec_tokens_per_cycle", "spec_emitted_tokens_total / spec_verify_total.",
        spec_.cycles ? static_cast<double>(spec_.committed) / static_cast<double>(spec_.cycles)
                     : 0.0);
  counter("nestedfp_preemptions_total", "Sequences preempted (KV freed, recomputed later).",
          g.preemptions);
  counter("nestedfp_prefix_cache_queries_total",
          "Tokens of admitted sequences looked up in the prefix cache.", g.prefix_queries);
  counter("nestedfp_prefix_cache_hits_total",
          "Of those, tokens whose KV was reused (cached blocks, forks of n > 1).", g.prefix_hits);
  gauge("nestedfp_prefix_cache_hit_rate", "prefix_cache_hits_total / prefix_cache_queries_total.",
        g.prefix_queries
            ? static_cast<double>(g.prefix_hits) / static_cast<double>(g.prefix_queries)
            : 0.0);
  gauge("nestedfp_kv_blocks_cached",
        "KV blocks holding a cached prefix (in use or evictable; evictable ones count as free).",
        g.kv_blocks_cached);
  gauge("nestedfp_kv_blocks_total", "KV cache blocks (16 tokens each).", g.kv_blocks_total);
  gauge("nestedfp_kv_blocks_used", "KV cache blocks in use.", g.kv_blocks_used);
  gauge("nestedfp_kv_blocks_free", "KV cache blocks free.", g.kv_blocks_free);
  gauge("nestedfp_queue_length", "New requests waiting for admission (at most --max-queue).",
        g.waiting);
  gauge("nestedfp_queue_preempted", "Preempted requests waiting to resume (outside --max-queue).",
        g.waiting_preempted);
  gauge("nestedfp_running_requests", "Requests admitted and running.", g.running);
  o += fmt::format(
      "# HELP nestedfp_precision_policy_info The current precision policy.\n"
      "# TYPE nestedfp_precision_policy_info "
      "gauge\nnestedfp_precision_policy_info{{policy=\"{}\"}} 1\n",
      g.policy);
  ttft_.render(o, "nestedfp_time_to_first_token_seconds",
               "Time from arrival to the first generated token.");
  tpot_.render(o, "nestedfp_time_per_output_token_seconds",
               "Per request: (last token - first token) / (tokens - 1).");
  itl_.render(o, "nestedfp_inter_token_latency_seconds",
              "Time between consecutive tokens of a request.");
  e2e_.render(o, "nestedfp_e2e_request_latency_seconds", "Time from arrival to finish.");
  step_time_.render(o, "nestedfp_step_duration_seconds", "Model executor time per step.");
  return o;
}

}  // namespace nestedfp::engine
