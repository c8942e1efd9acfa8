// bench policy-sim (src/bench/policy_sim.hpp): step timing, chunked prefill, decodes sharing the
// budget, policies' shares, and the inputs' errors.
#include "bench/policy_sim.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "nestedfp/error.hpp"

using namespace nestedfp;
using namespace nestedfp::bench;

namespace {

// FP16 10 ms + 0.1 ms/token; FP8 6 ms + 0.05 ms/token; no per-sequence cost.
LatencyModel model() {
  LatencyModel m;
  m.set_prior(Precision::FP16, LatencyModel::Coeffs{0.010, 1e-4, 0});
  m.set_prior(Precision::FP8, LatencyModel::Coeffs{0.006, 5e-5, 0});
  return m;
}

SimOptions opts(int budget = 2048) {
  SimOptions o;
  o.max_num_batched_tokens = budget;
  return o;
}

TEST(PolicySim, OneRequestTimedStepByStep) {
  const auto r = simulate({{0.5, 100, 3}}, model(), "fp16", opts());
  ASSERT_EQ(r.requests.size(), 1u);
  const auto& q = r.requests[0];
  EXPECT_TRUE(q.ok);
  EXPECT_DOUBLE_EQ(q.start_s, 0.5);
  EXPECT_NEAR(q.ttft_s, 0.010 + 100 * 1e-4, 1e-12);            // the prefill step
  EXPECT_NEAR(q.e2e_s, q.ttft_s + 2 * (0.010 + 1e-4), 1e-12);  // two decode steps
  ASSERT_EQ(q.itl_s.size(), 2u);
  EXPECT_NEAR(q.itl_s[0], 0.0101, 1e-12);
  EXPECT_EQ(r.steps, 3);
  EXPECT_EQ(r.fp16_steps, 3);
  EXPECT_EQ(r.tokens, 102);
  EXPECT_EQ(r.policy, "fp16");
}

TEST(PolicySim, LongPromptsAreChunkedAndDecodesShareTheBudget) {
  // 3000 prompt tokens in a 2048 budget: two steps before the first token.
  auto r = simulate({{0, 3000, 1}}, model(), "fp8", opts());
  EXPECT_NEAR(r.requests[0].ttft_s, (0.006 + 2048 * 5e-5) + (0.006 + 952 * 5e-5), 1e-12);
  EXPECT_EQ(r.steps, 2);
  EXPECT_EQ(r.fp16_steps, 0);
  // A request decoding when a second arrives: the next step holds its decode token and at most
  // budget - 1 prompt tokens of the second.
  r = simulate({{0, 10, 5}, {0.0105, 2000, 2}}, model(), "fp16", opts(1000));
  EXPECT_NEAR(r.requests[0].ttft_s, 0.011, 1e-12);
  // Step 2 starts at 0.011 (the second has arrived): 1 decode + 999 prompt tokens.
  const double step2 = 0.010 + 1000 * 1e-4;
  EXPECT_NEAR(r.requests[0].itl_s[0], step2, 1e-12);
  // Step 3 (1 decode + 999 prompt tokens) leaves 2 prompt tokens for step 4 (1 decode + 2).
  EXPECT_NEAR(r.requests[1].ttft_s, 0.011 + 2 * step2 + (0.010 + 3 * 1e-4) - r.requests[1].start_s,
              1e-12);
  EXPECT_EQ(r.tokens, 10 + 2000 + 4 + 1);  // prompts, 4 decodes of the first, 1 of the second
}

TEST(PolicySim, OneTokenOutputsAndTheSequenceLimit) {
  // max_num_seqs 1: the second prompt waits until the first has finished decoding.
  SimOptions o = opts();
  o.max_num_seqs = 1;
  const auto r = simulate({{0, 100, 3}, {0, 100, 1}}, model(), "fp16", o);
  const double prefill = 0.010 + 100 * 1e-4, decode = 0.010 + 1e-4;
  EXPECT_NEAR(r.requests[0].e2e_s, prefill + 2 * decode, 1e-12);
  EXPECT_NEAR(r.requests[1].ttft_s, 2 * prefill + 2 * decode, 1e-12);
  // One output token: done at the first token, no inter-token gaps.
  EXPECT_DOUBLE_EQ(r.requests[1].e2e_s, r.requests[1].ttft_s);
  EXPECT_TRUE(r.requests[1].itl_s.empty());
  EXPECT_EQ(r.steps, 4);
  o.max_num_seqs = 0;
  EXPECT_THROW(simulate({{0, 100, 3}}, model(), "fp16", o), Error);
}

TEST(PolicySim, FasterPrecisionServesAnOverloadBetterAndDynamicSitsBetween) {
  // 400-token prompts every 40 ms: 10000 tokens/s, over FP16's ~9500 full-step throughput and
  // under FP8's ~18000.
  std::vector<SimRequest> reqs;
  for (int i = 0; i < 200; ++i) reqs.push_back({0.04 * i, 400, 8});
  const auto f16 = simulate(reqs, model(), "fp16", opts(1000));
  const auto f8 = simulate(reqs, model(), "fp8", opts(1000));
  const auto dyn = simulate(reqs, model(), "dynamic:threshold=500", opts(1000));
  const auto s16 = summarize(f16.requests, Slo{0.2, 0});
  const auto s8 = summarize(f8.requests, Slo{0.2, 0});
  EXPECT_LT(s16.slo_attainment, 0.5);  // the queue grows for the whole run
  EXPECT_GT(s8.slo_attainment, 0.95);
  EXPECT_GT(s16.ttft.p90, 2 * s8.ttft.p90);
  EXPECT_EQ(f8.fp16_steps, 0);
  EXPECT_GT(dyn.fp16_steps, 0);
  EXPECT_LT(dyn.fp16_steps, dyn.steps);
  // FP8 once a step holds more than 500 tokens: it keeps the queue from growing without bound.
  EXPECT_GT(summarize(dyn.requests, Slo{0.2, 0}).slo_attainment, s16.slo_attainment + 0.3);
  // The slo policy takes serve's targets from the options when its spec has none.
  SimOptions o = opts(1000);
  o.slo_ttft_ms = 200;
  const auto slo = simulate(reqs, model(), "slo", o);
  EXPECT_NE(slo.policy.find("ttft=200"), std::string::npos);
  EXPECT_GT(summarize(slo.requests, Slo{0.2, 0}).slo_attainment, s16.slo_attainment);
  EXPECT_THROW(simulate(reqs, model(), "slo", opts(1000)), Error);  // no target anywhere
  EXPECT_THROW(simulate(reqs, model(), "fp12", opts(1000)), Error);
}

TEST(PolicySim, LatencyModelFromAMetricsDump) {
  const std::string dump =
      "# HELP nestedfp_latency_model_coefficient ...\n"
      "nestedfp_latency_model_coefficient{precision=\"fp16\",term=\"a\"} 0.006\n"
      "nestedfp_latency_model_coefficient{precision=\"fp16\",term=\"b\"} 2.5e-05\n"
      "nestedfp_latency_model_coefficient{precision=\"fp16\",term=\"c\"} 1e-05\n"
      "nestedfp_latency_model_coefficient{precision=\"fp8\",term=\"a\"} 0.004\n"
      "nestedfp_latency_model_coefficient{precision=\"fp8\",term=\"b\"} 1.8e-05\n"
      "nestedfp_latency_model_coefficient{precision=\"fp8\",term=\"c\"} 2e-05\n"
      "nestedfp_latency_model_observed_steps_total{precision=\"fp16\"} 12\n";
  const auto m = parse_latency_model(dump, "dump");
  std::string nan_dump = dump;
  nan_dump.replace(nan_dump.find("0.004\n"), 5, "NaN");
  EXPECT_THROW(parse_latency_model(nan_dump, "nan"), Error);
  EXPECT_NEAR(m.predict(Precision::FP16, 2048, 4), 0.006 + 2048 * 2.5e-5 + 4e-5, 1e-12);
  EXPECT_NEAR(m.predict(Precision::FP8, 2048, 4), 0.004 + 2048 * 1.8e-5 + 8e-5, 1e-12);
  try {
    parse_latency_model(
        dump.substr(0,
                    dump.find("nestedfp_latency_model_coefficient{precision=\"fp8\",term=\"b\"}")),
        "cut");
    FAIL() << "a missing coefficient was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("precision=\"fp8\",term=\"b\""), std::string::npos);
  }
}

