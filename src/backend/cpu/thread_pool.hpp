#pragma once
// A small fixed thread pool: parallel_for hands out task indices from an atomic counter; the
// calling thread works too. Results must not depend on which thread runs a task.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nestedfp::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // total threads including the caller; <= 0: auto
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }
  // Runs fn(task, thread_index) for task in [0, n); thread_index in [0, size()).
  void parallel_for(int64_t n, const std::function<void(int64_t, int)>& fn);

 private:
  void worker(int index);
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  const std::function<void(int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  std::atomic<int64_t> next_{0};
  int generation_ = 0, active_ = 0;
  bool stop_ = false;
};

int default_thread_count();  // NESTEDFP_THREADS or hardware_concurrency

}  // namespace nestedfp::cpu
