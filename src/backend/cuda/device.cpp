// Error reporting and device properties shared by the CUDA kernels and the benchmark.
#include <cuda_runtime.h>

#include "backend/cuda/kernels.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::cuda {

void throw_error(const std::string& msg) { throw Error(msg); }

void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  fail("CUDA error {} ({}) in `{}` at {}:{}", cudaGetErrorName(e), cudaGetErrorString(e), expr,
       file, line);
}

DeviceInfo device_info() {
  int dev = 0;
  NFP_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp p{};
  NFP_CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  DeviceInfo d;
  d.name = p.name;
  d.sms = p.multiProcessorCount;
  d.cc_major = p.major;
  d.cc_minor = p.minor;
  d.l2_bytes = p.l2CacheSize;
  d.mem_bytes = int64_t(p.totalGlobalMem);
  int drv = 0, rt = 0;
  NFP_CUDA_CHECK(cudaDriverGetVersion(&drv));
  NFP_CUDA_CHECK(cudaRuntimeGetVersion(&rt));
  auto ver = [](int v) { return fmt::format("{}.{}", v / 1000, (v % 1000) / 10); };
  d.driver = ver(drv);  // CUDA driver API version; the NVIDIA driver release comes from nvidia-smi
  d.runtime = ver(rt);
  return d;
}

}  // namespace nestedfp::cuda
