// The slo policy under overload (docs/DESIGN.md §3.12, issue 16): FP8 on every prefill step while
// requests past the TTFT target are queued or the arrival rate holds FP16 near its prompt
// throughput; FP16 again in lulls and at light load. Against a synthetic latency model and a
// first-come-first-served prefill server replaying seeded arrivals.
#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "nestedfp/latency_model.hpp"
#include "nestedfp/precision_policy.hpp"
#include "slo_synthetic.hpp"

using namespace nestedfp;

namespace {

constexpr int kBudget = 1000;
// FP16: 10 ms + 0.1 ms/token (full steps: 9091 prompt tokens/s); FP8: 6 ms + 0.05 ms/token
// (17857 tokens/s).
constexpr double kFp16TokS = 1000 / 0.110;

LatencyModel model(bool fp8_faster = true) { return slotest::synthetic_model(fp8_faster); }

std::unique_ptr<PrecisionPolicy> make(const LatencyModel& m, const std::string& spec) {
  return slotest::make_policy(m, spec, kBudget);
}

std::string metrics(const PrecisionPolicy& p) {
  std::string o;
  p.render_metrics(o);
  return o;
}

// The value of a metric series such as `name{labels}` (a line of its own); NaN if absent.
double value(const std::string& o, const std::string& series) {
  const auto at = o.find("\n" + series + " ");
  return at == std::string::npos ? std::nan("") : std::stod(o.substr(at + series.size() + 2));
}

struct Arrival {
  double t;
  int len;
};

// Poisson arrivals of prompts of 100..900 tokens (mean 500) at `load` x FP16's prompt throughput
// during [from, to), only in the first `on` seconds of every `on + off` (bursts). Seeded raw
// mt19937_64 output, so the same on every standard library.
void poisson(std::vector<Arrival>& out, double load, double from, double to, uint64_t seed,
             double on = 1e9, double off = 0) {
  std::mt19937_64 g(seed);
  auto unit = [&] { return (static_cast<double>(g() >> 11) + 0.5) * 0x1.0p-53; };
  const double per_s = load * kFp16TokS / 500;
  for (double t = from - std::log(unit()) / per_s; t < to; t -= std::log(unit()) / per_s) {
    const double phase = std::fmod(t - from, on + off);
    if (phase >= on) t += on + off - phase;  // the gap: the next burst starts the Poisson anew
    if (t < to) out.push_back({t, 100 + static_cast<int>(unit() * 801)});
  }
}

// Each step fills the token budget with the queue's prompt tokens in arrival order and lasts what
// the model predicts at the chosen precision; runs until every arrival has its first token.
struct Replay {
  struct Step {
    double t;
    Precision p;
    int tokens;
  };
  std::vector<Step> steps;
  int met = 0, served = 0;  // first tokens within the target

  Replay(const LatencyModel& m, PrecisionPolicy& policy, const std::vector<Arrival>& arrivals,
         double ttft_s) {
    struct Req {
      double arrival;
      int left;
      uint64_t order;
    };
    std::deque<Req> q;
    double now = 0;
    size_t next = 0;
    while (next < arrivals.size() || !q.empty()) {
      for (; next < arrivals.size() && arrivals[next].t <= now; ++next)
        q.push_back({arrivals[next].t, arrivals[next].len, next});
      if (q.empty()) {
        now = arrivals[next].t;
        continue;
      }
      StepLoad l;
      l.now_s = now;
      int pending = 0;
      for (auto& r : q) {
        l.prompts.push_back({now - r.arrival, r.left, r.order});
        pending += r.left;
      }
      l.num_tokens = std::min(pending, kBudget);
      for (int c = 0; c < l.num_tokens; c += q[l.num_seqs++].left) {
      }
      const Precision p = policy.choose(l);
      steps.push_back({now, p, l.num_tokens});
      now += m.predict(p, l.num_tokens, l.num_seqs);
      for (int budget = kBudget; budget > 0 && !q.empty();) {
        const int take = std::min(budget, q.front().left);
        q.front().left -= take;
        budget -= take;
        if (q.front().left > 0) break;
        served += 1;
        met += now - q.front().arrival <= ttft_s;
        q.pop_front();
      }
    }
  }

