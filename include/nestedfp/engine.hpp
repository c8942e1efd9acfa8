#pragma once
// The serving engine (docs/DESIGN.md §3; seeds §3.9): a request queue, a step loop on its own
// thread, continuous batching over a paged KV cache, a precision policy per step, and one event
// stream per request.
//
// Threads: any thread may call add_request / abort / set_precision_policy / metrics_text / stats;
// one step thread (start()) runs the model. Tests may instead call step() themselves (without
// start()).
//
// What a seed guarantees. A request's sampler draws from its own random generator, seeded from
// `seed` (or from a random seed when absent) and advanced once per generated token, so its draws
// do not depend on other requests. With the same seed, prompt and sampling parameters, a request
// produces the same tokens whether it runs alone or batched with any other requests, and whatever
// the arrival order, chunking or preemptions (a preempted request recomputes its KV and continues
// with its generator where it stopped), PROVIDED the backend computes a sequence's logits
// independently of the other sequences in the step and of how its prompt was chunked (the cpu
// backend does; tests/server checks it) AND every step that touched the request ran at the same
// precision as in the run compared against. Precision is a per-step, engine-wide choice: under
// `fp16` or `fp8` the guarantee holds; under `dynamic` a request's steps switch precision with the
// total load, its logits change from the first step that switched (FP8 changes both the logits of
// that step and the KV it writes, which every later token attends to), and the tokens may then
// differ. An admin change of the policy mid-request has the same effect. The guarantee is per
// backend and build: the cpu and cuda backends do not give bit-identical logits, and the cuda
// backend's logits depend on the step's batch (GEMM configurations by token count, attention
// splits), so there a seeded request repeats exactly only for the same batch composition.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nestedfp/error.hpp"
#include "nestedfp/penalties.hpp"
#include "nestedfp/sampler.hpp"
#include "nestedfp/step.hpp"

namespace nestedfp {

class Tokenizer;

inline constexpr int kMaxSamples = 8;  // most samples of one request (n, best_of)

// A request the engine cannot take: the message says what to change (HTTP 400).
class RequestError : public Error {
 public:
  using Error::Error;
};
// The waiting queue is full (HTTP 429): retry later.
class QueueFullError : public Error {
 public:
  using Error::Error;
};

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 16;            // 0 allowed: prompt only (with prompt_logprobs)
  SamplingParams sampling;        // seed absent: the engine draws a random one
  PenaltyParams penalties;        // penalties, logit_bias, min_tokens (penalties.hpp)
  std::vector<std::string> stop;  // stop strings; the text ends before the first match
  bool include_stop_str = false;
  std::vector<int32_t> stop_token_ids;  // like EOS: finish "stop", not part of the text
  bool ignore_eos = false;
  int logprobs = -1;             // <0: none; k>=0: chosen token's logprob and top k alternatives
  bool prompt_logprobs = false;  // logprobs of prompt tokens 1.. (with `logprobs` alternatives)
};

enum class FinishReason { None, Stop, Length, Abort, Error };
const char* to_string(FinishReason r);  // "", "stop", "length", "abort", "error"

// What happened to a request since the previous event (events may be merged when the reader is
// slower than the engine).
struct RequestEvent {
  std::vector<int32_t> token_ids;  // newly generated ids (EOS / stop ids included)
  // Parallel to token_ids when logprobs >= 0: log-softmax of the raw logits (before penalties,
  // logit bias, temperature, top-k, top-p) of the chosen token and of the `logprobs` most likely
  // ones (sampler.hpp).
  std::vector<LogprobInfo> logprobs;
  std::string text;  // newly released text (UTF-8; held back near stop strings)
  // Once, with or before the first token, when prompt_logprobs was asked: one entry per prompt
  // token, the first empty (nothing predicts it).
  std::vector<std::optional<LogprobInfo>> prompt_logprobs;
  FinishReason finish = FinishReason::None;
  std::string error;  // when finish == Error
  int prompt_tokens = 0;
  int completion_tokens = 0;  // generated so far
};

// The per-request event stream (one reader).
class RequestStream {
 public:
  explicit RequestStream(int64_t id) : id_(id) {}
  int64_t id() const { return id_; }
  // Waits up to `timeout` for events and returns them merged; nullopt on timeout or after the
  // final event (finish != None) was returned.
  std::optional<RequestEvent> next(std::chrono::milliseconds timeout);
  bool done() const;  // the final event was returned by next()

  void push(RequestEvent ev);  // engine side

 private:
  const int64_t id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestEvent> pending_;
  bool final_pushed_ = false, final_taken_ = false;
};

