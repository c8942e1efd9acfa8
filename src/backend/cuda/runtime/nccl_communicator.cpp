// NCCL communicators for the cuda backends of a tensor-parallel model in one process
// (docs/DESIGN.md §3.14). Built only when CMake found the NCCL wheel (NESTEDFP_HAVE_NCCL).
#ifdef NESTEDFP_HAVE_NCCL

#include <cuda_runtime.h>
#include <fmt/ranges.h>
#include <nccl.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "nestedfp/communicator.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::backend {

cudaStream_t cuda_stream_of(Backend& be);     // cuda_backend.cpp
void* cuda_data_of(Buffer& b, size_t bytes);  // cuda_backend.cpp

namespace {

void check_nccl(ncclResult_t r, const char* what, ncclComm_t comm = nullptr) {
  if (r == ncclSuccess) return;
  const char* last = ncclGetLastError(comm);
  fail(
      "NCCL: {} failed: {}{}{} (NCCL_DEBUG=INFO in the environment shows why; check that every "
      "GPU of --tensor-parallel-size is visible and not used by another process)",
      what, ncclGetErrorString(r), last && *last ? ": " : "", last ? last : "");
}

// What the ranks share: the communicators (so that one rank's abort reaches all of them) and the
// first failure.
struct Shared {
  std::vector<ncclComm_t> comms;
  std::mutex m;
  std::atomic<bool> aborted{false};
  std::string why;
  std::vector<bool> gone;  // per rank: communicator aborted or destroyed
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};

  void abort(const std::string& reason) {
    std::lock_guard lk(m);
    if (aborted) return;
    why = reason;
    aborted = true;
    // Stops NCCL kernels that wait for a peer which will never come, so the streams drain.
    for (size_t r = 0; r < comms.size(); ++r)
      if (!gone[r]) ncclCommAbort(comms[r]), gone[r] = true;
  }
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::shared_ptr<Shared> s, int rank) : s_(std::move(s)), rank_(rank) {}
  ~NcclCommunicator() override {
    if (scratch_) cudaFree(scratch_), cudaStreamDestroy(stream_);
    std::lock_guard lk(s_->m);
    if (!s_->gone[size_t(rank_)]) ncclCommDestroy(s_->comms[size_t(rank_)]);
    s_->gone[size_t(rank_)] = true;
  }
  int rank() const override { return rank_; }
  int size() const override { return int(s_->comms.size()); }
  std::string name() const override { return "NCCL"; }

  void all_reduce_sum(Backend& be, Buffer& buf, int64_t n, ElemType type) override {
    check_alive();
    const size_t esize = type == ElemType::F16 ? 2 : 4;
    void* p = cuda_data_of(buf, size_t(n) * esize);
    check_nccl(ncclAllReduce(p, p, size_t(n), type == ElemType::F16 ? ncclFloat16 : ncclFloat32,
                             ncclSum, comm(), cuda_stream_of(be)),
               "ncclAllReduce", comm());
  }

  void all_reduce_max(Backend& be, Buffer& buf, int64_t n) override {
    check_alive();
    void* p = cuda_data_of(buf, size_t(n) * 4);
    check_nccl(ncclAllReduce(p, p, size_t(n), ncclFloat32, ncclMax, comm(), cuda_stream_of(be)),
               "ncclAllReduce (max)", comm());
  }

  // A one-element all-reduce on a private stream, waited for with a timeout (never forever).
  void barrier() override {
    check_alive();
    if (!scratch_) {
      if (cudaMalloc(&scratch_, 4) != cudaSuccess || cudaStreamCreate(&stream_) != cudaSuccess)
        fail("NCCL barrier: cannot allocate its scratch on rank {}", rank_);
      cudaMemset(scratch_, 0, 4);
    }
    check_nccl(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm(), stream_),
               "ncclAllReduce (barrier)", comm());
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) fail("NCCL barrier on rank {}: {}", rank_, cudaGetErrorString(e));
      check_alive();
      if (std::chrono::steady_clock::now() - t0 > s_->timeout) {
        s_->abort(fmt::format("rank {} waited {} ms at a barrier for the other ranks", rank_,
                              s_->timeout.count()));
        check_alive();
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  void abort(const std::string& why) override { s_->abort(why); }

 private:
  ncclComm_t comm() const { return s_->comms[size_t(rank_)]; }
  void check_alive() const {
    if (s_->aborted) {
      std::lock_guard lk(s_->m);
      fail("tensor-parallel rank {}: collective aborted: {}", rank_, s_->why);
    }
  }
  std::shared_ptr<Shared> s_;
  int rank_;
  void* scratch_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_nccl_communicators(
    const std::vector<Backend*>& backends) {
  // NVLink multicast (NVLS) stays off: the device machines must not use it, and NCCL reads the
  // variable when the communicators are created.
  if (setenv("NCCL_NVLS_ENABLE", "0", 1) != 0) fail("cannot set NCCL_NVLS_ENABLE=0");
  std::vector<int> devs;
  for (const Backend* b : backends) {
    const int d = b->device_ordinal();
    for (int e : devs)
      if (e == d)
        fail(
            "tensor parallelism needs one GPU per rank, but GPU {} appears twice (--gpu picks "
            "the first; ranks use GPUs first..first+N-1)",
            d);
    devs.push_back(d);
  }
  auto s = std::make_shared<Shared>();
  s->comms.resize(devs.size());
  s->gone.assign(devs.size(), false);
  int version = 0;
  ncclGetVersion(&version);
  // ncclCommInitAll creates every rank's communicator in one call from this thread: no rank can
  // be left waiting for a peer that failed to start.
  check_nccl(ncclCommInitAll(s->comms.data(), int(devs.size()), devs.data()), "ncclCommInitAll");
  spdlog::info("NCCL {} communicators on GPUs {} (NCCL_NVLS_ENABLE=0)", version,
               fmt::join(devs, ","));
  std::vector<std::unique_ptr<Communicator>> out;
  for (size_t r = 0; r < devs.size(); ++r)
    out.push_back(std::make_unique<NcclCommunicator>(s, int(r)));
  return out;
}

}  // namespace nestedfp::backend

#endif  // NESTEDFP_HAVE_NCCL