  // Steps starting in [from, to): all, FP16 ones, and FP16 ones that `dynamic` would run FP8
  // (more than half the token budget).
  int count(double from, double to, bool fp16_only = false, bool full_only = false) const {
    int n = 0;
    for (const auto& s : steps)
      n += s.t >= from && s.t < to && (!fp16_only || s.p == Precision::FP16) &&
           (!full_only || s.tokens > kBudget / 2);
    return n;
  }
};

constexpr double kEnd = 1e9;

}  // namespace

// Above FP16's prompt throughput (sustained) and above FP8's (in bursts that leave a late backlog
// in every gap): once the rate is known, every step that `dynamic` runs FP8 runs FP8 here too,
// and the backlog never drains in FP16 steps.
TEST(SloOverload, AboveFp16AndFp8ThroughputEveryFullStepRunsFp8) {
  auto m = model();
  struct Case {
    const char* what;
    double load, on, off, until;
  };
  for (const Case& c : {Case{"sustained 1.3x FP16 (0.66x FP8)", 1.3, 1e9, 0, 20},
                        Case{"2 s bursts at 3x FP16 (1.5x FP8), 1 s gaps", 3.0, 2, 1, 12}}) {
    std::vector<Arrival> a;
    poisson(a, c.load, 0, c.until, 7, c.on, c.off);
    auto p = make(m, "slo:ttft=500");
    Replay r(m, *p, a, 0.5);
    // Full steps (overloaded), and FP16 on (nearly) none of them: the sustained rate's Poisson
    // lulls still bring a few, with the queue under a step.
    const int full = r.count(1, kEnd, false, true);
    ASSERT_GT(full, 150) << c.what;
    EXPECT_LE(r.count(1, kEnd, true, true), c.off > 0 ? 0 : full / 20) << c.what;
    auto dyn = make(m, "dynamic");
    Replay d(m, *dyn, a, 0.5);
    const int fp8 = r.count(0, kEnd) - r.count(0, kEnd, true);
    EXPECT_GE(fp8 + 3, d.count(0, kEnd) - d.count(0, kEnd, true)) << c.what;  // 3: the onset
  }
  // The gaps' backlog is what the queue model and forecast let drain in FP16: the requests in it
  // are past the target, and the rate decays within a gap.
  std::vector<Arrival> a;
  poisson(a, 3.0, 0, 12, 7, 2, 1);
  auto p = make(m, "slo:ttft=500");
  Replay r(m, *p, a, 0.5);
  EXPECT_GT(
      value(metrics(*p), "nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"overload\"}"), 20)
      << metrics(*p);
  auto old = make(m, "slo:ttft=500,forecast=0");  // the queue model alone: unchanged
  Replay o(m, *old, a, 0.5);
  EXPECT_GT(o.count(1, kEnd, true, true), 20);
  EXPECT_EQ(
      value(metrics(*old), "nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"overload\"}"),
      0);
}

// A surge past FP8's throughput, a lull, then light load: FP8 through the surge and its late
// backlog, FP16 on every step of the light load after the lull.
TEST(SloOverload, SurgeThenLullReturnsToFp16) {
  auto m = model();
  std::vector<Arrival> a;
  poisson(a, 3.0, 0, 2, 11);   // ~27k tokens in 2 s: ~1 s of backlog even in FP8
  poisson(a, 0.3, 5, 15, 12);  // after a 3 s lull
  auto p = make(m, "slo:ttft=500");
  Replay r(m, *p, a, 0.5);
  ASSERT_GT(r.count(2, 5), 5);  // the backlog outlasts the arrivals
  // FP8 through it, and through its remnants (past the target), but for at most one step: the
  // last late request alone, once the rate has decayed, is no backlog (DESIGN.md §3.12).
  EXPECT_LE(r.count(0.5, 5, true, true), 1);
  EXPECT_LE(r.count(2, 5, true), 1);
  ASSERT_GT(r.count(5, kEnd), 30);
  // FP16 at once after the lull, and on nearly every step of the light load (its own short
  // bursts aside).
  EXPECT_EQ(r.count(5, 8, true), r.count(5, 8));
  EXPECT_GE(r.count(5, kEnd, true), 0.9 * r.count(5, kEnd));
}

