#pragma once
// Step-time model per precision (docs/DESIGN.md §3.12), used by the `slo` precision policy:
//
//   seconds(p, tokens, seqs) = a_p + b_p * tokens + c_p * seqs
//
// Each precision's coefficients are a ridge fit: exponentially decayed least squares over the
// measured steps (observe), pulled towards a prior (the calibration or a `bench engine` file), so
// the fit follows drift without winding up when the recent steps all look alike (decode-only
// steps have tokens == seqs, which alone cannot separate b from c).
#include <array>
#include <string>
#include <vector>

#include "nestedfp/step.hpp"

namespace nestedfp {

struct StepTiming {
  Precision precision = Precision::FP16;
  int tokens = 0, seqs = 0;
  double seconds = 0;
};

class LatencyModel {
 public:
  struct Coeffs {
    double a = 0, b = 0, c = 0;  // seconds, seconds per token, seconds per sequence
  };

  // `decay`: weight kept by earlier observations at each new one (0.99: ~100-step memory).
  explicit LatencyModel(double decay = 0.99);

  // Least-squares fit of one precision's prior to timings (>= 1 of them; with fewer than three
  // distinct (tokens, seqs) points the fit is ridge-regularised towards a = 0, c = 0). Replaces
  // what was learnt online.
  void set_prior(Precision p, const std::vector<StepTiming>& timings);
  void set_prior(Precision p, Coeffs c);
  // A measured step of the engine.
  void observe(const StepTiming& t);

  // Predicted seconds of a step, never below the fastest step measured in that precision (a
  // least-squares line can have a negative intercept). An unknown precision (no prior, nothing
  // observed) borrows the other's prediction, so it never looks faster than a known one.
  double predict(Precision p, int tokens, int seqs) const;
  bool known(Precision p) const { return st_[idx(p)].known; }
  Coeffs coeffs(Precision p) const { return st_[idx(p)].fit; }
  uint64_t observed(Precision p) const { return st_[idx(p)].observed; }

 private:
  static size_t idx(Precision p) { return p == Precision::FP16 ? 0 : 1; }
  struct State {
    bool known = false;
    Coeffs prior, fit;
    std::array<double, 9> xtx{};  // decayed sums over observations (scaled features)
    std::array<double, 3> xty{};
    uint64_t observed = 0;
    double floor_s = 1e-5;  // the fastest step measured: no prediction goes below it
  };
  void refit(State& s) const;
  double decay_;
  std::array<State, 2> st_;
};

// Recent arrivals as exponentially decayed rates (the slo policy's forecast, DESIGN.md §3.12):
// an arrival of s prompt tokens at time t adds exp(-(now - t) / window) / window to the request
// rate, s times that to the token rate and s^2 times it to the rate of squared tokens (the second
// moment that queueing delay grows with). O(1) per arrival and per read.
class ArrivalRate {
 public:
  struct Rates {
    double requests = 0, tokens = 0, tokens_sq = 0;  // per second
    double mean_tokens() const { return requests > 0 ? tokens / requests : 0; }
  };
  explicit ArrivalRate(double window_s) : window_(window_s) {}
  // Times may come in any order; one before the latest update is decayed by its age.
  void add(double t_s, int tokens);
  Rates at(double now_s) const;
  double window_s() const { return window_; }

 private:
  double window_;
  double t_ = 0;  // time the sums refer to
  bool started_ = false;
  Rates sum_;  // decayed sums at t_, already divided by the window
};

// Timings from a file: either {"steps": [{"precision", "tokens", "seqs", "seconds"}, ...]} (easy
// to write by hand) or a `nestedfp bench engine` engine.json: its "decode" rows of the
// nested weights (batch tokens and seqs, step_ms) and "prefill" rows of NestedFP16/NestedFP8 (one
// `chunk`-token step at tok_s); or the older "results" rows (decode_step_ms, and prefill_tok_s
// measured in FP16: a step of `prefill_step_tokens`, default 2048). Throws Error
// naming the file and what is missing.
std::vector<StepTiming> load_step_timings(const std::string& path);
// Fits both precisions' priors from such timings; throws when one precision has none. A precision
// whose largest step is under a quarter of the other's (bench engine prefills in FP16 only)
// borrows the other's larger steps, scaled by the two precisions' geometric-mean time ratio on the
// (tokens, seqs) points both have.
void fit_priors(LatencyModel& m, const std::vector<StepTiming>& timings, const std::string& what);

// Times a few synthetic steps through `exec` (before any request: they write KV into blocks
// [0, n) that nothing holds yet): per precision, 1 and up to `max_seqs` one-token sequences, and
// prefills of half and all of `budget` tokens in chunks of at most 256 (and `max_len`); each
// point after a warm-up step, the faster of two. Returns the timings.
// Prometheus gauges nestedfp_latency_model_coefficient{precision,term=a|b|c} and
// nestedfp_latency_model_observed_steps_total{precision}, appended to `out`.
void render_latency_model(const LatencyModel& m, std::string& out);

std::vector<StepTiming> calibrate_steps(ModelExecutor& exec, int budget, int max_seqs,
                                        int num_blocks, int max_len);

}  // namespace nestedfp
