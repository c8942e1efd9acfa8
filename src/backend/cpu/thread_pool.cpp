#include "backend/cpu/thread_pool.hpp"

#include <cstdlib>
#include <exception>

namespace nestedfp::cpu {

int default_thread_count() {
  if (const char* e = std::getenv("NESTEDFP_THREADS")) {
    const int n = std::atoi(e);
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = default_thread_count();
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int index) {
  int seen = 0;
  for (;;) {
    const std::function<void(int64_t, int)>* job;
    int64_t n;
    {
      std::unique_lock lk(mu_);
      cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      job = job_;
      n = job_n_;
    }
    for (int64_t t; (t = next_.fetch_add(1)) < n;) (*job)(t, index);
    {
      std::lock_guard lk(mu_);
      if (--active_ == 0) cv_done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int)>& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    for (int64_t t = 0; t < n; ++t) fn(t, 0);
    return;
  }
  // Exceptions in tasks would leave workers mid-job; ops validate inputs before dispatching.
  {
    std::lock_guard lk(mu_);
    job_ = &fn;
    job_n_ = n;
    next_.store(0);
    active_ = int(workers_.size());
    ++generation_;
  }
  cv_start_.notify_all();
  for (int64_t t; (t = next_.fetch_add(1)) < n;) fn(t, 0);
  std::unique_lock lk(mu_);
  cv_done_.wait(lk, [&] { return active_ == 0; });
  job_ = nullptr;
}

}  // namespace nestedfp::cpu