// Turns generated ids into text incrementally, holding back incomplete UTF-8 characters.
class TextDecoder {
 public:
  virtual ~TextDecoder() = default;
  virtual std::string push(int32_t id) = 0;
  virtual std::string finish() = 0;
};
using TextDecoderFactory = std::function<std::unique_ptr<TextDecoder>()>;
// Adapter over the tokenizer's IncrementalDecoder (special tokens skipped).
TextDecoderFactory text_decoder_factory(const Tokenizer& tokenizer);

struct EngineConfig {
  int max_num_batched_tokens = 512;  // tokens per step
  int max_num_seqs = 32;             // sequences per step and running at once
  int max_model_len = 0;             // 0: the executor's; capped by the KV pool
  int num_kv_blocks = 0;             // 0: all the executor allocated; else at most that many
  // New requests waiting for admission beyond which add_request throws QueueFullError. Running
  // requests do not count, nor do preempted ones waiting to resume: those were admitted once, are
  // never refused and wait ahead of new ones (admission is in arrival order, and every preempted
  // request was among the at most max_num_seqs running ones). Metrics report the two apart.
  size_t max_queue = 256;
  std::string precision = "fp16";  // policy spec, see precision_policy.hpp
  // Defaults of the slo policy's targets (serve --slo-ttft / --slo-tpot); 0: the spec gives them.
  double slo_ttft_ms = 0, slo_tpot_ms = 0;
  // Step timings (latency_model.hpp) for the latency model's prior. Empty: with an slo policy at
  // start the engine times a few synthetic steps instead; otherwise it learns from served steps.
  std::string latency_model_file;
  // Automatic prefix caching (docs/DESIGN.md §3.6): full KV blocks stay cached after their
  // request ends and a request whose prompt starts with the same blocks reuses their KV. Outputs
  // are the same with and without it wherever the seed guarantee above holds. false: no cache.
  bool enable_prefix_caching = true;
  std::vector<int32_t> eos_token_ids;
  TextDecoderFactory text_decoder;  // null: events carry token ids only
};

struct EngineStats {
  int kv_blocks_total = 0, kv_blocks_used = 0, kv_blocks_free = 0;
  int waiting = 0, running = 0;  // waiting: new and preempted requests
  int waiting_preempted = 0;     // of `waiting`, preempted ones (outside max_queue)
  uint64_t preemptions = 0;
  uint64_t prefix_cache_queries = 0, prefix_cache_hits = 0;  // tokens (Scheduler)
  int kv_blocks_cached = 0;                                  // registered, in use or evictable
  uint64_t steps_fp16 = 0, steps_fp8 = 0, tokens_fp16 = 0, tokens_fp8 = 0;
  uint64_t requests_added = 0, requests_finished = 0, requests_aborted = 0;
  std::string precision_policy;
};

class Engine {
 public:
  // `executor` must outlive the engine. Throws Error for an invalid configuration.
  Engine(ModelExecutor& executor, EngineConfig cfg);
  ~Engine();  // stops the step thread; unfinished requests end with finish "abort"
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void start();  // the step thread
  void stop();

  // Validates and queues a request; throws RequestError (fix the request) or QueueFullError.
  std::shared_ptr<RequestStream> add_request(GenerationRequest req);
  // `n` samples (1..kMaxSamples) of one request, each its own request with its own stream; sample
  // j draws from seed + j (the seed drawn once when absent), so sample j equals the request run
  // alone with that seed. The prompt is computed once: samples 1.. wait for sample 0 to compute
  // it and share its full KV blocks; each recomputes the partial last block (at most 16 tokens)
  // itself, so no KV is ever copied. The queue bound counts all n; all or none are queued.
  std::vector<std::shared_ptr<RequestStream>> add_requests(GenerationRequest req, int n);
  // Ends a request now: its blocks are freed at once and its stream gets a final "abort" event.
  // False when the id is unknown or already finished.
  bool abort(int64_t request_id);
  // Runs one step on the calling thread; false when there was nothing to run.
  bool step();

  // Replaces the policy (takes effect from the next step); throws Error for a bad spec.
  void set_precision_policy(std::string_view spec);
  std::string precision_policy() const;

  std::string metrics_text() const;  // Prometheus text exposition format
  EngineStats stats() const;
  // Blocks until no request is waiting or running (tests, shutdown); false on timeout.
  bool wait_idle(std::chrono::milliseconds timeout) const;

  int max_model_len() const;
  int vocab_size() const;
  const EngineConfig& config() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace nestedfp
