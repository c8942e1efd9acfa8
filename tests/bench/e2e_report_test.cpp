// bench e2e-report on a synthetic experiment directory: statistics recomputed from the request
// records (middle ratio, SLO multiples of the unloaded latency) and the goals' verdicts.
#include "bench/e2e_report.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "nestedfp/error.hpp"

using namespace nestedfp;
using namespace nestedfp::bench;
namespace fs = std::filesystem;

namespace {

// A trace run of 10 requests sent at t = 0..9 s; the middle 70% keeps t = 1..7. Request t misses
// both SLOs (TTFT 5 s) when t < `late`, otherwise TTFT 0.2 s and TPOT 20 ms (unloaded: 100 ms and
// 10 ms, so 10x = 1 s and 100 ms). Steps: `fp16` FP16 and `fp8` FP8 ones, of 10 and 100 tokens.
void trace_run(const fs::path& dir, int late, double fp16, double fp8, bool unloaded = false) {
  fs::create_directories(dir);
  nlohmann::json reqs = nlohmann::json::array();
  for (int t = 0; t < 10; ++t) {
    double ttft = t < late ? 5000 : 200;
    reqs.push_back({{"ok", true},
                    {"start_s", t},
                    {"ttft_ms", ttft},
                    {"e2e_ms", ttft + 20 * 10},
                    {"prompt_tokens", 100},
                    {"output_tokens", 11},
                    {"max_tokens", 11}});
  }
  nlohmann::json j = {
      {"model", "m"},
      {"runs", {{{"params", {{"time_scale", 2.0}, {"replay_span_s", 10.0}}}, {"requests", reqs}}}},
      {"precision_metrics",
       {{{"t_s", 0}, {"steps_fp16", 0}, {"steps_fp8", 0}, {"tokens_fp16", 0}, {"tokens_fp8", 0}},
        {{"t_s", 5},
         {"steps_fp16", fp16},
         {"steps_fp8", fp8},
         {"tokens_fp16", 10 * fp16},  // FP8 steps are the large ones: 100 tokens against 10
         {"tokens_fp8", 100 * fp8}}}}};
  if (unloaded) j["unloaded"] = {{"ttft_ms", 100.0}, {"tpot_ms", 10.0}};
  std::ofstream(dir / "bench_serve_trace.json") << j.dump();
}

void grid_run(const fs::path& dir, double tok_s) {
  fs::create_directories(dir);
  nlohmann::json runs = nlohmann::json::array();
  for (int c : {4, 16})
    runs.push_back({{"params", {{"input_len", 128}, {"output_len", 32}, {"concurrency", c}}},
                    {"summary", {{"output_token_throughput", tok_s * c}}}});
  std::ofstream(dir / "bench_serve_throughput.json") << nlohmann::json{{"runs", runs}}.dump();
}

}  // namespace

