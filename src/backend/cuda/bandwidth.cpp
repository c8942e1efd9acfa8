// The device-to-device copy bandwidth: the floor any memory-bound kernel is compared with.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::cuda {
namespace {

// Frees what it holds even when a CUDA call throws midway.
struct Scoped {
  void* a = nullptr;
  void* b = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  ~Scoped() {
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (stream) cudaStreamDestroy(stream);
    if (a) cudaFree(a);
    if (b) cudaFree(b);
  }
};

}  // namespace

double measure_copy_bandwidth(size_t bytes) {
  constexpr int kWarmup = 2, kRuns = 9;
  if (bytes == 0) fail("measure_copy_bandwidth: bytes must be > 0");
  Scoped s;
  if (cudaMalloc(&s.a, bytes) != cudaSuccess || cudaMalloc(&s.b, bytes) != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky: clear it and report
    fail("measure_copy_bandwidth: cannot allocate 2 x {} bytes on the device; pass a smaller size",
         bytes);
  }
  NFP_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  NFP_CUDA_CHECK(cudaEventCreate(&s.start));
  NFP_CUDA_CHECK(cudaEventCreate(&s.stop));
  NFP_CUDA_CHECK(cudaMemsetAsync(s.a, 0, bytes, s.stream));
  for (int i = 0; i < kWarmup; ++i)
    NFP_CUDA_CHECK(cudaMemcpyAsync(s.b, s.a, bytes, cudaMemcpyDeviceToDevice, s.stream));
  std::vector<float> ms;
  for (int i = 0; i < kRuns; ++i) {
    NFP_CUDA_CHECK(cudaEventRecord(s.start, s.stream));
    NFP_CUDA_CHECK(cudaMemcpyAsync(s.b, s.a, bytes, cudaMemcpyDeviceToDevice, s.stream));
    NFP_CUDA_CHECK(cudaEventRecord(s.stop, s.stream));
    NFP_CUDA_CHECK(cudaEventSynchronize(s.stop));
    float t = 0.f;
    NFP_CUDA_CHECK(cudaEventElapsedTime(&t, s.start, s.stop));
    ms.push_back(t);
  }
  std::nth_element(ms.begin(), ms.begin() + kRuns / 2, ms.end());
  const double sec = double(ms[kRuns / 2]) * 1e-3;
  if (!(sec > 0))
    fail("measure_copy_bandwidth: the timed copy of {} bytes took no measurable time", bytes);
  return 2.0 * double(bytes) / sec;  // each copy reads and writes `bytes`
}

}  // namespace nestedfp::cuda
