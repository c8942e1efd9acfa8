#pragma once
// `nestedfp bench engine` (docs/MEASURING.md §5.5): the engine offline, no HTTP, for the plain
// FP16 engine (--weights fp16), NestedFP16 and NestedFP8 in one run. Measures decode step time per
// batch against the weight-bytes / copy-bandwidth floor, prefill throughput, the cost of switching
// precision between graph steps, a per-op breakdown of eager steps, offline throughput through the
// real Engine (with the executor / host split of its wall time) and the memory each engine holds.
// The result is one JSON document; engine_bench_report.cpp turns it into markdown and a PNG.
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/model_runner.hpp"

namespace nestedfp::bench {

struct EngineBenchOptions {
  std::vector<std::string> weights = {"fp16", "nested"};  // one runner (load) each
  std::vector<int> batches = {1, 8, 32, 128, 256};        // decode batch sizes
  int context = 1024;                                     // tokens per sequence before decoding
  int steps = 20, warmup = 3;                             // timed decode steps per point (median)
  int prefill_chunk = 2048, prefill_steps = 8;            // one fresh sequence per step
  std::vector<int> switch_batches = {1, 64};              // precision-switch cost (nested only)
  int switch_steps = 30;                                  // per pattern
  std::vector<int> profile_batches = {1, 64};             // per-op breakdown (eager steps)
  int profile_steps = 5;
  int offline_requests = 2000, offline_input = 512, offline_output = 128;  // 0: skip
  int max_num_batched_tokens = 2048, max_num_seqs = 256;
  double copy_bandwidth = 0;  // bytes/s measured on the device; 0: no floor (cpu)
  uint64_t seed = 1;          // prompt tokens, sampling seeds
};

// Builds the runner of one weights mode ("fp16" | "nested") with exactly `kv_blocks` KV blocks,
// max_num_seqs sequences and max_num_batched_tokens tokens per step: a ModelRunner, or a
// TpExecutor (steps then run on every rank; config, counters, profile and memory are rank 0's,
// so the floor is one GPU's: its shard of the decoder plus the replicated lm_head).
using RunnerFactory = std::function<std::unique_ptr<ModelExecutor>(
    const std::string& weights, int kv_blocks, int max_num_seqs, int max_num_batched_tokens)>;

// Runs everything; `header` (model, device, command, commit, ...) is copied into the result.
nlohmann::json run_engine_bench(const EngineBenchOptions& options, const RunnerFactory& factory,
                                nlohmann::json header);

// Bytes of weights a decode step reads: every decoder linear once (2 bytes per parameter in FP16,
// nested planes or plain; 1 for the upper plane in FP8) plus the FP16 lm_head.
double decode_weight_bytes(const io::ModelConfig& c, bool fp8);

// The goals table and the analysis of missed goals (added to the result as "goals", "analysis").
void add_goals(nlohmann::json& result);
std::string engine_bench_markdown(const nlohmann::json& result);
// Decode step time vs batch with the floors, offline throughput bars.
void engine_bench_png(const nlohmann::json& result, const std::string& path);

}  // namespace nestedfp::bench
