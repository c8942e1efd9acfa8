#pragma once
// Collectives between the ranks of a tensor-parallel model (docs/DESIGN.md §3.14): one rank per
// backend, all in one process, one thread per rank. Every rank calls the same collectives in the
// same order. The cpu backend uses an in-process group (threads, exact sums in rank order); the
// cuda backend uses NCCL (built only when the NCCL wheel was found, see README "Dependencies").
//
// Failure rule: a collective never waits forever. abort() (any thread) or a rank's timeout makes
// every rank's pending and later collectives throw Error with the first reason given, so a rank
// that fails mid-step brings the others down with its message instead of leaving them blocked.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nestedfp/backend.hpp"

namespace nestedfp::backend {

enum class ElemType { F16, F32 };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // buf[0, n) = the element-wise sum of every rank's buf[0, n), in place. `be` is this rank's
  // backend: on a device the reduction is queued on its stream after the ops queued before.
  virtual void all_reduce_sum(Backend& be, Buffer& buf, int64_t n, ElemType type) = 0;
  // buf[0, n) (fp32) = the element-wise max over the ranks, in place (exact: every rank gets the
  // same bits). The per-token FP8 scales of a row-parallel input shared by its slices.
  virtual void all_reduce_max(Backend& be, Buffer& buf, int64_t n) = 0;
  // Returns when every rank has called it.
  virtual void barrier() = 0;
  // Makes every rank's collectives fail with `why` (the first reason wins). Thread-safe.
  virtual void abort(const std::string& why) = 0;
  virtual std::string name() const = 0;
};

// `size` communicators over host memory for ranks 0..size-1 of one process. all_reduce_sum sums
// in fp32 in rank order (rank 0 + rank 1 + ...) and rounds once to the buffer's type, so every
// rank gets the same bits and the result does not depend on thread timing. A rank waiting longer
// than `timeout` for the others aborts the group.
std::vector<std::unique_ptr<Communicator>> make_inprocess_group(
    int size, std::chrono::milliseconds timeout = std::chrono::minutes(5));

// Communicators for one rank per backend (rank i = backends[i]): NCCL when the backends are GPUs
// (sets NCCL_NVLS_ENABLE=0 first: no NVLink multicast), else the in-process group. Throws Error
// when the backends mix devices, or when GPUs need NCCL in a build without it.
std::vector<std::unique_ptr<Communicator>> make_communicators(
    const std::vector<Backend*>& backends);

}  // namespace nestedfp::backend