TEST(E2eReport, RecomputesAttainmentAndJudgesTheGoals) {
  fs::path d = fs::temp_directory_path() / "nestedfp_e2e_report_test";
  fs::remove_all(d);
  trace_run(d / "trace-conv/fp16-x2", 5, 100, 0, true);  // kept t=1..7: 3 of 7 meet
  trace_run(d / "trace-conv/fp8-x2", 2, 0, 100);         // 6 of 7
  trace_run(d / "trace-conv/dynamic-x2", 2, 40, 60);     // 6 of 7 but 40% FP16
  trace_run(d / "trace-conv/slo-x2", 1, 70, 30);         // 7 of 7, 70% FP16
  std::ofstream(d / "trace-conv/slo-x2/slo-metrics.txt")
      << "nestedfp_slo_target_seconds{target=\"ttft\"} 0.8\n"
         "nestedfp_slo_target_seconds{target=\"tpot\"} 0.08\n";
  grid_run(d / "throughput/nested-fp16", 100);
  grid_run(d / "throughput/nested-fp8", 170);
  E2eOptions o;
  auto data = load_e2e(d.string(), o);
  ASSERT_EQ(data.traces.size(), 1u);
  const auto& t = data.traces[0];
  ASSERT_EQ(t.runs.size(), 4u);
  EXPECT_EQ(t.runs[0].policy, "fp16");
  EXPECT_EQ(t.runs[3].policy, "slo");
  EXPECT_DOUBLE_EQ(t.unloaded_ttft_s, 0.1);
  EXPECT_DOUBLE_EQ(t.runs[0].rate, 1.0);
  EXPECT_NEAR(t.runs[0].at_scale[0].slo_attainment, 3.0 / 7, 1e-12);
  EXPECT_NEAR(t.runs[1].at_scale[0].slo_attainment, 6.0 / 7, 1e-12);
  EXPECT_NEAR(t.runs[3].at_scale[1].slo_attainment, 1.0, 1e-12);
  EXPECT_NEAR(t.runs[2].fp16_step_share, 0.4, 1e-12);
  EXPECT_DOUBLE_EQ(t.runs[3].slo_ttft_s, 0.8);
  EXPECT_DOUBLE_EQ(t.runs[3].slo_tpot_s, 0.08);
  auto goals = evaluate_goals(data, o);
  ASSERT_EQ(goals.size(), 3u);
  EXPECT_TRUE(goals[0].met) << goals[0].detail;  // 1.70x
  EXPECT_NE(goals[0].detail.find("1.70x"), std::string::npos) << goals[0].detail;
  EXPECT_TRUE(goals[1].met) << goals[1].detail;  // slo carries it; dynamic has too few FP16 steps
  EXPECT_TRUE(goals[2].met) << goals[2].detail;

  auto files = write_e2e_report(data, o, (d / "out").string());
  for (auto& f : files) EXPECT_GT(fs::file_size(f), 100u) << f;
  std::ifstream md(files[0]);
  std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("TTFT 800.0 ms, TPOT 80.00 ms (8.0x and 8.0x unloaded)"), std::string::npos)
      << text;
  // FP16 steps 70 of 100, FP16 tokens 700 of 3700.
  EXPECT_NE(text.find("| 2 | 1.00 | slo | 100.0% | 100.0% | 70.0% | 18.9% |"), std::string::npos)
      << text;
  EXPECT_NEAR(t.runs[3].fp16_token_share, 700.0 / 3700, 1e-12);
  EXPECT_EQ(files.size(), 4u);  // md, json, trace png, throughput png

  // slo below fp8 and dynamic short of FP16 steps: goal 2 fails; slo < dynamic: goal 3 fails.
  trace_run(d / "trace-conv/slo-x2", 4, 70, 30);
  grid_run(d / "throughput/nested-fp8", 150);
  data = load_e2e(d.string(), o);
  goals = evaluate_goals(data, o);
  EXPECT_FALSE(goals[0].met);
  EXPECT_FALSE(goals[1].met);
  EXPECT_NE(goals[1].detail.find("2 of 2"), std::string::npos) << goals[1].detail;
  // Each miss is set against sampling noise: slo (the policy with >= 50% FP16 steps) has 4 of 7
  // against fp8's 6 of 7; 2 s.e. = 200 sqrt((6/7)(1/7)/7 + (4/7)(3/7)/7) = 45.8 points.
  EXPECT_NE(goals[1].detail.find("[slo: gap 28.6 points = 2 of 7 requests, 2 s.e. 45.8]"),
            std::string::npos)
      << goals[1].detail;
  EXPECT_NE(goals[1].detail.find("(2 of them within 2 standard errors"), std::string::npos)
      << goals[1].detail;
  EXPECT_FALSE(goals[2].met);
  EXPECT_NE(goals[2].detail.find("slo 57.1% < dynamic 85.7% [gap 28.6 points"), std::string::npos)
      << goals[2].detail;

  EXPECT_EQ(slo_spec_from((d / "trace-conv/fp16-x2/bench_serve_trace.json").string(), 10),
            "slo:ttft=1000.0,tpot=100.00");
  EXPECT_THROW(slo_spec_from((d / "trace-conv/fp8-x2/bench_serve_trace.json").string(), 10), Error);
  fs::remove(d / "trace-conv/fp16-x2/bench_serve_trace.json");  // the unloaded latency is gone
  EXPECT_THROW(load_e2e(d.string(), o), Error);
  EXPECT_THROW(load_e2e((d / "nowhere").string(), o), Error);
  fs::remove_all(d);
}
