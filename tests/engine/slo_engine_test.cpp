// The slo policy inside the engine: start-up calibration through the executor, the queue the
// engine hands it, step times fed back. The fake executor sleeps like a device whose FP8 steps
// are faster (docs/DESIGN.md §3.12).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>

#include "engine/fake_executor.hpp"
#include "nestedfp/engine.hpp"

using namespace nestedfp;
using nestedfp::fake::FakeExecutor;

namespace {

constexpr int kVocab = 40;

// FP16: 2 ms + 0.2 ms/token; FP8: 1 ms + 0.05 ms/token.
void sleep_like_a_device(const StepInput& in) {
  int tokens = 0;
  for (auto& s : in.seqs) tokens += static_cast<int>(s.tokens.size());
  double ms = in.precision == Precision::FP16 ? 2 + 0.2 * tokens : 1 + 0.05 * tokens;
  std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int>(ms * 1000)));
}

GenerationRequest req(int prompt_len, int max_tokens, int salt) {
  GenerationRequest r;
  for (int i = 0; i < prompt_len; ++i) r.prompt.push_back((i * 7 + salt * 13 + 3) % kVocab);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.f;
  r.ignore_eos = true;
  return r;
}

// The value of a Prometheus line starting with `name` (NaN when absent).
double metric(const std::string& text, const std::string& name) {
  auto p = text.find("\n" + name + " ");
  return p == std::string::npos ? NAN : std::stod(text.substr(p + name.size() + 2));
}

bool served(const FakeExecutor::StepRecord& s) { return !s.seq_ids.empty() && s.seq_ids[0] > 0; }

}  // namespace

TEST(SloEngine, CalibratesThenUsesFp8OnlyForTheSurge) {
  FakeExecutor ex(kVocab, 256, 1024);
  ex.hook = sleep_like_a_device;
  EngineConfig cfg;
  cfg.max_num_batched_tokens = 64;
  cfg.max_num_seqs = 16;
  cfg.precision = "slo";
  cfg.slo_ttft_ms = 100;  // defaults the spec leaves out
  Engine e(ex, cfg);
  EXPECT_EQ(e.precision_policy(),
            "slo:ttft=100,tpot=0,hysteresis=0.2,gain=0.05,forecast=1,hold=0.8");
  // Calibration ran synthetic steps in both precisions before any request.
  size_t calib = ex.steps.size();
  ASSERT_GE(calib, 12u);
  for (auto& s : ex.steps) EXPECT_FALSE(served(s));
  std::string m = e.metrics_text();
  // The sleeps' 0.2 and 0.05 ms per token; sleeps overshoot on a loaded machine, so bounds.
  const double b16 = metric(m, "nestedfp_latency_model_coefficient{precision=\"fp16\",term=\"b\"}");
  const double b8 = metric(m, "nestedfp_latency_model_coefficient{precision=\"fp8\",term=\"b\"}");
  EXPECT_GT(b16, 1.4e-4) << m;
  EXPECT_LT(b16, 5e-4) << m;
  EXPECT_LT(b8, 0.5 * b16) << m;

  // Light load: one short request at a time, FP16 throughout (~4 ms to the first token).
  for (int i = 0; i < 3; ++i) {
    e.add_request(req(10, 4, i));
    while (e.step()) {
    }
  }
  size_t light_end = ex.steps.size();
  for (size_t i = calib; i < light_end; ++i) EXPECT_EQ(ex.steps[i].precision, Precision::FP16);

  // Surge: 16 prompts of 60 tokens = 15 full steps, ~210 ms under FP16 against a 100 ms target
  // (~60 ms under FP8). FP8 while the queue is long, FP16 again for the decodes after it.
  for (int i = 0; i < 16; ++i) e.add_request(req(60, 12, 100 + i));
  while (e.step()) {
  }
  int fp8 = 0;
  for (size_t i = light_end; i < ex.steps.size(); ++i)
    fp8 += ex.steps[i].precision == Precision::FP8;
  EXPECT_GE(fp8, 5);
  int decode_only = 0;  // once no prompt waits there is no TTFT to save: FP16 at once
  for (size_t i = light_end; i < ex.steps.size(); ++i)
    if (std::all_of(ex.steps[i].chunk_sizes.begin(), ex.steps[i].chunk_sizes.end(),
                    [](int n) { return n == 1; })) {
      EXPECT_EQ(ex.steps[i].precision, Precision::FP16) << i;
      ++decode_only;
    }
  EXPECT_GE(decode_only, 8);
  m = e.metrics_text();
  // The queue's TTFT prediction or, as the queue shrinks while the surge's rate is still recent,
  // the arrival forecast and its hold (overload): every FP8 step is one of these.
  EXPECT_EQ(metric(m, "nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"ttft\"}") +
                metric(m, "nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"forecast\"}") +
                metric(m, "nestedfp_slo_decisions_total{precision=\"fp8\",reason=\"overload\"}"),
            fp8)
      << m;
  EXPECT_GT(metric(m, "nestedfp_slo_arrival_rate{unit=\"requests\"}"), 0) << m;
  EXPECT_NE(m.find("nestedfp_latency_model_observed_steps_total{precision=\"fp8\"} " +
                   std::to_string(fp8)),
            std::string::npos)
      << m;

  // The learnt model survives a policy change; a bad slo spec leaves the policy as it was.
  e.set_precision_policy("fp16");
  EXPECT_THROW(e.set_precision_policy("slo:ttft=x"), Error);
  e.set_precision_policy("slo:ttft=100,hysteresis=0");
  EXPECT_EQ(e.precision_policy(), "slo:ttft=100,tpot=0,hysteresis=0,gain=0.05,forecast=1,hold=0.8");
}

TEST(SloEngine, LatencyModelFileReplacesCalibration) {
  FakeExecutor ex(kVocab, 64, 1024);
  EngineConfig cfg;
  cfg.precision = "slo:ttft=100";
  cfg.latency_model_file = "/nonexistent/latency.json";
  EXPECT_THROW(Engine(ex, cfg), Error);
  EXPECT_TRUE(ex.steps.empty());  // no calibration when a file is named
}
