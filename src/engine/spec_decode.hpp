#pragma once
// One self-speculative cycle (docs/DESIGN.md §3.13) for the engine's step: the FP8 draft steps
// before the FP16 verify step, and the acceptance of drafted tokens after it. The engine owns
// scheduling, blocks and committing; this file owns what the cycle computes.
#include <cstdint>
#include <vector>

#include "nestedfp/sampler.hpp"
#include "nestedfp/step.hpp"

namespace nestedfp::engine {

struct SpecSeq {
  size_t index = 0;  // its decode chunk in the step's StepInput (becomes the verify chunk)
  int k = 0;         // tokens to draft
  SamplingParams sampling;
  RequestSampler* sampler = nullptr;  // the request's generator (sampled requests)
  double first_uniform = 0.0;         // drawn for the step's decode token: the first draft's
  std::vector<int32_t> drafts;
  std::vector<std::vector<double>> q;  // sampled: the draft distribution of each draft
  std::vector<int32_t> emitted;        // after verification: the tokens to commit, in order
  int accepted = 0;                    // drafts FP16 agreed with
  bool greedy() const { return sampling.temperature == 0.f; }
};

struct DraftStep {
  int tokens = 0;
  double seconds = 0;
};

// Runs the FP8 draft steps (step j drafts for every sequence with k > j) and turns each sequence's
// chunk of `verify` into its verify chunk [last token, d1..dk] at the same start position: greedy
// ones sample every row on the device (sample_all), sampled ones bring every row's logits to the
// host.
std::vector<DraftStep> run_drafts(ModelExecutor& exec, StepInput& verify,
                                  std::vector<SpecSeq>& seqs);

// After the FP16 verify step ran `verify`: each sequence's accepted drafts and the one token
// FP16 adds (the correction at the first disagreement, or the bonus token after all k).
void accept_drafts(const StepInput& verify, const StepOutput& out, int vocab,
                   std::vector<SpecSeq>& seqs);

}  // namespace nestedfp::engine
