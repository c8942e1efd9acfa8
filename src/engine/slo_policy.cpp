// The `slo` precision policy (docs/DESIGN.md §3.12): FP8 only while the latency model predicts
// that FP16 would miss a TTFT or TPOT target, for the queued requests or for those the recent
// arrival rate brings, or while arrivals overload FP16, and FP8 would do measurably better.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>

#include "nestedfp/error.hpp"
#include "nestedfp/latency_model.hpp"
#include "nestedfp/precision_policy.hpp"

namespace nestedfp {
namespace {

constexpr const char* kSloForm = "slo[:ttft=MS,tpot=MS,hysteresis=F,gain=F,forecast=F,hold=F]";
// Steps over which TPOT is averaged: roughly the next output tokens of a running request.
constexpr int kTpotHorizon = 32;
constexpr double kMinArrivals = 2;  // (decayed) arrivals in the window before the forecast counts
constexpr double kRecentWeight = 1.0 / kTpotHorizon;  // EWMA weight of the latest step's shape
constexpr double kInf = std::numeric_limits<double>::infinity();

struct SloParams {
  double ttft_ms = 0, tpot_ms = 0;  // 0 = no target (kept in ms so the spec prints back exactly)
  double ttft_s() const { return ttft_ms / 1e3; }
  double tpot_s() const { return tpot_ms / 1e3; }
  double hysteresis = 0.2;  // in FP8, FP16 must meet targets x (1 - hysteresis)
  double gain = 0.05;       // FP8 must be predicted at least this much better
  double forecast = 1;      // arrival-rate window in TTFT targets; 0 = no forecast
  double hold = 0.8;        // after an FP8 prefill step, FP8 while FP16's rho >= this; 0 = off
};

enum Reason { kNone, kTtft, kForecast, kOverload, kTpot, kNoGain, kReasons };
constexpr const char* kReasonNames[kReasons] = {"none",     "ttft", "forecast",
                                                "overload", "tpot", "no_gain"};
bool fp8_reason(int r) { return r == kTtft || r == kForecast || r == kOverload || r == kTpot; }

// Prometheus spells infinity +Inf.
std::string prom(double v) { return std::isinf(v) ? "+Inf" : fmt::format("{}", v); }

class SloPolicy final : public PrecisionPolicy {
 public:
  SloPolicy(SloParams p, int budget, const LatencyModel& m) : p_(p), budget_(budget), m_(m) {
    if (p_.forecast > 0 && p_.ttft_ms > 0) arrivals_.emplace(p_.forecast * p_.ttft_s());
  }

  bool needs_queue() const override { return true; }

  std::string spec() const override {
    return fmt::format("slo:ttft={},tpot={},hysteresis={},gain={},forecast={},hold={}", p_.ttft_ms,
                       p_.tpot_ms, p_.hysteresis, p_.gain, p_.forecast, p_.hold);
  }

