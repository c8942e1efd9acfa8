#pragma once
// The engine's private state (engine.cpp: requests, steps; engine_output.cpp: what committed
// tokens owe their streams).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/block_manager.hpp"
#include "engine/metrics.hpp"
#include "engine/penalty_state.hpp"
#include "engine/scheduler.hpp"
#include "engine/spec_decode.hpp"
#include "engine/stop_checker.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/latency_model.hpp"
#include "nestedfp/precision_policy.hpp"
#include "nestedfp/sampler.hpp"
#include "nestedfp/speculative.hpp"

namespace nestedfp {

using Clock = std::chrono::steady_clock;

inline double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

namespace engine {

struct Record {
  Sequence seq;
  GenerationRequest req;
  std::unique_ptr<RequestSampler> sampler;
  PenaltyState penalties;  // updated as tokens are committed
  std::unique_ptr<TextDecoder> decoder;
  StopChecker stops;
  std::shared_ptr<RequestStream> stream;
  Clock::time_point arrival, first_token, last_token;
  int generated = 0;              // tokens committed (appended to seq.tokens)
  int emitted = 0;                // of those, sent on the stream (a stop string drops the rest)
  std::atomic<bool> done{false};  // set under the engine lock; read without it while sampling
  bool in_flight = false;         // in the step the executor is running (record must stay alive)
  bool owed = false;              // an Emit refers to it (record must stay alive)
  std::vector<std::optional<LogprobInfo>> prompt_lp;
  bool prompt_lp_sent = false;
  AcceptanceEstimate acceptance;  // of its speculative cycles (adaptive k)
};

// What one step's committed tokens owe a request's stream: detokenization, stop strings and the
// event. Done right after the next step is launched, while the device runs it (§3.15), or at
// once when the executor cannot overlap.
struct Emit {
  Record* rec = nullptr;
  std::vector<int32_t> tokens;
  std::vector<LogprobInfo> lps;  // parallel to tokens when the request wants logprobs
  RequestEvent ev;               // prompt log-probs gathered at commit
  // Decided at commit (the request is already retired): EOS or a stop token (its text is not
  // output), or the length limit.
  FinishReason finish = FinishReason::None;
  bool stop_token = false;
};

}  // namespace engine

struct Engine::Impl {
  using Record = engine::Record;
  Impl(ModelExecutor& e, EngineConfig c);

  ModelExecutor& exec;
  EngineConfig cfg;
  int vocab = 0;
  int max_len = 0;
  bool overlap = false;  // exec.overlaps_host(): output work waits for the next launch
  mutable std::mutex mu;
  std::condition_variable work_cv;
  mutable std::condition_variable idle_cv;
  std::mutex step_mu;  // one step at a time
  std::unique_ptr<engine::BlockManager> bm;
  std::unique_ptr<engine::Scheduler> sched;
  std::unique_ptr<PrecisionPolicy> policy;
  LatencyModel latency;  // step times per precision, learnt from every step (§3.12)
  SpeculativeConfig spec;
  std::unordered_map<int64_t, std::unique_ptr<Record>> recs;
  std::vector<engine::Emit> emits;  // owed by the last committed step (under mu)
  int64_t next_id = 1;
  uint64_t next_arrival = 0;
  std::mt19937_64 seed_rng{std::random_device{}()};
  engine::Metrics metrics;
  std::thread thread;
  bool stopping = false;
  uint64_t aborted = 0;

  bool has_work() const { return sched->num_waiting() + sched->num_running() > 0; }
  // Ends a request now with a final event (abort, error, nothing to compute).
  void finish(Record& r, FinishReason why, RequestEvent ev);
  // Takes a finished request out of scheduling (blocks freed); its final event is sent apart.
  void retire(Record& r, FinishReason why);
  // Drops the record once nothing refers to it; r may be gone after this.
  void release(Record& r);
  // Appends a sampled token to the request and ends it on EOS, a stop token or the length limit
  // (retire); text and stop strings wait for flush_emits.
  void commit_token(Record& r, int32_t token, LogprobInfo lp, engine::Emit& e);
  void commit_verified(Record& r, const engine::SpecSeq& sp, engine::ScheduledChunk chunk);
  // Detokenizes, checks stop strings and pushes the events of `emits` (under mu).
  void flush_emits();
  void emit(engine::Emit& e);
  int draft_want(const Record& r) const;
  void loop();
  bool step();
  PolicyContext policy_context() const {
    return {cfg.max_num_batched_tokens, cfg.slo_ttft_ms, cfg.slo_tpot_ms, &latency};
  }
};

}  // namespace nestedfp
