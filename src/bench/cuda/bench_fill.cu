// Random test data for the kernel benchmark, generated on the device (weights of hundreds of MB).
#include <cuda_fp16.h>

#include "backend/cuda/kernels.hpp"
#include "bench/cuda/bench_kernels.hpp"

namespace nestedfp::cuda {
namespace {

__device__ __forceinline__ uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

__global__ void fill_kernel(__half* p, size_t n, uint64_t seed, float scale) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const uint64_t r = mix(seed ^ (i * 0x9E3779B97F4A7C15ULL));
    // Box-Muller from two 24-bit uniforms in (0, 1].
    const float u1 = (float((r >> 40) & 0xFFFFFF) + 1.f) * (1.f / 16777216.f);
    const float u2 = float((r >> 16) & 0xFFFFFF) * (1.f / 16777216.f);
    float z = sqrtf(-2.f * logf(u1)) * cospif(2.f * u2) * scale;
    if (__half2float(__float2half_rn(z)) == 0.f) z = scale;
    p[i] = __float2half_rn(z);
  }
}

}  // namespace

void fill_random_half(__half* p, size_t n, uint64_t seed, float scale, cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<<<1024, 256, 0, stream>>>(p, n, seed, scale);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
