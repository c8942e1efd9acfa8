#pragma once
// The contract between the engine (scheduler, KV block manager, policy) and a model executor
// (cpu or cuda backend). The engine owns block *ids*; the executor owns the KV memory.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nestedfp/penalties.hpp"
#include "nestedfp/sampler.hpp"

namespace nestedfp {

inline constexpr int kKvBlockSize = 16;  // tokens per paged-KV block

enum class Precision { FP16, FP8 };
inline const char* to_string(Precision p) { return p == Precision::FP16 ? "fp16" : "fp8"; }

// One sequence's share of a step: a prefill chunk or a single decode token.
struct SeqChunk {
  int64_t seq_id = 0;
  std::vector<int32_t> tokens;       // tokens processed this step
  int32_t start_pos = 0;             // position of tokens[0]; KV of [0, start_pos) is cached
  std::vector<int32_t> block_table;  // physical block ids covering [0, start_pos + tokens.size())
  // Sample the token after the last one, on the executor's device, with `sampling` and the
  // request's uniform draw `uniform` (RequestSampler::next_uniform; unused when greedy).
  bool sample = false;
  SamplingParams sampling;
  double uniform = 0.0;
  int top_logprobs = -1;  // >= 0: logprob of the sampled token and this many alternatives
  // Penalties, logit bias and min_tokens mask of the sampled token (penalties.hpp); null: none.
  // Owned by the caller (the engine's request record) and only read during execute.
  const RowPenalties* penalties = nullptr;
  bool need_logits = true;       // logits of the last token to the host (offline tools, tests)
  bool need_all_logits = false;  // logits of every token (prompt logprobs, perplexity)
  // With `sample`: the greedy token after *every* token of the chunk, on the device, returned in
  // StepOutput::row_tokens (speculative verification, docs/DESIGN.md §3.13). Greedy only, no
  // penalties or logprobs.
  bool sample_all = false;
};

struct StepInput {
  std::vector<SeqChunk> seqs;
  Precision precision = Precision::FP16;
};

struct StepOutput {
  // Per sequence, row-major [rows, vocab] float logits: rows = tokens.size() if need_all_logits,
  // 1 if need_logits, 0 otherwise. Full logits cross to the host only when asked for.
  std::vector<std::vector<float>> logits;
  // Per sequence: the sampled token (-1 unless sample), and its log-probabilities when
  // top_logprobs >= 0.
  std::vector<int32_t> tokens;
  std::vector<std::optional<LogprobInfo>> logprobs;
  // Per sequence: with sample_all, the greedy token after each of its tokens (tokens.size());
  // empty otherwise. `tokens` then holds the last of them.
  std::vector<std::vector<int32_t>> row_tokens;
};

// Implemented by each backend's model runner.
class ModelExecutor {
 public:
  virtual ~ModelExecutor() = default;
  virtual StepOutput execute(const StepInput& in) = 0;
  // The same step in two halves, for host/GPU overlap (docs/DESIGN.md §3.15): launch() queues
  // the step on the device and returns; collect() waits for it and returns what execute() would.
  // `in` must stay alive and unchanged in between; one step is in flight at a time. The engine
  // does the previous step's output work (detokenization, stop strings, streaming) in between.
  // An executor that cannot return before the step ends runs all of it in launch().
  virtual void launch(const StepInput& in) { launched_ = execute(in); }
  virtual StepOutput collect() { return std::exchange(launched_, StepOutput{}); }
  // Whether launch() returns while the device still runs the step: only then is deferring output
  // work worth the one step it delays a stop string by.
  virtual bool overlaps_host() const { return false; }
  virtual int num_kv_blocks() const = 0;  // blocks the executor allocated
  virtual int vocab_size() const = 0;
  virtual int max_model_len() const = 0;
  // Most tokens one step may carry (the scratch buffers are sized for it once).
  virtual int max_step_tokens() const = 0;

 private:
  StepOutput launched_;  // the default launch()'s result, until collect()
};

}  // namespace nestedfp