  Precision choose(const StepLoad& load) override {
    const double tighten = last_ == Precision::FP8 ? 1 - p_.hysteresis : 1;
    note_arrivals(load);
    if (arrivals_) rates_ = arrivals_->at(load.now_s);
    late_ = 0;
    if (p_.ttft_s() > 0)
      for (const auto& q : load.prompts) late_ += q.age_s >= p_.ttft_s();
    for (Precision p : {Precision::FP16, Precision::FP8}) {
      // The recent steps that running requests waited through, at this precision: under steady
      // arrivals each new prompt brings a full step that the current queue does not show yet.
      // Starts at 0, so a single large step early on does not dominate.
      double& r = recent_[idx(p)];
      if (load.num_decode_seqs > 0)
        r += kRecentWeight * (m_.predict(p, load.num_tokens, load.num_seqs) - r);
      pred_[idx(p)] = predict(p, load);
      if (load.num_decode_seqs > 0) pred_[idx(p)].tpot_s = std::max(pred_[idx(p)].tpot_s, r);
      forecast(p, load, pred_[idx(p)]);
    }
    const Pred &h = pred_[0], &e = pred_[1];
    const bool miss_ttft = p_.ttft_s() > 0 && h.savable && h.ttft_s > tighten * p_.ttft_s();
    const bool miss_tpot = p_.tpot_s() > 0 && h.tpot_s > 0 && h.tpot_s > tighten * p_.tpot_s();
    const bool help_ttft = e.ttft_s < (1 - p_.gain) * h.ttft_s;
    const bool help_tpot = e.tpot_s < (1 - p_.gain) * h.tpot_s;
    // The forecast judges only steps that compute prompt tokens: a decode-only step delays a new
    // arrival by at most its own length. Its hysteresis follows the last such step, so decode-only
    // steps between the prefills of a surge do not reset it.
    const bool prefill = load.num_tokens > load.num_decode_seqs;
    const double fc_tighten = last_prefill_ == Precision::FP8 ? 1 - p_.hysteresis : 1;
    const bool miss_fc = prefill && h.fc_ttft_s > fc_tighten * p_.ttft_s();
    // Both saturated: FP8 still drains the backlog faster if its prompt throughput is higher.
    const bool faster_prompts = e.s_per_token < (1 - p_.gain) * h.s_per_token;
    const bool help_fc = std::isinf(h.fc_ttft_s) && std::isinf(e.fc_ttft_s)
                             ? faster_prompts
                             : e.fc_ttft_s < (1 - p_.gain) * h.fc_ttft_s;
    // Overload (with the forecast on): FP8 drains the prompt backlog faster whatever the targets.
    // Behind: a queued request is past its TTFT target. It cannot be saved, but its tokens delay
    // every later arrival, and it is a measured miss where the model may be optimistic; a lull
    // of a window in a bursty overload is no sign that arrivals ended. Held: the last prefill
    // step ran FP8 and the rate still keeps FP16 near its prompt throughput (a noisy rate dips
    // below the forecast's miss long before the backlog is gone).
    // One late request alone is no backlog (a lone prompt whose prefill is longer than the
    // target, on an idle server): behind needs two, or one while the rate keeps FP16 busy.
    const bool held = last_prefill_ == Precision::FP8 && p_.hold > 0 && h.rho >= p_.hold;
    const bool behind = late_ > 1 || (late_ > 0 && p_.hold > 0 && h.rho >= p_.hold);
    const bool overload = prefill && arrivals_.has_value() && (held || behind);
    Reason why = kNone;
    if (miss_ttft && help_ttft)
      why = kTtft;
    else if (miss_fc && help_fc)
      why = kForecast;
    else if (overload && faster_prompts)
      why = kOverload;
    else if (miss_tpot && help_tpot)
      why = kTpot;
    else if (miss_ttft || miss_fc || overload || miss_tpot)
      why = kNoGain;
    last_ = fp8_reason(why) ? Precision::FP8 : Precision::FP16;
    if (prefill) last_prefill_ = last_;
    ++decisions_[idx(last_)][why];
    return last_;
  }

  void render_metrics(std::string& o) const override {
    o += "# HELP nestedfp_slo_decisions_total Steps chosen by the slo policy, by precision and "
         "reason (ttft/tpot: FP16 predicted to miss that target for the queued or running "
         "requests; forecast: FP16 predicted to miss the TTFT target of the requests the recent "
         "arrival rate brings; overload: a prefill step while a queued request is past the TTFT "
         "target or, after an FP8 prefill step, while the rate keeps FP16's forecast utilization "
         "at or above hold; no_gain: a miss or overload, but FP8 is "
         "not predicted to help; none: FP16 meets the targets).\n"
         "# TYPE nestedfp_slo_decisions_total counter\n";
    for (Precision p : {Precision::FP16, Precision::FP8})
      for (int r = 0; r < kReasons; ++r)
        if (decisions_[idx(p)][r] || (p == Precision::FP8) == fp8_reason(r))
          o += fmt::format("nestedfp_slo_decisions_total{{precision=\"{}\",reason=\"{}\"}} {}\n",
                           to_string(p), kReasonNames[r], decisions_[idx(p)][r]);
    auto gauge2 = [&](const char* name, const char* help, double Pred::*f) {
      o += fmt::format("# HELP {0} {1}\n# TYPE {0} gauge\n", name, help);
      for (Precision p : {Precision::FP16, Precision::FP8})
        o += fmt::format("{}{{precision=\"{}\"}} {}\n", name, to_string(p), prom(pred_[idx(p)].*f));
    };
    gauge2("nestedfp_slo_predicted_ttft_seconds",
           "At the last step: the latest predicted TTFT among waiting requests that can still meet "
           "the target, if all steps ran at this precision; queued requests only, no arrivals (0: "
           "none waiting).",
           &Pred::ttft_s);
    gauge2("nestedfp_slo_forecast_ttft_seconds",
           "At the last step: predicted TTFT of a request arriving at the recent arrival rate, if "
           "all steps ran at this precision (mean M/G/1 wait plus its own prefill; +Inf: the rate "
           "exceeds this precision's prompt throughput; 0: no forecast).",
           &Pred::fc_ttft_s);
    gauge2("nestedfp_slo_forecast_utilization",
           "At the last step: recent prompt-token arrival rate / prompt tokens per second of full "
           "steps at this precision.",
           &Pred::rho);
    gauge2("nestedfp_slo_predicted_tpot_seconds",
           "At the last step: predicted time per output token of running requests over the next "
           "steps at this precision (0: none decoding).",
           &Pred::tpot_s);
    o += fmt::format(
        "# HELP nestedfp_slo_late_prompts At the last step: requests without a first token that "
        "are past the TTFT target.\n# TYPE nestedfp_slo_late_prompts gauge\n"
        "nestedfp_slo_late_prompts {}\n",
        late_);
    o += fmt::format(
        "# HELP nestedfp_slo_arrival_rate The slo policy's recent arrival rate per second "
        "(decayed over its forecast window; prompt tokens without KV at arrival).\n"
        "# TYPE nestedfp_slo_arrival_rate gauge\n"
        "nestedfp_slo_arrival_rate{{unit=\"requests\"}} {}\n"
        "nestedfp_slo_arrival_rate{{unit=\"prompt_tokens\"}} {}\n",
        rates_.requests, rates_.tokens);
    o += fmt::format(
        "# HELP nestedfp_slo_target_seconds The slo policy's targets.\n# TYPE "
        "nestedfp_slo_target_seconds gauge\nnestedfp_slo_target_seconds{{target=\"ttft\"}} "
        "{}\nnestedfp_slo_target_seconds{{target=\"tpot\"}} {}\n",
        p_.ttft_s(), p_.tpot_s());
  }

