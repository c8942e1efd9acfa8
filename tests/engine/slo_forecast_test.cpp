// The slo policy's arrival forecast (docs/DESIGN.md §3.12): the decayed arrival rate, and
// choose() against a synthetic latency model under arrivals the queue does not show yet.
#include <gtest/gtest.h>

#include <cmath>
#include <deque>
#include <string>

#include "nestedfp/latency_model.hpp"
#include "nestedfp/precision_policy.hpp"
#include "slo_synthetic.hpp"

using namespace nestedfp;

namespace {

// The synthetic model of slo_synthetic.hpp: full 1000-token steps of 110 ms (FP16, 9091 prompt
// tokens/s) and 56 ms (FP8, 17857 tokens/s).
LatencyModel model() { return slotest::synthetic_model(); }

std::unique_ptr<PrecisionPolicy> slo(const LatencyModel& m, const std::string& spec) {
  return slotest::make_policy(m, spec);
}

// A prefill step at `now` computing the one queued prompt (`len` tokens, `age` old).
StepLoad one(double now, uint64_t order, int len = 500, double age = 0) {
  StepLoad l;
  l.now_s = now;
  l.prompts.push_back({age, len, order});
  l.num_tokens = len;
  l.num_seqs = 1;
  return l;
}

StepLoad decodes_only(double now, int n) {
  StepLoad l;
  l.now_s = now;
  l.num_tokens = l.num_seqs = l.num_decode_seqs = n;
  return l;
}

std::string metrics(const PrecisionPolicy& p) {
  std::string o;
  p.render_metrics(o);
  return o;
}

bool has(const std::string& o, const std::string& line) {
  return o.find(line + "\n") != std::string::npos;
}

// The value of a metric line such as `name{labels}` (strtod reads Prometheus' +Inf); NaN if absent.
double value(const std::string& o, const std::string& series) {
  const auto at = o.find(series + " ");
  return at == std::string::npos ? std::nan("") : std::stod(o.substr(at + series.size() + 1));
}

// A first-come-first-served prefill server driven by the policy: prompts of `len` tokens arrive
// every `gap` seconds; each step fills the 1000-token budget and lasts what the model predicts
// at the chosen precision. Records when FP8 first ran, its reason, and the TTFTs.
struct Sim {
  struct Req {
    double arrival;
    int left;
    uint64_t order;
  };
  double first_fp8 = -1, max_ttft = 0;
  double fp16_queue_at_switch = 0;  // the queue's own FP16 TTFT prediction at that step
  int steps = 0, fp16_steps = 0;

  Sim(const LatencyModel& m, PrecisionPolicy& p, double gap, double until, int len = 500) {
    std::deque<Req> q;
    double now = 0, next = 0;
    uint64_t order = 0;
    while (now < until) {
      for (; next <= now; next += gap) q.push_back({next, len, order++});
      if (q.empty()) {
        now = next;
        continue;
      }
      StepLoad l;
      l.now_s = now;
      double queue_pred = 0;
      int cum = 0;
      for (auto& r : q) {
        l.prompts.push_back({now - r.arrival, r.left, r.order});
        cum += r.left;
        const double t =
            now - r.arrival +
            std::ceil(cum / 1000.0) * m.predict(Precision::FP16, std::min(cum, 1000), 1);
        queue_pred = std::max(queue_pred, t);
      }
      l.num_tokens = std::min(cum, 1000);
      l.num_seqs = 0;
      for (int c = 0, i = 0; c < l.num_tokens; c += q[i++].left) l.num_seqs += 1;
      const Precision c = p.choose(l);
      steps += 1;
      fp16_steps += c == Precision::FP16;
      if (c == Precision::FP8 && first_fp8 < 0) first_fp8 = now, fp16_queue_at_switch = queue_pred;
      now += m.predict(c, l.num_tokens, l.num_seqs);
      for (int budget = 1000; budget > 0 && !q.empty();) {
        const int take = std::min(budget, q.front().left);
        q.front().left -= take;
        budget -= take;
        if (q.front().left > 0) break;
        max_ttft = std::max(max_ttft, now - q.front().arrival);
        q.pop_front();
      }
    }
  }
};

}  // namespace

