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
#include <memory>
#include <string>
#include <string_view>

#include "nestedfp/step.hpp"

namespace nestedfp {

struct StepLoad {
  int num_tokens = 0;  // all tokens of the step
  int num_seqs = 0;
  int num_decode_seqs = 0;  // sequences contributing one decode token
};

class PrecisionPolicy {
 public:
  virtual ~PrecisionPolicy() = default;
  // Called once per step by the engine's step thread.
  virtual Precision choose(const StepLoad& load) = 0;
  // Canonical spec with defaults filled in, e.g. "dynamic:threshold=256,hysteresis=0".
  virtual std::string spec() const = 0;
};

// Throws Error with what is wrong and the accepted forms for a spec it cannot parse.
std::unique_ptr<PrecisionPolicy> make_precision_policy(std::string_view spec,
                                                       int max_num_batched_tokens);

}  // namespace nestedfp
