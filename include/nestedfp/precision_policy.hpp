#pragma once
// Precision per engine step (docs/DESIGN.md §3.8). A policy sees how much work the scheduler put
// into a step and picks FP16 (exact) or FP8 (fast) for all of it.
//
// Specs (`--precision`, POST /admin/precision):
//   fp16 | fp8
//   dynamic[:threshold=N[,hysteresis=H]]
//     FP8 when the step schedules more than N tokens; N defaults to half the token budget
//     (--max-num-batched-tokens / 2). With H > 0 a step that follows an FP8 step stays FP8 until
//     the token count drops to N - H or below, so load hovering at N does not flip every step.
//   slo[:ttft=MS,tpot=MS,hysteresis=F,gain=F,forecast=F,hold=F]
//     FP16 unless the latency model (latency_model.hpp) predicts that FP16 misses the TTFT target
//     of a waiting request that could still meet it, or of the requests that the recent arrival
//     rate brings (forecast: rate measured over F x the TTFT target, default 1; 0 turns it off),
//     or the TPOT target of the running ones, and FP8 would do measurably better (by the fraction
//     `gain`, default 0.05). With the forecast on, overload also runs prefill steps FP8: while a
//     queued request is past the TTFT target, and after an FP8 prefill step while FP16's forecast
//     utilization stays at or above `hold` (default 0.8; 0: no hold). While in FP8 the targets
//     are tightened by `hysteresis` (default 0.2) before FP16 is tried again. Defaults of
//     ttft/tpot: PolicyContext (serve's --slo-ttft / --slo-tpot).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nestedfp/step.hpp"

namespace nestedfp {

class LatencyModel;

// A request still without its first token.
struct QueuedPrompt {
  double age_s = 0;          // since it arrived
  int remaining_tokens = 0;  // prompt tokens without KV yet, this step's chunk included
  uint64_t order = 0;        // the engine's arrival counter: a later request has a larger one
};

struct StepLoad {
  int num_tokens = 0;  // all tokens of the step
  int num_seqs = 0;
  int num_decode_seqs = 0;  // sequences contributing one decode token
  // Filled only for a policy whose needs_queue() is true: requests without a first token (the
  // waiting queue and prompts being chunked), oldest first, and the engine's clock (seconds, any
  // origin) at which their ages were taken. Every request is in `prompts` at least at the step
  // that computes its first chunk, so a policy sees each arrival once, with its time.
  std::vector<QueuedPrompt> prompts;
  double now_s = 0;
};

class PrecisionPolicy {
 public:
  virtual ~PrecisionPolicy() = default;
  // Called once per step by the engine's step thread.
  virtual Precision choose(const StepLoad& load) = 0;
  // Canonical spec with defaults filled in, e.g. "dynamic:threshold=256,hysteresis=0".
  virtual std::string spec() const = 0;
  // Whether choose() reads StepLoad::prompts (building it costs a pass over the requests).
  virtual bool needs_queue() const { return false; }
  // Appends the policy's own Prometheus metrics (decisions, predictions) to `out`.
  virtual void render_metrics(std::string& /*out*/) const {}
};

// What a spec may leave out.
struct PolicyContext {
  int max_num_batched_tokens = 512;
  double slo_ttft_ms = 0, slo_tpot_ms = 0;  // slo defaults; 0 = the spec must give them
  // The engine's step-time model (slo only; must outlive the policy). Null: slo cannot be built.
  const LatencyModel* latency = nullptr;
};

// Throws Error with what is wrong and the accepted forms for a spec it cannot parse.
std::unique_ptr<PrecisionPolicy> make_precision_policy(std::string_view spec,
                                                       const PolicyContext& ctx);
inline std::unique_ptr<PrecisionPolicy> make_precision_policy(std::string_view spec,
                                                              int max_num_batched_tokens) {
  return make_precision_policy(spec, PolicyContext{max_num_batched_tokens});
}
// The slo policy; also reached through make_precision_policy("slo...").
std::unique_ptr<PrecisionPolicy> make_slo_policy(std::string_view spec, const PolicyContext& ctx);
// "slo" or "slo:..." (the engine calibrates its latency model when it starts with one).
bool is_slo_spec(std::string_view spec);

}  // namespace nestedfp