TEST(PolicySim, RequestsFromABenchServeJsonAndItsErrors) {
  const auto dir = std::filesystem::path(::testing::TempDir()) /
                   ("nestedfp_policy_sim_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  const auto good = write("good.json",
                          R"({"runs":[{"requests":[
                            {"start_s":0.3,"prompt_tokens":50,"max_tokens":4,"ok":true},
                            {"start_s":0.1,"prompt_tokens":70,"max_tokens":0,"output_tokens":2}]}]})");
  const auto reqs = read_sim_requests(good);
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_DOUBLE_EQ(reqs[0].send_s, 0.1);  // sorted by send time
  EXPECT_EQ(reqs[0].output_tokens, 2);    // max_tokens 0: the recorded output length
  EXPECT_EQ(reqs[1].output_tokens, 4);
  EXPECT_THROW(read_sim_requests((dir / "missing.json").string()), Error);
  EXPECT_THROW(read_sim_requests(write("bad.json", "{runs")), Error);
  EXPECT_THROW(read_sim_requests(write("noruns.json", R"({"mode":"trace"})")), Error);
  EXPECT_THROW(read_sim_requests(write("empty.json", R"({"runs":[{"requests":[]}]})")), Error);
  EXPECT_THROW(read_sim_requests(write(
                   "zero.json",
                   R"({"runs":[{"requests":[{"start_s":0,"prompt_tokens":0,"max_tokens":3}]}]})")),
               Error);
  EXPECT_THROW(read_latency_model((dir / "missing.txt").string()), Error);
  std::filesystem::remove_all(dir);
}

}  // namespace