// Light load is unchanged: every step FP16, no overload decision.
TEST(SloOverload, LightLoadStaysFp16) {
  auto m = model();
  std::vector<Arrival> a;
  poisson(a, 0.3, 0, 20, 3);
  auto p = make(m, "slo:ttft=500");
  Replay r(m, *p, a, 0.5);
  ASSERT_GT(r.count(0, kEnd), 80);
  EXPECT_EQ(r.count(0, kEnd, true), r.count(0, kEnd));
  EXPECT_EQ(r.met, r.served);
  EXPECT_EQ(
      value(metrics(*p), "nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"overload\"}"), 0);
}

// Requests past the target in the queue: overload with the forecast on, whatever the rate; the
// queue model alone (forecast=0) still ignores them; never on a decode-only step, nor when FP8 is
// no faster.
TEST(SloOverload, LateRequestsInTheQueueAreABacklogToDrainInFp8) {
  auto m = model();
  StepLoad l;
  l.now_s = 10;
  for (uint64_t i = 0; i < 3; ++i) l.prompts.push_back({0.5, 500, i});  // 500 ms old: all late
  l.num_tokens = 1000;
  l.num_seqs = 2;
  auto p = make(m, "slo:ttft=200,hysteresis=0");
  EXPECT_EQ(p->choose(l), Precision::FP8);
  auto o = metrics(*p);
  EXPECT_EQ(value(o, "nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"overload\"}"), 1)
      << o;
  EXPECT_EQ(value(o, "nestedfp_slo_late_prompts"), 3) << o;
  EXPECT_EQ(value(o, "nestedfp_slo_forecast_ttft_seconds{precision=\"fp16\"}"), 0) << o;  // no rate
  StepLoad dec = l;  // the same queue, but a step of decodes only (no room for a prompt chunk)
  dec.num_tokens = dec.num_seqs = dec.num_decode_seqs = 8;
  EXPECT_EQ(p->choose(dec), Precision::FP16);
  l.prompts[0].age_s = l.prompts[1].age_s = l.prompts[2].age_s = 0.19;         // none late: 220 ms
  EXPECT_EQ(make(m, "slo:ttft=200,hysteresis=0")->choose(l), Precision::FP8);  // queue: ttft
  // One late request with 10 tokens left; the other two (400 tokens each) meet 200 ms in one
  // 91 ms step. One late request alone is no backlog (no rate either): FP16. Two are.
  l.prompts = {{0.5, 10, 0}, {0.01, 400, 1}, {0.01, 400, 2}};
  l.num_tokens = 810;
  l.num_seqs = 3;
  EXPECT_EQ(make(m, "slo:ttft=200,hysteresis=0")->choose(l), Precision::FP16);
  l.prompts[1].age_s = 0.5;
  EXPECT_EQ(make(m, "slo:ttft=200,hysteresis=0")->choose(l), Precision::FP8);
  l.prompts[0].age_s = l.prompts[1].age_s = 0.05;  // not late: FP16
  EXPECT_EQ(make(m, "slo:ttft=200,hysteresis=0")->choose(l), Precision::FP16);
  // A lone long prompt on an idle server, past its target only because its own prefill is longer
  // than the target: FP8 would not save it and costs FP16 steps, so FP16.
  // One prompt of `age` s with `left` tokens to compute on an otherwise idle server, at t = 10 s.
  auto one_prompt = [](double age, int left, int step_tokens) {
    StepLoad x;
    x.now_s = 10;
    x.prompts = {{age, left, 0}};
    x.num_tokens = step_tokens;
    x.num_seqs = 1;
    return x;
  };
  const StepLoad lone = one_prompt(0.3, 6000, 2048);
  auto lp = make(m, "slo:ttft=200,hysteresis=0");
  EXPECT_EQ(lp->choose(lone), Precision::FP16);
  EXPECT_EQ(value(metrics(*lp), "nestedfp_slo_late_prompts"), 1);
  // A lone prompt near (not past) its target, done in time: 150 + 11 ms.
  const StepLoad near = one_prompt(0.15, 10, 10);
  auto n = make(m, "slo:ttft=200,hysteresis=0");
  EXPECT_EQ(n->choose(near), Precision::FP16);
  EXPECT_EQ(value(metrics(*n), "nestedfp_slo_late_prompts"), 0);
  l.prompts[0].age_s = l.prompts[1].age_s = 0.5;  // a backlog again
  auto queue_only = make(m, "slo:ttft=200,hysteresis=0,forecast=0");
  EXPECT_EQ(queue_only->choose(l), Precision::FP16);
  EXPECT_EQ(value(metrics(*queue_only),
                  "nestedfp_slo_decisions_total{precision=\"fp16\",reason=\"none\"}"),
            1);
  auto same = model(/*fp8_faster=*/false);
  auto q = make(same, "slo:ttft=200,hysteresis=0");
  EXPECT_EQ(q->choose(l), Precision::FP16);
  EXPECT_EQ(
      value(metrics(*q), "nestedfp_slo_decisions_total{precision=\"fp16\",reason=\"no_gain\"}"), 1);
}

