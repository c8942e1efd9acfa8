#pragma once
// What `bench kernels` and `tune` share to time GEMMs (docs/MEASURING.md §5.1): device buffers,
// cold weights (copies that exceed L2), the interleaved CUDA-graph timer, an output comparison,
// and the run's provenance (driver, commit, date).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/cuda/kernels.hpp"

namespace nestedfp::cuda {

template <typename T>
struct Dev {
  T* p = nullptr;
  explicit Dev(size_t n) { NFP_CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T))); }
  ~Dev() {
    if (p) cudaFree(p);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

// One random weight [N, K] (N(0, 0.02), deterministic per shape) as nested planes with per-row
// channel scales, copied until the FP8 planes are >= 3x L2 (and >= 4 copies), so that a graph
// cycling over the copies reads cold weights, as in serving. with_fp16: FP16 copies too (cuBLAS).
struct ColdWeights {
  ColdWeights(int N, int K, int64_t l2_bytes, bool with_fp16, cudaStream_t stream);
  static int copies_for(int N, int K, int64_t l2_bytes);
  NestedWeight weight(int c) const {
    const size_t nk = size_t(N) * K;
    return {upper.p + c * nk, lower.p + c * nk, k.p + size_t(c) * N, N, K};
  }
  const __half* fp16(int c) const { return w16.p + size_t(c) * N * K; }
  int N, K, copies;
  Dev<__half> w16;  // copies * N * K with FP16 copies, else N * K (the split's source)
  Dev<uint8_t> upper, lower;
  Dev<int8_t> k;
  std::vector<int8_t> host_k;  // row exponents of the weight
};

// Times kernels, each captured in a CUDA graph of >= 8 launches cycling over `copies` weight
// copies (f(c) enqueues one launch on copy c). The kernels of one point are measured interleaved,
// in rounds in a new random order each (clock and power drift, and the state a previous kernel
// leaves, hit them alike); the result is the median over all timed replays / launches per graph.
class GraphTimer {
 public:
  GraphTimer(cudaStream_t s, double target_ms);
  ~GraphTimer();
  std::vector<double> median_us(const std::vector<std::function<void(int)>>& fs, int copies);

 private:
  static constexpr int kMaxReps = 40;
  std::vector<float> replay(cudaGraphExec_t exec, int reps);
  cudaStream_t s_;
  double target_ms_;
  std::vector<cudaEvent_t> ev_;
};

// Random FP16 values N(0,1)·scale (hash-based, deterministic per seed), never exactly zero.
void fill_random_half(__half* p, size_t n, uint64_t seed, float scale, cudaStream_t stream);

// The weight-read floor of `bench kernels` at M <= 64: reads the na bytes at a and the nb bytes at
// b (b may be null) once, 16 bytes per load, from every SM, and does nothing else. Sizes are
// multiples of 16 and pointers 16-byte aligned (weight planes: K % 16 == 0, cudaMalloc).
void stream_read(const uint8_t* a, size_t na, const uint8_t* b, size_t nb, int sms,
                 cudaStream_t stream);

// ||y - ref|| / ||ref|| over n values (Frobenius, in double on the device); +inf when y holds a
// NaN or an infinity. Synchronizes the stream.
double relative_error(const __half* y, const __half* ref, size_t n, cudaStream_t stream);

// Provenance written into results: NVIDIA driver (nvidia-smi), commit ($NESTEDFP_GIT_COMMIT, else
// git, else "unknown"), UTC date YYYY-MM-DD.
struct RunInfo {
  std::string driver, commit, date;
};
RunInfo run_info();

}  // namespace nestedfp::cuda
