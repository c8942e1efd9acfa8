#include "engine/tp_executor.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "nestedfp/error.hpp"

namespace nestedfp::engine {

// One thread per rank, each running the job it is handed and reporting back.
class TpExecutor::Workers {
 public:
  explicit Workers(int n) : errors(size_t(n)), finished(size_t(n), true) {
    for (int r = 0; r < n; ++r) threads_.emplace_back([this, r] { loop(r); });
  }
  ~Workers() {
    {
      std::lock_guard lk(m);
      stop_ = true;
    }
    cv_job_.notify_all();
    for (size_t r = 0; r < threads_.size(); ++r) {
      // A rank stuck in a device call cannot be joined: it is left behind (with what it holds) so
      // that the process can still report the failure and exit.
      if (finished[r])
        threads_[r].join();
      else
        threads_[r].detach();
    }
  }
  void start(std::function<void(int)> job) {
    std::lock_guard lk(m);
    job_ = std::move(job);
    done = failed = 0;
    std::fill(errors.begin(), errors.end(), std::string());
    std::fill(finished.begin(), finished.end(), false);
    ++gen_;
    cv_job_.notify_all();
  }

  std::mutex m;
  std::condition_variable cv_done;
  int done = 0, failed = 0;
  std::vector<std::string> errors;  // per rank, of the last job ("" when it succeeded)
  std::vector<bool> finished;       // per rank, of the last job