// After an FP8 prefill step, FP8 stays while FP16's forecast utilization is at least `hold`, though
// the forecast TTFT is back inside the tightened target; hold=0: the forecast alone decides.
TEST(SloOverload, HoldKeepsFp8WhileTheRateKeepsFp16NearItsThroughput) {
  auto m = model();
  for (double hold : {0.8, 0.0}) {
    auto p = make(m, "slo:ttft=500,hold=" + std::to_string(hold));
    // Ten 500-token prompts within 10 ms, each step showing only the newest: FP8 (forecast).
    Precision last = Precision::FP16;
    for (uint64_t i = 0; i < 10; ++i) {
      StepLoad l;
      l.now_s = 0.001 * i;
      l.prompts.push_back({0, 500, i});
      l.num_tokens = 500;
      l.num_seqs = 1;
      last = p->choose(l);
    }
    ASSERT_EQ(last, Precision::FP8);
    // A decode-only step between: FP16, and it does not end the hold.
    StepLoad dec;
    dec.now_s = 0.1;
    dec.num_tokens = dec.num_seqs = dec.num_decode_seqs = 4;
    EXPECT_EQ(p->choose(dec), Precision::FP16);
    // 130 ms on, the last prompt's remainder: forecast 220 ms (inside 400), rho ~0.86.
    auto tail = [](double now) {
      StepLoad l;
      l.now_s = now;
      l.prompts.push_back({now - 0.009, 100, 9});
      l.num_tokens = 100;
      l.num_seqs = 1;
      return l;
    };
    const Precision at13 = p->choose(tail(0.13));
    auto o = metrics(*p);
    const double rho = value(o, "nestedfp_slo_forecast_utilization{precision=\"fp16\"}");
    EXPECT_GT(rho, 0.8) << o;
    EXPECT_LT(rho, 0.9) << o;
    EXPECT_LT(value(o, "nestedfp_slo_forecast_ttft_seconds{precision=\"fp16\"}"), 0.4) << o;
    EXPECT_EQ(at13, hold > 0 ? Precision::FP8 : Precision::FP16) << hold;
    EXPECT_EQ(value(o, "nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"overload\"}"),
              hold > 0 ? 1 : 0)
        << o;
    // 200 ms on: rho ~0.74, below the hold.
    EXPECT_EQ(p->choose(tail(0.2)), Precision::FP16) << metrics(*p);
    EXPECT_LT(value(metrics(*p), "nestedfp_slo_forecast_utilization{precision=\"fp16\"}"), 0.8);
  }
}
