// Weights without files: normal random fp16 from a counter-based generator (element i depends on
// (seed, i) alone, so any grid gives the same tensor), and constant fills.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"

namespace nestedfp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

unsigned grid_for(int64_t work) {
  return unsigned(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

// splitmix64 finalizer: a bijection with full avalanche, so consecutive counters give
// independent-looking outputs.
__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Standard normal for element i: Box-Muller (cosine branch) on two 32-bit uniforms of one hash,
// in double so the result does not depend on fast-math approximations.
__device__ __forceinline__ float normal_at(uint64_t seed, uint64_t i) {
  const uint64_t r = mix64(mix64(seed) + i * 0x9E3779B97F4A7C15ull);
  const double u1 = (double(uint32_t(r >> 32)) + 1.0) * 0x1.0p-32;  // (0, 1]: log is finite
  const double u2 = double(uint32_t(r)) * 0x1.0p-32;                // [0, 1)
  return float(sqrt(-2.0 * log(u1)) * cospi(2.0 * u2));
}

__global__ void normal_kernel(__half* __restrict__ out, int64_t n, float std, uint64_t seed,
                              bool vec) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x,
                first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t body = 0;
  if (vec) {
    body = n / 8 * 8;
    for (int64_t v = first; v < n / 8; v += stride) {
      union {
        uint4 u;
        __half h[8];
      } o;
#pragma unroll
      for (int j = 0; j < 8; ++j)
        o.h[j] = __float2half_rn(std * normal_at(seed, uint64_t(v * 8 + j)));
      reinterpret_cast<uint4*>(out)[v] = o.u;
    }
  }
  for (int64_t i = body + first; i < n; i += stride)
    out[i] = __float2half_rn(std * normal_at(seed, uint64_t(i)));
}

__global__ void constant_kernel(__half* __restrict__ out, int64_t n, __half value, bool vec) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x,
                first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t body = 0;
  if (vec) {
    body = n / 8 * 8;
    union {
      uint4 u;
      __half h[8];
    } o;
#pragma unroll
    for (int j = 0; j < 8; ++j) o.h[j] = value;
    for (int64_t v = first; v < n / 8; v += stride) reinterpret_cast<uint4*>(out)[v] = o.u;
  }
  for (int64_t i = body + first; i < n; i += stride) out[i] = value;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void fill_normal(__half* out, int64_t n, float std, uint64_t seed, cudaStream_t stream) {
  if (n < 0) cuda_fail("fill_normal: negative length ", n);
  if (!std::isfinite(std) || std < 0.f)
    cuda_fail("fill_normal: std must be finite and >= 0 (got ", std, ")");
  if (n == 0) return;
  if (!out) cuda_fail("fill_normal: null output");
  const bool vec = aligned16(out);
  normal_kernel<<<grid_for(vec ? (n + 7) / 8 : n), kThreads, 0, stream>>>(out, n, std, seed, vec);
  NFP_CUDA_CHECK_LAUNCH();
}

void fill_constant(__half* out, int64_t n, float value, cudaStream_t stream) {
  if (n < 0) cuda_fail("fill_constant: negative length ", n);
  if (n == 0) return;
  if (!out) cuda_fail("fill_constant: null output");
  const bool vec = aligned16(out);
  constant_kernel<<<grid_for(vec ? (n + 7) / 8 : n), kThreads, 0, stream>>>(
      out, n, __float2half_rn(value), vec);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