 private:
  struct Pred {
    double ttft_s = 0, tpot_s = 0;
    bool savable = false;    // some waiting request can still meet the TTFT target
    double fc_ttft_s = 0;    // forecast TTFT of a new arrival (0: none; inf: saturated)
    double rho = 0;          // arrival rate / prompt throughput
    double s_per_token = 0;  // full-step seconds per prompt token (1 / throughput)
  };
  static size_t idx(Precision p) { return p == Precision::FP16 ? 0 : 1; }

  // Each request appears in the queue at least at the step that computes its first chunk; those
  // later in arrival order than any seen before are new (a suffix: the queue is oldest first).
  void note_arrivals(const StepLoad& load) {
    const auto& q = load.prompts;
    if (!arrivals_ || q.empty()) return;
    size_t i = q.size();
    while (i > 0 && q[i - 1].order >= next_order_) --i;
    for (; i < q.size(); ++i) arrivals_->add(load.now_s - q[i].age_s, q[i].remaining_tokens);
    next_order_ = std::max(next_order_, q.back().order + 1);
  }

  // Drains the prompt queue at this precision: each step keeps its decodes and fills the rest of
  // the token budget with prompt tokens in arrival order; a request's first token comes at the end
  // of the step that computes its last prompt token.
  Pred predict(Precision p, const StepLoad& load) const {
    Pred out;
    const int decodes = load.num_decode_seqs;
    const int cap = std::max(1, budget_ - decodes);
    long pending = 0;
    for (const auto& q : load.prompts) pending += q.remaining_tokens;
    const int prompt_seqs = std::max(1, static_cast<int>(load.prompts.size()));
    const int full_tokens = decodes + static_cast<int>(std::min<long>(cap, pending));
    const double t_full =
        m_.predict(p, std::max(1, full_tokens), decodes + std::min(prompt_seqs, cap));
    long cum = 0;
    for (const auto& q : load.prompts) {
      cum += q.remaining_tokens;
      if (q.age_s >= p_.ttft_s()) continue;  // already late: it cannot be saved, only its queue
      double steps = std::ceil(static_cast<double>(cum) / cap);
      out.ttft_s = std::max(out.ttft_s, q.age_s + steps * t_full);
      out.savable = true;
    }
    if (decodes > 0) {
      const double full_steps = std::min<double>(kTpotHorizon, std::ceil(double(pending) / cap));
      const double t_dec = m_.predict(p, decodes, decodes);
      out.tpot_s = (full_steps * t_full + (kTpotHorizon - full_steps) * t_dec) / kTpotHorizon;
    }
    return out;
  }

