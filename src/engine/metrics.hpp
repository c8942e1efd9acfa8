#pragma once
// Engine metrics and their Prometheus text rendering. Thread-safe (own lock): the step thread
// records, HTTP threads render.
#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "nestedfp/step.hpp"

namespace nestedfp::engine {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends `name_bucket{le=..}`, `name_sum`, `name_count` lines.
  void render(std::string& out, const std::string& name, const std::string& help) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative; last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Point-in-time values the engine reads under its own lock when rendering.
struct Gauges {
  int kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_free = 0;
  int waiting = 0, running = 0;  // waiting: new requests only (bounded by max_queue)
  int waiting_preempted = 0;
  uint64_t preemptions = 0;
  uint64_t prefix_queries = 0, prefix_hits = 0;  // tokens (Scheduler)
  int kv_blocks_cached = 0;
  std::string policy;
};

class Metrics {
 public:
  Metrics();
  void request_added(int prompt_tokens);
  void request_finished(const char* reason);  // "stop" | "length" | "abort" | "error"
  void generation_tokens(int n);
  void first_token(double ttft_s);
  void inter_token(double itl_s);
  void request_tpot(double tpot_s);
  void request_latency(double e2e_s);
  void step(Precision p, int tokens, double seconds);
  // One sequence's speculative cycle (docs/DESIGN.md §3.13).
  void speculation(int drafted, int accepted, int committed);

  std::string render(const Gauges& g) const;

  uint64_t steps(Precision p) const;
  uint64_t step_tokens(Precision p) const;
  uint64_t requests_added() const;
  uint64_t requests_finished(const char* reason) const;
  struct SpecCounts {
    uint64_t cycles = 0, drafted = 0, accepted = 0, committed = 0;
  };
  SpecCounts spec_counts() const;

 private:
  static size_t reason_index(const char* reason);
  mutable std::mutex mu_;
  uint64_t requests_ = 0, prompt_tokens_ = 0, generation_tokens_ = 0;
  std::array<uint64_t, 4> finished_{};  // stop, length, abort, error
  std::array<uint64_t, 2> steps_{}, step_tokens_{};
  std::array<double, 2> step_seconds_{};
  SpecCounts spec_;
  Histogram ttft_, itl_, tpot_, e2e_, step_time_;
};

}  // namespace nestedfp::engine