 private:
  void loop(int r) {
    uint64_t seen = 0;
    for (;;) {
      std::function<void(int)> job;
      {
        std::unique_lock lk(m);
        cv_job_.wait(lk, [&] { return stop_ || gen_ != seen; });
        if (stop_) return;
        seen = gen_, job = job_;
      }
      std::string err;
      try {
        job(r);
      } catch (const std::exception& e) {
        err = e.what();
        if (err.empty()) err = "unknown error";
      } catch (...) {
        err = "unknown error";
      }
      std::lock_guard lk(m);
      errors[size_t(r)] = std::move(err);
      if (!errors[size_t(r)].empty()) ++failed;
      finished[size_t(r)] = true, ++done;
      cv_done.notify_all();
    }
  }
  std::vector<std::thread> threads_;
  std::condition_variable cv_job_;
  std::function<void(int)> job_;
  uint64_t gen_ = 0;
  bool stop_ = false;
};

TpExecutor::TpExecutor(int size, const RankFactory& make_rank, CommFactory make_comms,
                       std::chrono::milliseconds step_timeout)
    : step_timeout_(step_timeout) {
  if (size < 1) fail("--tensor-parallel-size must be at least 1, got {}", size);
  ranks_.resize(size_t(size));
  workers_ = std::make_unique<Workers>(size);
  // Loading runs no collective, so a rank that fails here cannot block the others: wait for all.
  run_all([&](int r) { ranks_[size_t(r)] = make_rank(r); }, "loading its shard",
          /*abort_on_error=*/false);
  std::vector<backend::Backend*> backends;
  for (auto& r : ranks_) backends.push_back(&r->backend());
  comms_ = make_comms ? make_comms(backends) : backend::make_communicators(backends);
  if (int(comms_.size()) != size)
    fail("internal: {} communicators for {} ranks", comms_.size(), size);
  num_kv_blocks_ = ranks_[0]->num_kv_blocks();
  for (int r = 0; r < size; ++r) {
    ranks_[size_t(r)]->set_communicator(comms_[size_t(r)].get());
    num_kv_blocks_ = std::min(num_kv_blocks_, ranks_[size_t(r)]->num_kv_blocks());
  }
  spdlog::info("tensor parallel: {} ranks over {} communicators, {} KV blocks each", size,
               comms_[0]->name(), num_kv_blocks_);
}

TpExecutor::~TpExecutor() {
  if (!workers_) return;
  bool all_finished = true;
  {
    std::lock_guard lk(workers_->m);
    for (bool f : workers_->finished) all_finished = all_finished && f;
  }
  if (all_finished) {
    // Each runner is freed on its own thread (its device is current there).
    try {
      run_all([&](int r) { ranks_[size_t(r)].reset(); }, "shutting down", false);
    } catch (const std::exception& e) {
      spdlog::error("tensor parallel: {}", e.what());
    }
  } else {
    std::lock_guard lk(workers_->m);
    for (size_t r = 0; r < ranks_.size(); ++r)
      if (!workers_->finished[r]) (void)ranks_[r].release();  // still in use by its thread
  }
  workers_.reset();
}

void TpExecutor::run_all(const std::function<void(int)>& job, const char* what,
                         bool abort_on_error) {
  Workers& w = *workers_;
  const int n = int(ranks_.size());
  w.start(job);
  std::unique_lock lk(w.m);
  const auto deadline = std::chrono::steady_clock::now() + step_timeout_;
  auto grace = deadline;
  bool aborted = false;
  auto abort_all = [&](const std::string& why) {
    aborted = true;
    // The ranks still running get a grace period to see the abort and return.
    grace = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (auto& c : comms_) c->abort(why);
  };
  auto wake = [&] { return w.done == n || (abort_on_error && !aborted && w.failed > 0); };
  while (w.done < n) {
    if (!abort_on_error) {  // no collective in flight: every rank returns on its own
      w.cv_done.wait(lk, wake);
      continue;
    }
    if (!aborted && w.failed > 0) {
      for (int r = 0; r < n; ++r)
        if (!w.errors[size_t(r)].empty()) {
          abort_all(fmt::format("rank {} failed: {}", r, w.errors[size_t(r)]));
          break;
        }
    } else if (!aborted && std::chrono::steady_clock::now() >= deadline) {
      abort_all(fmt::format("a step did not finish within {} ms", step_timeout_.count()));
    }
    if (!w.cv_done.wait_until(lk, aborted ? grace : deadline, wake) && aborted) break;
  }
  std::string msg;
  for (int r = 0; r < n; ++r) {
    const std::string& e = w.errors[size_t(r)];
    if (!w.finished[size_t(r)])
      msg += fmt::format("{}rank {}: did not return after the others were aborted",
                         msg.empty() ? "" : "; ", r);
    else if (!e.empty())
      msg += fmt::format("{}rank {}: {}", msg.empty() ? "" : "; ", r, e);
  }
  if (msg.empty()) return;
  if (abort_on_error) broken_ = msg;
  fail("tensor parallel ({} ranks), {}: {}", n, what, msg);
}

StepOutput TpExecutor::execute(const StepInput& in) {
  if (!broken_.empty())
    fail("tensor-parallel executor stopped after a failed step ({}); restart the process", broken_);
  std::vector<StepOutput> outs(ranks_.size());
  run_all(
      [&](int r) {
        ModelRunner& m = *ranks_[size_t(r)];
        m.backend().bind_thread();
        outs[size_t(r)] = m.execute(in);
      },
      "step", /*abort_on_error=*/true);
  return std::move(outs[0]);
}

std::vector<ModelRunner*> ranks_of(ModelExecutor& ex) {
  if (auto* r = dynamic_cast<ModelRunner*>(&ex)) return {r};
  if (auto* t = dynamic_cast<TpExecutor*>(&ex)) {
    std::vector<ModelRunner*> v;
    for (int i = 0; i < t->size(); ++i) v.push_back(&t->rank(i));
    return v;
  }
  fail("internal: an executor that is neither a ModelRunner nor a TpExecutor");
}

std::unique_ptr<TpExecutor> load_tensor_parallel(
    int tp_size, const std::function<std::unique_ptr<backend::Backend>(int rank)>& make_backend,
    const LoadOptions& load, const RunnerOptions& options) {
  check_tensor_parallel(io::load_config(load.model_dir), tp_size);
  return std::make_unique<TpExecutor>(tp_size, [&](int r) {
    LoadOptions lo = load;
    lo.shard = {r, tp_size};
    return ModelRunner::load(make_backend(r), lo, options);
  });
}

}  // namespace nestedfp::engine