  // TTFT of a request arriving at the recent rate, in steady state at this precision. Prompts are
  // served first come first served at mu prompt tokens/s (full steps beside today's decodes); with
  // arrival rate lambda and prompt sizes s, the mean work found ahead on arrival is the M/G/1
  // (Pollaczek-Khinchine) lambda E[s^2] / (2 mu (1 - rho)), rho = lambda E[s] / mu. It grows
  // without bound as rho -> 1: FP16 near its prompt throughput misses however short the queue
  // looks now, which is what a queue snapshot cannot see (a burst lands behind full steps).
  void forecast(Precision p, const StepLoad& load, Pred& out) const {
    if (!arrivals_) return;
    const double s = rates_.mean_tokens();
    const int decodes = load.num_decode_seqs;
    const int cap = std::max(1, budget_ - decodes);
    // Full steps of prompts of the recent mean size, or of the queue's when nothing arrived lately
    // (the seconds per prompt token a backlog drains at, even without a rate).
    long pending = 0;
    for (const auto& q : load.prompts) pending += q.remaining_tokens;
    const double size = s > 0                  ? s
                        : load.prompts.empty() ? cap
                                               : double(pending) / load.prompts.size();
    const int per_step = std::clamp(static_cast<int>(std::ceil(cap / std::max(1.0, size))), 1, cap);
    const double t_full = m_.predict(p, decodes + cap, decodes + per_step);
    out.s_per_token = t_full / cap;
    if (s <= 0) return;  // nothing arrived lately: nothing to forecast
    // Fewer than two arrivals in the window are no rate: one long prompt on an idle server would
    // forecast its own wait (the queue model already covers a request once it is queued).
    if (rates_.requests * arrivals_->window_s() < kMinArrivals) return;
    out.rho = rates_.tokens * out.s_per_token;
    if (out.rho >= 1) {
      out.fc_ttft_s = kInf;
      return;
    }
    const double ahead = rates_.tokens_sq * out.s_per_token / (2 * (1 - out.rho));  // tokens
    out.fc_ttft_s = std::ceil((ahead + s) / cap) * t_full;
  }

  SloParams p_;
  int budget_;
  const LatencyModel& m_;
  Precision last_ = Precision::FP16, last_prefill_ = Precision::FP16;
  std::array<Pred, 2> pred_{};
  std::array<double, 2> recent_{};       // EWMA of predicted step times over the recent steps
  std::optional<ArrivalRate> arrivals_;  // only with a forecast and a TTFT target
  ArrivalRate::Rates rates_;             // at the last step
  uint64_t next_order_ = 0;              // arrival orders below this were counted
  size_t late_ = 0;                      // queued requests past the TTFT target, this step
  std::array<std::array<uint64_t, kReasons>, 2> decisions_{};
};

double parse_num(std::string_view spec, std::string_view key, std::string_view v) {
  double out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || v.empty() || !(out >= 0) ||
      !std::isfinite(out))
    fail("precision policy '{}': {} must be a non-negative number, got '{}'", spec, key, v);
  return out;
}

}  // namespace

std::unique_ptr<PrecisionPolicy> make_slo_policy(std::string_view spec, const PolicyContext& ctx) {
  if (!ctx.latency)
    fail("precision policy '{}': this engine has no latency model (internal error)", spec);
  SloParams p;
  p.ttft_ms = ctx.slo_ttft_ms;
  p.tpot_ms = ctx.slo_tpot_ms;
  std::string_view rest = spec.substr(std::min(spec.size(), spec.find(':')));
  if (!rest.empty()) {
    rest.remove_prefix(1);
    if (rest.empty()) fail("precision policy '{}': nothing after ':'; expected {}", spec, kSloForm);
    constexpr size_t kKeys = 6;
    std::array<bool, kKeys> seen{};
    while (true) {
      std::string_view item = rest.substr(0, rest.find(','));
      auto eq = item.find('=');
      if (eq == std::string_view::npos)
        fail("precision policy '{}': '{}' is not key=value; expected {}", spec, item, kSloForm);
      std::string_view key = item.substr(0, eq), val = item.substr(eq + 1);
      const std::array<std::string_view, kKeys> keys = {"ttft", "tpot",     "hysteresis",
                                                        "gain", "forecast", "hold"};
      const size_t k = std::find(keys.begin(), keys.end(), key) - keys.begin();
      if (k == kKeys || seen[k])
        fail("precision policy '{}': unknown or repeated option '{}'; expected {}", spec, key,
             kSloForm);
      seen[k] = true;
      double v = parse_num(spec, key, val);
      if (k == 0) p.ttft_ms = v;
      if (k == 1) p.tpot_ms = v;
      if (k == 2) p.hysteresis = v;
      if (k == 3) p.gain = v;
      if (k == 4) p.forecast = v;
      if (k == 5) p.hold = v;
      if (item.size() == rest.size()) break;
      rest = rest.substr(item.size() + 1);
    }
  }
  if (p.ttft_ms <= 0 && p.tpot_ms <= 0)
    fail(
        "precision policy '{}': give a target, e.g. slo:ttft=500,tpot=50 (ms) or serve's "
        "--slo-ttft/--slo-tpot",
        spec);
  if (p.hysteresis >= 1 || p.gain >= 1)
    fail("precision policy '{}': hysteresis and gain are fractions below 1", spec);
  return std::make_unique<SloPolicy>(p, ctx.max_num_batched_tokens, *ctx.latency);
}

}  // namespace nestedfp
