// Nested-format split (model load) and merge (tests) on the GPU, bit-identical to the CPU codec in
// src/format (docs/DESIGN.md §1.2, §1.4). One block per weight row: the row's k needs its max
// first.
#include <cuda_fp16.h>

#include "backend/cuda/kernels.hpp"

namespace nestedfp::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ uint8_t split_upper(uint16_t h) {
  uint32_t mag = (h >> 7) & 0x7F;  // e3..e0 m9 m8 m7 (e4 is zero for representable values)
  const uint32_t rem = h & 0x7F;   // dropped bits m6..m0
  if (rem > 0x40 || (rem == 0x40 && (mag & 1))) ++mag;  // round to nearest even; may carry
  if (mag == 0x7F) mag = 0x7E;                          // never produce E4M3 NaN
  return uint8_t(((h >> 8) & 0x80) | mag);
}

// h · 2^k on FP16 bits, exactly; false when the result would lose a bit or overflow.
__device__ bool scale_pow2(uint16_t h, int k, uint16_t& out) {
  const uint32_t s = h & 0x8000u, a = h & 0x7FFFu;
  if (a >= 0x7C00u) return false;
  if (a == 0 || k == 0) {
    out = h;
    return true;
  }
  const int e = int(a >> 10);
  if (e != 0 && e + k >= 1 && e + k <= 30) {  // a normal value stays normal: move the exponent
    out = uint16_t(s | uint32_t(e + k) << 10 | (a & 0x3FFu));
    return true;
  }
  uint32_t M = e ? (0x400u | (a & 0x3FFu)) : (a & 0x3FFu);  // value = M · 2^(E)
  int E = (e ? e : 1) - 25 + k;
  while (M < 0x400u) {
    M <<= 1;
    --E;
  }
  const int be = E + 25;
  if (be >= 31) return false;
  if (be >= 1) {
    out = uint16_t(s | uint32_t(be) << 10 | (M & 0x3FFu));
    return true;
  }
  const int shift = 1 - be;  // subnormal result
  if (shift >= 11 || (M & ((1u << shift) - 1))) return false;
  out = uint16_t(s | (M >> shift));
  return true;
}

__device__ __forceinline__ uint32_t block_max_u32(uint32_t v, uint32_t* red) {
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x / 32) ? red[lane] : 0u;
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  const uint32_t r = red[0];
  __syncthreads();
  return r;
}

__global__ void split_rows_kernel(const uint16_t* __restrict__ W, int K, bool channel,
                                  uint8_t* __restrict__ upper, uint8_t* __restrict__ lower,
                                  int8_t* __restrict__ kout, unsigned int* bad_row) {
  __shared__ uint32_t red[32];
  __shared__ int s_k;
  const int64_t row = blockIdx.x;
  const uint16_t* w = W + row * K;
  // Max magnitude as bits (monotonic for finite values); Inf/NaN have the largest exponents.
  uint32_t mx = 0;
  for (int c = threadIdx.x; c < K; c += blockDim.x) mx = max(mx, uint32_t(w[c] & 0x7FFF));
  mx = block_max_u32(mx, red);
  bool bad = mx >= 0x7C00;  // Inf or NaN
  if (threadIdx.x == 0) {
    int k = 0;
    if (channel && !bad && mx != 0) {
      // Largest k with max · 2^k <= 1.75; powers of two scale floats exactly.
      float v = __half2float(__ushort_as_half(uint16_t(mx)));
      while (v * 2.f <= 1.75f) {
        v *= 2.f;
        ++k;
      }
      while (v > 1.75f) {
        v *= 0.5f;
        --k;
      }
    }
    s_k = k;
  }
  __syncthreads();
  int k = s_k;
  if (!channel && mx >= 0x3F80) bad = true;  // |w| >= 1.875 cannot be nested unscaled
  // Only a negative k can lose bits (subnormals scaled down). Like the CPU codec, a row that is
  // representable as is (max < 1.875) then falls back to k = 0; otherwise it cannot be nested.
  if (k < 0 && !bad) {
    uint32_t lossy = 0;
    for (int c = threadIdx.x; c < K; c += blockDim.x) {
      uint16_t o;
      if (!scale_pow2(w[c], k, o)) lossy = 1;
    }
    if (block_max_u32(lossy, red)) {
      if (mx < 0x3F80)
        k = 0;
      else
        bad = true;
    }
  }
  for (int c = threadIdx.x; c < K && !bad; c += blockDim.x) {
    uint16_t h = w[c];
    if (k != 0) scale_pow2(w[c], k, h);  // exact here: k > 0, or k < 0 checked above
    upper[row * K + c] = split_upper(h);
    lower[row * K + c] = uint8_t(h & 0xFF);
  }
  if (threadIdx.x == 0) {
    kout[row] = int8_t(k);
    if (bad) atomicMin(bad_row, unsigned(row));
  }
}

__global__ void merge_kernel(const uint8_t* __restrict__ upper, const uint8_t* __restrict__ lower,
                             uint16_t* __restrict__ out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint8_t u = upper[i], l = lower[i];
    const uint8_t m7 = l >> 7;
    const uint8_t hi = uint8_t((u & 0x80) | ((uint8_t(u - m7) >> 1) & 0x3F));
    out[i] = uint16_t(hi) << 8 | l;
  }
}

}  // namespace

SplitStatus split_weight(const __half* W, int N, int K, bool channel_scale, uint8_t* upper,
                         uint8_t* lower, int8_t* k, cudaStream_t stream) {
  if (N <= 0 || K <= 0) cuda_fail("split_weight: empty weight [", N, ", ", K, "]");
  unsigned int* d_bad = nullptr;
  NFP_CUDA_CHECK(cudaMallocAsync(&d_bad, sizeof(unsigned), stream));
  NFP_CUDA_CHECK(cudaMemsetAsync(d_bad, 0xFF, sizeof(unsigned), stream));
  split_rows_kernel<<<N, kThreads, 0, stream>>>(reinterpret_cast<const uint16_t*>(W), K,
                                                channel_scale, upper, lower, k, d_bad);
  NFP_CUDA_CHECK_LAUNCH();
  unsigned h_bad = 0;
  NFP_CUDA_CHECK(cudaMemcpyAsync(&h_bad, d_bad, sizeof(unsigned), cudaMemcpyDeviceToHost, stream));
  NFP_CUDA_CHECK(cudaFreeAsync(d_bad, stream));
  NFP_CUDA_CHECK(cudaStreamSynchronize(stream));
  SplitStatus st;
  if (h_bad != 0xFFFFFFFFu) st = {false, int64_t(h_bad)};
  return st;
}

void merge_planes(const uint8_t* upper, const uint8_t* lower, __half* out, int64_t n,
                  cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65535);
  merge_kernel<<<unsigned(blocks), 256, 0, stream>>>(upper, lower, reinterpret_cast<uint16_t*>(out),
                                                     n);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
