#pragma once
// A tensor-parallel model: N ModelRunners (one per rank, each on its own backend with its shard
// of the weights and a KV cache for its heads), one worker thread per rank, in one process.
// execute() hands the same StepInput to every rank, which run the same step at the same
// precision; row-parallel outputs are summed over the ranks' communicators; rank 0's output is
// the step's. docs/DESIGN.md §3.14.
//
// Failures never hang: ranks are built in parallel with no collective in flight, and every rank
// is joined before an error is thrown (naming the rank); a rank that fails during a step aborts
// the communicators so the others' collectives fail too, and a step that does not finish within
// the step timeout aborts them as well. After a failed step the executor refuses further steps.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/model_runner.hpp"
#include "nestedfp/communicator.hpp"

namespace nestedfp::engine {

class TpExecutor final : public ModelExecutor {
 public:
  // Builds rank r's runner (backend + its shard) on rank r's thread.
  using RankFactory = std::function<std::unique_ptr<ModelRunner>(int rank)>;
  // `make_comms` defaults to backend::make_communicators over the ranks' backends.
  using CommFactory = std::function<std::vector<std::unique_ptr<backend::Communicator>>(
      const std::vector<backend::Backend*>&)>;
  TpExecutor(int size, const RankFactory& make_rank, CommFactory make_comms = {},
             std::chrono::milliseconds step_timeout = std::chrono::minutes(10));
  ~TpExecutor() override;

  StepOutput execute(const StepInput& in) override;
  int num_kv_blocks() const override { return num_kv_blocks_; }  // the smallest rank's
  int vocab_size() const override { return ranks_[0]->vocab_size(); }
  int max_model_len() const override { return ranks_[0]->max_model_len(); }
  int max_step_tokens() const override { return ranks_[0]->max_step_tokens(); }

  int size() const { return int(ranks_.size()); }
  ModelRunner& rank(int r) { return *ranks_.at(size_t(r)); }

 private:
  class Workers;
  // Runs job(r) on every rank's thread; throws the first failure after all ranks returned.
  void run_all(const std::function<void(int)>& job, const char* what, bool abort_on_error);

  std::vector<std::unique_ptr<backend::Communicator>> comms_;
  std::vector<std::unique_ptr<ModelRunner>> ranks_;
  std::unique_ptr<Workers> workers_;  // declared last: stopped first
  std::chrono::milliseconds step_timeout_;
  int num_kv_blocks_ = 0;
  std::string broken_;  // why steps are refused (a failed step)
};

// The runners behind an executor: {the runner} or every rank of a TpExecutor (rank 0 first).
std::vector<ModelRunner*> ranks_of(ModelExecutor& ex);

// The executor for `load` at `tp_size` ranks: rank r on make_backend(r) with LoadOptions::shard
// {r, tp_size}. tp_size 1 still runs one worker thread (use ModelRunner::load directly instead).
std::unique_ptr<TpExecutor> load_tensor_parallel(
    int tp_size, const std::function<std::unique_ptr<backend::Backend>(int rank)>& make_backend,
    const LoadOptions& load, const RunnerOptions& options);

}  // namespace nestedfp::engine
