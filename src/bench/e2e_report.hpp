#pragma once
// `nestedfp bench e2e-report`: combines the `bench serve` JSON files of one end-to-end experiment
// (scripts/e2e-experiment.sh) into a Markdown report with PNG plots and checks the goals of the
// experiment (docs/MEASURING.md §5.6).
//
// Layout of the experiment directory:
//   throughput/<engine>/bench_serve_throughput.json   engine: fp16-plain, nested-fp16, nested-fp8
//   trace-<name>/<policy>-x<scale>/bench_serve_trace.json   policy: fp16, fp8, dynamic, slo
// In each trace-<name>, at least one run carries the "unloaded" FP16 latency (bench serve
// --slo-scale); SLO targets are multiples of it.
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/bench_client.hpp"

namespace nestedfp::bench {

struct E2eOptions {
  std::vector<double> slo_scales = {10, 15};
  double middle_ratio = 0.7;
  std::string title = "Llama-3.1-8B (dummy weights)";
  std::string command, commit, device;
};

struct TraceRun {
  std::string policy;
  double time_scale = 0, rate = 0;  // offered requests/s over the replay
  std::vector<RequestResult> requests;
  std::vector<MetricsSample> metrics;
  double fp16_step_share = 0;             // over the whole replay (NaN: no metrics)
  double fp16_token_share = 0;            // of the tokens those steps computed (NaN: none)
  double slo_ttft_s = 0, slo_tpot_s = 0;  // the slo policy's targets (its slo-metrics.txt)
  std::vector<Summary> at_scale;          // one per E2eOptions::slo_scales, middle ratio applied
};

struct TraceExperiment {
  std::string name;
  double unloaded_ttft_s = 0, unloaded_tpot_s = 0;
  std::vector<TraceRun> runs;  // by policy then scale
};

struct ThroughputCell {
  int input_len = 0, output_len = 0, concurrency = 0;
  std::map<std::string, double> out_tok_s;  // engine -> output tokens/s
};

struct E2eData {
  std::vector<TraceExperiment> traces;
  std::vector<ThroughputCell> grid;
  std::string model;
};

// Reads an experiment directory; throws Error naming what is missing or malformed.
E2eData load_e2e(const std::string& dir, const E2eOptions& o);

// A goal with whether it was met and the numbers that say so.
struct Goal {
  std::string name;
  bool evaluated = false, met = false;
  std::string detail;
};
std::vector<Goal> evaluate_goals(const E2eData& d, const E2eOptions& o);

// Writes <prefix>.md, <prefix>.json and the plots <prefix>.png (load sweep and one surge),
// <prefix>-throughput.png; returns the files written.
std::vector<std::string> write_e2e_report(const E2eData& d, const E2eOptions& o,
                                          const std::string& prefix);

// The slo spec for targets `scale` x the unloaded FP16 latency recorded in a bench serve JSON.
std::string slo_spec_from(const std::string& bench_serve_json, double scale);

}  // namespace nestedfp::bench
