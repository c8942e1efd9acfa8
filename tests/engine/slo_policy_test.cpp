// The slo precision policy against a synthetic latency model and synthetic queues, and its
// latency model (fit, online refinement, files). docs/DESIGN.md §3.12.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "nestedfp/error.hpp"
#include "nestedfp/latency_model.hpp"
#include "nestedfp/precision_policy.hpp"
#include "slo_synthetic.hpp"

using namespace nestedfp;

namespace {

LatencyModel model(bool fp8_faster = true) { return slotest::synthetic_model(fp8_faster); }

std::unique_ptr<PrecisionPolicy> slo(const LatencyModel& m, const std::string& spec,
                                     int budget = 1000) {
  return slotest::make_policy(m, spec, budget);
}

// `n` waiting prompts of `len` tokens, all `age` seconds old, plus `decodes` running sequences.
StepLoad queue(int n, int len, double age = 0, int decodes = 0, int budget = 1000) {
  StepLoad l;
  for (int i = 0; i < n; ++i) l.prompts.push_back({age, len});
  l.num_decode_seqs = decodes;
  l.num_tokens = decodes + std::min(budget - decodes, n * len);
  l.num_seqs = decodes + n;
  return l;
}

}  // namespace

TEST(SloPolicy, StaysFp16AtLightLoad) {
  auto m = model();
  auto p = slo(m, "slo:ttft=200,tpot=50");
  EXPECT_EQ(p->choose(queue(1, 100, 0, 2)), Precision::FP16);  // ~20 ms to first token
  EXPECT_EQ(p->choose(queue(0, 0, 0, 8)), Precision::FP16);    // decodes only, 10.8 ms steps
  EXPECT_EQ(p->choose(StepLoad{}), Precision::FP16);
}

TEST(SloPolicy, GoesFp8ExactlyWhenFp16WouldMissTtftAndFp8WouldNot) {
  auto m = model();
  // The queue model alone (forecast=0): these synthetic queues are not arrivals
  // (slo_forecast_test).
  auto p = slo(m, "slo:ttft=200,tpot=1000,hysteresis=0,forecast=0");
  // 1500 prompt tokens: two full steps. FP16 2 x 110 ms = 220 ms > 200; FP8 2 x 56 ms = 112 ms.
  EXPECT_EQ(p->choose(queue(3, 500)), Precision::FP8);
  // 1000 tokens: one step, 110 ms under FP16: back to FP16 (no hysteresis).
  EXPECT_EQ(p->choose(queue(2, 500)), Precision::FP16);
  // The age counts: one step left (110 ms) but the prompts waited 100 ms already.
  EXPECT_EQ(p->choose(queue(2, 500, 0.1)), Precision::FP8);
  EXPECT_EQ(p->choose(queue(2, 500, 0.05)), Precision::FP16);  // 160 ms
}

TEST(SloPolicy, HysteresisHoldsFp8UntilFp16HasMargin) {
  auto m = model();
  // 170 ms under FP16 (one step of 110 ms after 60 ms of waiting): meets 200, not 0.8 x 200.
  StepLoad near = queue(2, 500, 0.06);
  auto fresh = slo(m, "slo:ttft=200,tpot=1000,hysteresis=0.2,forecast=0");
  EXPECT_EQ(fresh->choose(near), Precision::FP16);
  auto p = slo(m, "slo:ttft=200,tpot=1000,hysteresis=0.2,forecast=0");
  EXPECT_EQ(p->choose(queue(3, 500)), Precision::FP8);
  EXPECT_EQ(p->choose(near), Precision::FP8);            // held
  EXPECT_EQ(p->choose(near), Precision::FP8);            // still held
  EXPECT_EQ(p->choose(queue(1, 100)), Precision::FP16);  // 20 ms: well inside
  EXPECT_EQ(p->choose(near), Precision::FP16);           // from FP16 the plain target applies
}

