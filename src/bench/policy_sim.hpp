#pragma once
// `nestedfp bench policy-sim`: replays the requests of a recorded `bench serve` run through the
// engine's real precision policies against a step-time model, in simulated time, so that policy
// work needs no GPU (docs/MEASURING.md §5.6). The server is modelled as the scheduler runs it:
// every step decodes one token of each running request (up to max_num_seqs) and fills the rest
// of the token budget with prompt chunks, first come first served; a request's first token comes
// at the end of the step that computes its last prompt token. Step times come from the latency
// model (a + b·tokens + c·seqs per precision, DESIGN.md §3.12), fixed for the whole replay. Not
// modelled: attention's cost in the context length, KV-cache limits and preemption, HTTP; every
// recorded request is replayed as served, also one that failed in the recording.
#include <string>
#include <vector>

#include "bench/bench_client.hpp"
#include "nestedfp/latency_model.hpp"

namespace nestedfp::bench {

struct SimRequest {
  double send_s = 0;  // from the start of the run
  int prompt_tokens = 0, output_tokens = 0;
};

// The requests of the first run in a `bench serve` JSON (send time, prompt tokens, and max_tokens
// as the output length: the e2e replays run with --ignore-eos). Throws naming the file.
std::vector<SimRequest> read_sim_requests(const std::string& path);

// A latency model from a Prometheus text dump of the server's /metrics (the e2e experiment keeps
// one per slo run as slo-metrics.txt): the `nestedfp_latency_model_coefficient` series of both
// precisions. Throws naming the file and the missing series.
LatencyModel read_latency_model(const std::string& path);
LatencyModel parse_latency_model(const std::string& text, const std::string& name);

struct SimOptions {
  int max_num_batched_tokens = 2048;
  int max_num_seqs = 256;
  double slo_ttft_ms = 0, slo_tpot_ms = 0;  // serve's --slo-ttft/--slo-tpot for the slo policy
};

struct SimResult {
  std::string policy;                   // the policy's canonical spec
  std::vector<RequestResult> requests;  // as `bench serve` records them (ok, times, tokens)
  long steps = 0, fp16_steps = 0;
  long tokens = 0, fp16_tokens = 0;
};

// One replay of `requests` under the policy `spec` (any `--precision` spec serve accepts).
SimResult simulate(const std::vector<SimRequest>& requests, const LatencyModel& model,
                   const std::string& spec, const SimOptions& o);

}  // namespace nestedfp::bench