TEST(ArrivalRate, DecaysExactlyAndTakesArrivalsInAnyOrder) {
  ArrivalRate r(0.5);
  EXPECT_EQ(r.at(3).requests, 0);
  r.add(1.0, 100);
  r.add(1.5, 300);
  auto a = r.at(2.0);  // e^-2 / 0.5 and e^-1 / 0.5 per request
  const double w1 = std::exp(-2.0) / 0.5, w2 = std::exp(-1.0) / 0.5;
  EXPECT_NEAR(a.requests, w1 + w2, 1e-12);
  EXPECT_NEAR(a.tokens, 100 * w1 + 300 * w2, 1e-9);
  EXPECT_NEAR(a.tokens_sq, 1e4 * w1 + 9e4 * w2, 1e-6);
  ArrivalRate s(0.5);  // the same arrivals, the later one first
  s.add(1.5, 300);
  s.add(1.0, 100);
  auto b = s.at(2.0);
  EXPECT_NEAR(b.tokens, a.tokens, 1e-9);
  EXPECT_NEAR(b.tokens_sq, a.tokens_sq, 1e-6);
  // Steady arrivals: the estimate converges to the true rate (200 tokens every 10 ms).
  ArrivalRate c(0.2);
  for (int i = 0; i < 1000; ++i) c.add(i * 0.01, 200);
  auto d = c.at(9.99);
  EXPECT_NEAR(d.requests, 100, 3);
  EXPECT_NEAR(d.tokens, 20000, 600);
  EXPECT_NEAR(d.mean_tokens(), 200, 1e-9);
}

TEST(SloForecast, SwitchesToFp8BeforeTheQueueShowsABurstFp16CannotDrain) {
  auto m = model();
  // 500-token prompts every 50 ms: 10000 tokens/s, 1.1x FP16's prompt throughput, 0.56x FP8's.
  // Each queue alone looks harmless at first (one or two prompts, ~110 ms to a first token).
  auto with = slo(m, "slo:ttft=500,hysteresis=0.2");
  Sim a(m, *with, 0.05, 10.0);
  ASSERT_GE(a.first_fp8, 0);
  EXPECT_LT(a.fp16_queue_at_switch, 0.5);  // the queue alone showed no miss yet
  auto o = metrics(*with);
  EXPECT_FALSE(has(o, "nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"forecast\"} 0"))
      << o;
  // Without the forecast the switch comes only once the queue itself predicts the miss (after
  // ~3.7 s here, vs ~1 s): it then holds the backlog at the edge of the target, where any
  // error of the model or burst of arrivals is a miss.
  auto without = slo(m, "slo:ttft=500,hysteresis=0.2,forecast=0");
  Sim b(m, *without, 0.05, 10.0);
  ASSERT_GE(b.first_fp8, 0);
  EXPECT_GT(b.fp16_queue_at_switch, 0.5);
  EXPECT_LT(a.first_fp8, b.first_fp8);
  EXPECT_LT(a.max_ttft, b.max_ttft);  // and the backlog never builds up to the edge
  EXPECT_LT(a.max_ttft, 0.5);
  EXPECT_TRUE(has(metrics(*without),
                  "nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"forecast\"} 0"));
}

TEST(SloForecast, StaysFp16AtASteadyRateFp16Drains) {
  auto m = model();
  // 500 tokens every 120 ms: 4167 tokens/s, 0.46x FP16's throughput.
  auto p = slo(m, "slo:ttft=500");
  Sim s(m, *p, 0.12, 10.0);
  EXPECT_EQ(s.first_fp8, -1);
  EXPECT_GT(s.steps, 50);
  auto o = metrics(*p);
  // The forecast is there (one 110 ms step), and the rate is near the true one.
  EXPECT_NEAR(value(o, "nestedfp_slo_forecast_ttft_seconds{precision=\"fp16\"}"), 0.11, 1e-9) << o;
  const double rate = value(o, "nestedfp_slo_arrival_rate{unit=\"prompt_tokens\"}");
  EXPECT_GT(rate, 3000);
  EXPECT_LT(rate, 5500);
}

