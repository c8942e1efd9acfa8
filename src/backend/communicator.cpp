// The in-process communicator group (threads of one process, host memory) and the factory that
// picks it or NCCL. docs/DESIGN.md §3.14.
#include "nestedfp/communicator.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"

namespace nestedfp::backend {

#ifdef NESTEDFP_HAVE_NCCL
// src/backend/cuda/runtime/nccl_communicator.cpp
std::vector<std::unique_ptr<Communicator>> make_nccl_communicators(
    const std::vector<Backend*>& backends);
#endif

namespace {

enum class Op { Sum, Max };

// What the ranks share. A collective completes when the last rank arrives: it combines (sums or
// takes the max of) the posted contributions in rank order and bumps `generation`, which wakes
// the others. A rank reads the result before it can arrive at the next collective, and the next
// one cannot complete without it, so one result buffer suffices.
struct Group {
  int size = 0;
  std::chrono::milliseconds timeout{0};
  std::mutex m;
  std::condition_variable cv;
  uint64_t generation = 0;
  int arrived = 0;
  std::vector<std::vector<float>> contrib;  // per rank, of the collective in progress
  std::vector<int64_t> count;               // elements each rank posted (must agree)
  std::vector<std::string> kind;            // the collective each rank called (must agree)
  std::vector<float> result;
  bool aborted = false;
  std::string why;

  void abort_locked(const std::string& reason) {
    if (!aborted) aborted = true, why = reason;
    cv.notify_all();
  }
  [[noreturn]] void throw_aborted(int rank) const {
    fail("tensor-parallel rank {}: collective aborted: {}", rank, why);
  }

  // Posts `data` for `rank` and returns the rank-order sum (max) once every rank has posted.
  std::vector<float> reduce(int rank, std::vector<float> data, const char* what, Op op = Op::Sum) {
    std::unique_lock lk(m);
    if (aborted) throw_aborted(rank);
    const uint64_t gen = generation;
    count[size_t(rank)] = int64_t(data.size());
    contrib[size_t(rank)] = std::move(data);
    kind[size_t(rank)] = what;
    if (++arrived == size) {
      for (int r = 1; r < size; ++r)
        if (kind[size_t(r)] != kind[0]) {
          abort_locked(
              fmt::format("rank 0 called {} while rank {} called {}", kind[0], r, kind[size_t(r)]));
          throw_aborted(rank);
        }
      for (int r = 1; r < size; ++r)
        if (count[size_t(r)] != count[0]) {
          abort_locked(fmt::format("{}: rank 0 reduces {} elements but rank {} reduces {}", what,
                                   count[0], r, count[size_t(r)]));
          throw_aborted(rank);
        }
      result.assign(size_t(count[0]), op == Op::Sum ? 0.f : -INFINITY);
      for (int r = 0; r < size; ++r) {  // fixed rank order: the same bits whatever the timing
        const std::vector<float>& c = contrib[size_t(r)];
        for (size_t i = 0; i < c.size(); ++i)
          result[i] = op == Op::Sum ? result[i] + c[i] : std::max(result[i], c[i]);
      }
      arrived = 0, ++generation;
      cv.notify_all();
      return result;
    }
    if (!cv.wait_for(lk, timeout, [&] { return generation != gen || aborted; }))
      abort_locked(fmt::format(
          "rank {} waited {} ms in {} for the other ranks (one failed or hangs; see its error)",
          rank, timeout.count(), what));
    if (generation == gen) throw_aborted(rank);
    return result;
  }
};

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<Group> g, int rank) : g_(std::move(g)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return g_->size; }
  std::string name() const override { return "in-process"; }

  void all_reduce_sum(Backend& be, Buffer& buf, int64_t n, ElemType type) override {
    const size_t esize = type == ElemType::F16 ? 2 : 4;
    if (n < 0 || size_t(n) * esize > buf.bytes())
      fail("all_reduce_sum: {} elements do not fit a buffer of {} bytes", n, buf.bytes());
    std::vector<float> v(static_cast<size_t>(n));
    if (type == ElemType::F16) {
      std::vector<uint16_t> h(static_cast<size_t>(n));
      be.download(h.data(), buf, size_t(n) * 2);
      for (size_t i = 0; i < h.size(); ++i) v[i] = fp16_to_float(h[i]);
      const std::vector<float> sum = g_->reduce(rank_, std::move(v), "all_reduce_sum (fp16)");
      for (size_t i = 0; i < h.size(); ++i) h[i] = float_to_fp16(sum[i]);  // rounded once
      be.upload(buf, h.data(), size_t(n) * 2);
    } else {
      be.download(v.data(), buf, size_t(n) * 4);
      const std::vector<float> sum = g_->reduce(rank_, std::move(v), "all_reduce_sum (fp32)");
      be.upload(buf, sum.data(), size_t(n) * 4);
    }
  }
  void all_reduce_max(Backend& be, Buffer& buf, int64_t n) override {
    if (n < 0 || size_t(n) * 4 > buf.bytes())
      fail("all_reduce_max: {} elements do not fit a buffer of {} bytes", n, buf.bytes());
    std::vector<float> v(static_cast<size_t>(n));
    be.download(v.data(), buf, size_t(n) * 4);
    const std::vector<float> mx = g_->reduce(rank_, std::move(v), "all_reduce_max", Op::Max);
    be.upload(buf, mx.data(), size_t(n) * 4);
  }
  void barrier() override { g_->reduce(rank_, {}, "barrier"); }
  void abort(const std::string& why) override {
    std::lock_guard lk(g_->m);
    g_->abort_locked(why);
  }

 private:
  std::shared_ptr<Group> g_;
  int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_inprocess_group(int size,
                                                                std::chrono::milliseconds timeout) {
  if (size < 1) fail("a communicator group needs at least one rank, got {}", size);
  auto g = std::make_shared<Group>();
  g->size = size, g->timeout = timeout;
  g->contrib.resize(size_t(size)), g->count.assign(size_t(size), 0), g->kind.resize(size_t(size));
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < size; ++r) out.push_back(std::make_unique<InProcessCommunicator>(g, r));
  return out;
}

std::vector<std::unique_ptr<Communicator>> make_communicators(
    const std::vector<Backend*>& backends) {
  if (backends.empty()) fail("make_communicators: no backends");
  const bool gpu = backends[0]->is_gpu();
  for (const Backend* b : backends)
    if (b->is_gpu() != gpu)
      fail("tensor parallelism needs every rank on the same kind of device ({} and {})",
           backends[0]->name(), b->name());
  if (!gpu) return make_inprocess_group(int(backends.size()));
#ifdef NESTEDFP_HAVE_NCCL
  return make_nccl_communicators(backends);
#else
  fail(
      "tensor parallelism on GPUs needs NCCL, and this nestedfp was built without it: run "
      "scripts/setup.sh on a machine with nvcc (it fetches the pinned nvidia-nccl-cu13 wheel into "
      ".deps/nccl) and configure the cuda preset again");
#endif
}

}  // namespace nestedfp::backend