TEST(SloPolicy, NeverFp8WhenFp8WouldNotHelp) {
  auto m = model(/*fp8_faster=*/false);
  auto p = slo(m, "slo:ttft=200,tpot=20");
  EXPECT_EQ(p->choose(queue(20, 500)), Precision::FP16);       // 10 steps: 1.1 s either way
  EXPECT_EQ(p->choose(queue(0, 0, 0, 900)), Precision::FP16);  // TPOT 100 ms either way
  std::string o;
  p->render_metrics(o);
  EXPECT_NE(o.find("nestedfp_slo_decisions_total{precision=\"fp16\",reason=\"no_gain\"} 2"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find("nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"ttft\"} 0"),
            std::string::npos)
      << o;
}

TEST(SloPolicy, RequestsAlreadyPastTheTargetDoNotForceFp8ButTheirTokensCount) {
  auto m = model();
  // The queue model alone: with the forecast, late requests are a backlog that does
  // (slo_overload_test).
  auto p = slo(m, "slo:ttft=200,tpot=1000,hysteresis=0,forecast=0");
  EXPECT_EQ(p->choose(queue(3, 500, 0.5)), Precision::FP16);  // all late: nothing to save
  StepLoad l = queue(3, 500, 0.5);
  l.prompts.push_back({0.0, 10});  // a new one behind 1500 late tokens: 220 ms under FP16
  EXPECT_EQ(p->choose(l), Precision::FP8);
}

TEST(SloPolicy, TpotTargetOverTheComingSteps) {
  LatencyModel m;
  m.set_prior(Precision::FP16, LatencyModel::Coeffs{0.010, 1e-3, 0});
  m.set_prior(Precision::FP8, LatencyModel::Coeffs{0.005, 5e-4, 0});
  auto p = slo(m, "slo:tpot=50,hysteresis=0");
  EXPECT_EQ(p->choose(queue(0, 0, 0, 64)), Precision::FP8);   // 74 ms vs 37 ms per token
  EXPECT_EQ(p->choose(queue(0, 0, 0, 32)), Precision::FP16);  // 42 ms
  std::string o;
  p->render_metrics(o);
  EXPECT_NE(o.find("nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"tpot\"} 1"),
            std::string::npos)
      << o;
  EXPECT_NE(o.find("nestedfp_slo_predicted_tpot_seconds{precision=\"fp16\"} 0.04"),
            std::string::npos)
      << o;
}

TEST(SloPolicy, TpotCountsTheFullStepsThatSteadyArrivalsBring) {
  LatencyModel m;
  m.set_prior(Precision::FP16, LatencyModel::Coeffs{0.010, 1e-3, 0});
  m.set_prior(Precision::FP8, LatencyModel::Coeffs{0.005, 5e-4, 0});
  // A lone request: its prefill step has no decodes (not part of any TPOT), then 18 ms steps.
  auto lone = slo(m, "slo:tpot=50,hysteresis=0");
  EXPECT_EQ(lone->choose(queue(1, 200)), Precision::FP16);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(lone->choose(queue(0, 0, 0, 8)), Precision::FP16) << i;
  // A new 200-token prompt every other step beside 8 decodes: each queue alone shows one full
  // step among 32 (24 ms), but the decodes wait through 218 ms steps half the time (~118 ms).
  auto p = slo(m, "slo:tpot=50,hysteresis=0");
  int fp8 = 0, first = -1;
  for (int i = 0; i < 100; ++i) {
    Precision c = p->choose(i % 2 ? queue(0, 0, 0, 9) : queue(1, 200, 0, 8));
    if (c == Precision::FP8) fp8 += 1, first = first < 0 ? i : first;
  }
  EXPECT_GT(first, 5);  // the recent average has to build up first
  EXPECT_GE(fp8, 60);
  std::string o;
  p->render_metrics(o);
  EXPECT_NE(o.find("nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"tpot\"} " +
                   std::to_string(fp8)),
            std::string::npos)
      << o;
}

TEST(SloPolicy, SpecsDefaultsAndErrors) {
  auto m = model();
  EXPECT_EQ(slo(m, "slo:ttft=250,tpot=40")->spec(),
            "slo:ttft=250,tpot=40,hysteresis=0.2,gain=0.05,forecast=1,hold=0.8");
  EXPECT_EQ(slo(m, "slo:ttft=100,forecast=2.5")->spec(),
            "slo:ttft=100,tpot=0,hysteresis=0.2,gain=0.05,forecast=2.5,hold=0.8");
  EXPECT_EQ(slo(m, "slo:hold=1.5,ttft=100")->spec(),
            "slo:ttft=100,tpot=0,hysteresis=0.2,gain=0.05,forecast=1,hold=1.5");
  EXPECT_EQ(slo(m, "slo:gain=0.1,hysteresis=0,tpot=7.5")->spec(),
            "slo:ttft=0,tpot=7.5,hysteresis=0,gain=0.1,forecast=1,hold=0.8");
  PolicyContext ctx{512, 300, 30, &m};
  EXPECT_EQ(make_precision_policy("slo", ctx)->spec(),
            "slo:ttft=300,tpot=30,hysteresis=0.2,gain=0.05,forecast=1,hold=0.8");
  EXPECT_EQ(make_precision_policy("slo:tpot=10", ctx)->spec(),
            "slo:ttft=300,tpot=10,hysteresis=0.2,gain=0.05,forecast=1,hold=0.8");
  EXPECT_TRUE(is_slo_spec("slo") && is_slo_spec("slo:ttft=1") && !is_slo_spec("slow"));
  EXPECT_FALSE(make_precision_policy("fp16", ctx)->needs_queue());
  EXPECT_TRUE(make_precision_policy("slo", ctx)->needs_queue());
  for (const char* bad :
       {"slo", "slo:", "slo:ttft", "slo:ttft=abc", "slo:ttft=-1", "slo:foo=1", "slo:ttft=1,ttft=2",
        "slo:ttft=1,hysteresis=1", "slo:ttft=1,gain=2", "slo:ttft=1,forecast=-1", "slo:ttft=1,",
        "slo:ttft=inf", "slo:ttft=1,hold=-0.5", "slo:ttft=1,hold=0.8,hold=0.9"}) {
    try {
      slo(m, bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("precision policy"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(make_precision_policy("slo:ttft=100", 512), Error);  // no latency model
}

TEST(LatencyModel, NoPredictionBelowTheFastestMeasuredStep) {
  LatencyModel m;  // a line through these has a negative intercept
  m.set_prior(Precision::FP8, {{Precision::FP8, 256, 1, 0.10},
                               {Precision::FP8, 512, 2, 0.25},
                               {Precision::FP8, 1024, 4, 0.55}});
  EXPECT_LT(m.coeffs(Precision::FP8).a, 0);
  EXPECT_DOUBLE_EQ(m.predict(Precision::FP8, 1, 1), 0.10);
  m.observe({Precision::FP8, 1, 1, 0.02});
  EXPECT_GE(m.predict(Precision::FP8, 1, 1), 0.02);
}

TEST(LatencyModel, FitRecoversALinearModelAndBorrowsForAnUnknownPrecision) {
  LatencyModel m;
  EXPECT_FALSE(m.known(Precision::FP8));
  std::vector<StepTiming> t;
  for (auto [tok, seq] : {std::pair{1, 1}, {64, 64}, {512, 2}, {2048, 8}})
    t.push_back({Precision::FP16, tok, seq, 0.004 + 2e-5 * tok + 1e-5 * seq});
  m.set_prior(Precision::FP16, t);
  auto c = m.coeffs(Precision::FP16);
  EXPECT_NEAR(c.a, 0.004, 1e-6);
  EXPECT_NEAR(c.b, 2e-5, 1e-8);
  EXPECT_NEAR(c.c, 1e-5, 1e-7);
  EXPECT_DOUBLE_EQ(m.predict(Precision::FP8, 100, 4), m.predict(Precision::FP16, 100, 4));
}

TEST(LatencyModel, OnlineStepsPullTheFitTowardsWhatIsMeasured) {
  LatencyModel m(0.98);
  m.set_prior(Precision::FP8, LatencyModel::Coeffs{0.002, 1e-5, 0});
  const double before = m.predict(Precision::FP8, 1000, 10);  // 12 ms
  for (int i = 0; i < 300; ++i) {
    int tok = 1 + (i * 37) % 2000, seqs = 1 + i % 16;
    m.observe({Precision::FP8, tok, seqs, 2 * (0.002 + 1e-5 * tok)});  // the device got 2x slower
  }
  EXPECT_EQ(m.observed(Precision::FP8), 300u);
  EXPECT_NEAR(m.predict(Precision::FP8, 1000, 10), 2 * before, 0.05 * before);
  EXPECT_EQ(m.observed(Precision::FP16), 0u);
  m.observe({Precision::FP16, 10, 1, 0.5});  // the first FP16 step stands in for a prior
  EXPECT_TRUE(m.known(Precision::FP16));
  EXPECT_NEAR(m.predict(Precision::FP16, 10, 1), 0.5, 0.05);
}

TEST(LatencyModel, LoadsStepListsAndBenchEngineFiles) {
  auto dir = std::filesystem::temp_directory_path() / "nestedfp_latency_model_test";
  std::filesystem::create_directories(dir);
  auto steps = (dir / "steps.json").string(), eng = (dir / "engine.json").string();
  std::ofstream(steps) << R"({"steps": [
    {"precision": "fp16", "tokens": 1, "seqs": 1, "seconds": 0.005},
    {"precision": "fp16", "tokens": 64, "seqs": 64, "seconds": 0.007},
    {"precision": "fp16", "tokens": 2048, "seqs": 8, "seconds": 0.105},
    {"precision": "fp8", "tokens": 1, "seqs": 1, "seconds": 0.004},
    {"precision": "fp8", "tokens": 2048, "seqs": 8, "seconds": 0.060}]})";
  LatencyModel m;
  fit_priors(m, load_step_timings(steps), steps);
  EXPECT_NEAR(m.predict(Precision::FP16, 2048, 8), 0.105, 0.003);
  EXPECT_NEAR(m.predict(Precision::FP8, 1, 1), 0.004, 0.002);
  EXPECT_LT(m.predict(Precision::FP8, 2048, 8), m.predict(Precision::FP16, 2048, 8));

  // bench engine rows: plain-FP16 rows are skipped, prefill counts in FP16 only.
  std::ofstream(eng) << R"({"results": [
    {"weights": "fp16", "precision": "fp16", "batch": 1, "context": 1024, "decode_step_ms": 1.0},
    {"weights": "nested", "precision": "fp16", "batch": 1, "context": 1024, "decode_step_ms": 7.0,
     "prefill_tok_s": 20480},
    {"weights": "nested", "precision": "fp8", "batch": 1, "context": 1024, "decode_step_ms": 4.5,
     "prefill_tok_s": 20480},
    {"weights": "nested", "precision": "fp16", "batch": 64, "context": 1024, "decode_step_ms": 10.0},
    {"weights": "nested", "precision": "fp8", "batch": 64, "context": 1024, "decode_step_ms": 7.0}]})";
  auto t = load_step_timings(eng);
  ASSERT_EQ(t.size(), 5u);
  EXPECT_EQ(t[1].tokens, 2048);
  EXPECT_EQ(t[1].seqs, 2);
  EXPECT_DOUBLE_EQ(t[1].seconds, 0.1);
  LatencyModel e;
  fit_priors(e, t, eng);
  EXPECT_NEAR(e.predict(Precision::FP16, 1, 1), 0.007, 5e-4);
  EXPECT_NEAR(e.predict(Precision::FP8, 64, 64), 0.007, 5e-4);
  // FP8 had no prefill row: it borrows FP16's 2048-token step x (4.5/7 * 7/10)^(1/2) = 0.561.
  EXPECT_NEAR(e.predict(Precision::FP8, 2048, 2), 0.1 * std::sqrt(4.5 / 7 * 7.0 / 10), 2e-3);

  // The current bench engine format: decode and prefill rows per engine.
  std::ofstream(eng) << R"({"decode": [
    {"engine": "plain FP16", "weights": "fp16", "precision": "fp16", "batch": 1, "step_ms": 1.0},
    {"engine": "NestedFP16", "weights": "nested", "precision": "fp16", "batch": 1, "step_ms": 7.0},
    {"engine": "NestedFP8", "weights": "nested", "precision": "fp8", "batch": 1, "step_ms": 4.5},
    {"engine": "NestedFP16", "weights": "nested", "precision": "fp16", "batch": 64, "step_ms": 10.0},
    {"engine": "NestedFP8", "weights": "nested", "precision": "fp8", "batch": 64, "step_ms": 7.0}],
    "prefill": [{"engine": "plain FP16", "chunk": 2048, "tok_s": 40000},
                {"engine": "NestedFP16", "chunk": 2048, "tok_s": 20480},
                {"engine": "NestedFP8", "chunk": 2048, "tok_s": 34133}]})";
  t = load_step_timings(eng);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t[4].precision, Precision::FP16);
  EXPECT_DOUBLE_EQ(t[4].seconds, 0.1);
  LatencyModel n;
  fit_priors(n, t, eng);
  EXPECT_NEAR(n.predict(Precision::FP8, 2048, 1), 0.06, 2e-3);
  EXPECT_NEAR(n.predict(Precision::FP16, 64, 64), 0.010, 5e-4);
  std::ofstream(steps)
      << R"({"steps": [{"precision": "fp16", "tokens": 1, "seqs": 1, "seconds": 1}]})";
  LatencyModel x;
  EXPECT_THROW(fit_priors(x, load_step_timings(steps), steps), Error);  // no fp8
  std::ofstream(steps)
      << R"({"steps": [{"precision": "fp4", "tokens": 1, "seqs": 1, "seconds": 1}]})";
  EXPECT_THROW(load_step_timings(steps), Error);
  std::ofstream(steps) << R"({"rows": []})";
  EXPECT_THROW(load_step_timings(steps), Error);
  EXPECT_THROW(load_step_timings((dir / "missing.json").string()), Error);
  std::filesystem::remove_all(dir);
}