TEST(SloForecast, HysteresisHoldsFp8AcrossDecodeStepsUntilFp16HasMargin) {
  auto m = model();
  for (double h : {0.2, 0.0}) {
    // hold=0: the forecast's own hysteresis (the hold: slo_overload_test).
    auto p = slo(m, "slo:ttft=500,hold=0,hysteresis=" + std::to_string(h));
    // Ten 500-token prompts within 10 ms, each step showing only the newest: the queue
    // predicts 60 ms, the rate reaches FP16's throughput.
    Precision last = Precision::FP16;
    for (uint64_t i = 0; i < 10; ++i) last = p->choose(one(0.001 * i, i));
    EXPECT_EQ(last, Precision::FP8);
    auto o = metrics(*p);
    EXPECT_TRUE(std::isinf(value(o, "nestedfp_slo_forecast_ttft_seconds{precision=\"fp16\"}")))
        << o;
    EXPECT_NEAR(value(o, "nestedfp_slo_predicted_ttft_seconds{precision=\"fp16\"}"), 0.06, 1e-9)
        << o;
    // Decode-only steps run FP16 whatever the forecast: they delay an arrival by one short step.
    EXPECT_EQ(p->choose(decodes_only(0.05, 4)), Precision::FP16);
    // The rate decays: 92.5 ms on, FP16's forecast is 440 ms (inside 500, not inside 400).
    StepLoad tail = one(0.0925, 9, 100, 0.0835);  // the last prompt's remainder: seen before
    EXPECT_EQ(p->choose(tail), h > 0 ? Precision::FP8 : Precision::FP16) << h;
    o = metrics(*p);
    EXPECT_NEAR(value(o, "nestedfp_slo_forecast_ttft_seconds{precision=\"fp16\"}"), 0.44, 1e-9)
        << o;
    // 130 ms on: 220 ms, well inside.
    EXPECT_EQ(p->choose(one(0.13, 9, 100, 0.121)), Precision::FP16);
  }
}

TEST(SloForecast, CountsEachArrivalOnceAndNotPreemptedRequests) {
  auto m = model();
  auto p = slo(m, "slo:ttft=500");
  p->choose(one(1.0, 0, 500));
  for (int i = 0; i < 20; ++i) p->choose(one(1.0, 0, 400));  // the same request, seen again
  StepLoad l = one(1.0, 1, 500);
  l.prompts.insert(l.prompts.begin(), QueuedPrompt{3.0, 500, 0});  // preempted: counted before
  p->choose(l);
  auto o = metrics(*p);
  // Two arrivals at t = 1 s, window 0.5 s: 4 requests/s, 2000 tokens/s.
  EXPECT_NEAR(value(o, "nestedfp_slo_arrival_rate{unit=\"requests\"}"), 4, 1e-9) << o;
  EXPECT_NEAR(value(o, "nestedfp_slo_arrival_rate{unit=\"prompt_tokens\"}"), 2000, 1e-6) << o;
  EXPECT_NEAR(value(o, "nestedfp_slo_forecast_utilization{precision=\"fp16\"}"), 0.22, 1e-9) << o;
}

TEST(SloForecast, SaturatedBothWaysStillPrefersTheFasterPrecision) {
  auto m = model();
  auto p = slo(m, "slo:ttft=500");
  // 40 prompts of 500 tokens at once (seen one per step): 40000 tokens/s, above both throughputs.
  Precision last = Precision::FP16;
  for (uint64_t i = 0; i < 40; ++i) last = p->choose(one(0, i));
  EXPECT_EQ(last, Precision::FP8);
  auto o = metrics(*p);
  EXPECT_TRUE(std::isinf(value(o, "nestedfp_slo_forecast_ttft_seconds{precision=\"fp8\"}"))) << o;
  // With FP8 no faster, saturation is a miss FP8 cannot help.
  LatencyModel same;
  same.set_prior(Precision::FP16, LatencyModel::Coeffs{0.010, 1e-4, 0});
  same.set_prior(Precision::FP8, LatencyModel::Coeffs{0.010, 1e-4, 0});
  auto q = slo(same, "slo:ttft=500");
  for (uint64_t i = 0; i < 40; ++i) last = q->choose(one(0, i));
  EXPECT_EQ(last, Precision::FP16);
  EXPECT_FALSE(has(metrics(*q),
                   "nestedfp_slo_decisions_total{precision=\"fp16\",reason="
                   "\"no_gain\"} 0"));
}

// A lone long prompt on an idle server: the queue model says FP16 meets the target, and the
// forecast must not count the request itself as the start of a surge.
TEST(SloForecast, ALoneLongPromptOnAnIdleServerStaysFp16) {
  LatencyModel m;
  m.set_prior(Precision::FP16, LatencyModel::Coeffs{0.010, 1e-4, 0});
  m.set_prior(Precision::FP8, LatencyModel::Coeffs{0.006, 5e-5, 0});
  PolicyContext ctx{1000, 0, 0, &m};
  auto p = make_precision_policy("slo:ttft=500", ctx);
  StepLoad l;
  l.now_s = 100;
  l.prompts.push_back({0, 3000, 0});  // 3 full FP16 steps: 330 ms of a 500 ms target
  l.num_tokens = 1000;
  l.num_seqs = 1;
  EXPECT_EQ(p->choose(l), Precision::FP16);
  l.now_s = 100.11, l.prompts = {{0.11, 2000, 0}};
  EXPECT_EQ(p->choose(l), Precision::FP16);
}
