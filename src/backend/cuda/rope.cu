// Rotary position embedding in place on q and k (Hugging Face rotate_half layout), rounding as
// the cpu backend does: cos/sin rounded to fp16, each product rounded to fp16, the sum rounded
// to fp16 (HF multiplies fp16 tensors: q*cos and rotate_half(q)*sin are fp16 tensors).
#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"

namespace nestedfp::cuda {
namespace {

constexpr int kThreads = 128;

__device__ __forceinline__ float r16(float v) { return __half2float(__float2half_rn(v)); }

// One pair (x[i], x[i + half]) -> rotated pair.
__device__ __forceinline__ void rotate(__half& a, __half& b, float c, float s) {
  const float x1 = __half2float(a), x2 = __half2float(b);
  // Products of two fp16 values are exact in fp32; __float2half_rn keeps them from being fused
  // with the sum.
  a = __float2half_rn(r16(x1 * c) + r16(-x2 * s));
  b = __float2half_rn(r16(x2 * c) + r16(x1 * s));
}

// One block per token. The block first tabulates fp16-rounded cos/sin for its position, then
// rotates every head of q and k. kVec: 8 pairs per thread with 16-byte accesses (half % 8 == 0).
template <bool kVec>
__global__ void rope_kernel(__half* __restrict__ q, __half* __restrict__ k,
                            const int32_t* __restrict__ pos, const float* __restrict__ inv_freq,
                            int nq, int nkv, int head_dim) {
  extern __shared__ float cs[];  // cos [half] then sin [half]
  const int half = head_dim / 2;
  const int64_t m = blockIdx.x;
  const float p = float(pos[m]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float f = inv_freq[i] * p;  // fp32 angle, as HF computes it
    // cos/sin of the fp32 angle in double, rounded to float then fp16 (the cpu backend's steps).
    cs[i] = r16(float(cos(double(f))));
    cs[half + i] = r16(float(sin(double(f))));
  }
  __syncthreads();
  const int heads = nq + nkv;
  const int units = kVec ? half / 8 : half;  // per head
  for (int t = threadIdx.x; t < heads * units; t += blockDim.x) {
    const int h = t / units, u = t - h * units;
    __half* x = h < nq ? q + (m * nq + h) * head_dim : k + (m * nkv + (h - nq)) * head_dim;
    if constexpr (kVec) {
      union {
        uint4 v;
        __half e[8];
      } a, b;
      a.v = reinterpret_cast<const uint4*>(x)[u];
      b.v = reinterpret_cast<const uint4*>(x + half)[u];
#pragma unroll
      for (int j = 0; j < 8; ++j) rotate(a.e[j], b.e[j], cs[u * 8 + j], cs[half + u * 8 + j]);
      reinterpret_cast<uint4*>(x)[u] = a.v;
      reinterpret_cast<uint4*>(x + half)[u] = b.v;
    } else {
      rotate(x[u], x[half + u], cs[u], cs[half + u]);
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void rope_inplace(__half* q, __half* k, const int32_t* pos, const float* inv_freq, int M, int nq,
                  int nkv, int head_dim, cudaStream_t stream) {
  if (M < 0 || nq < 0 || nkv < 0)
    cuda_fail("rope_inplace: negative shape (M ", M, ", nq ", nq, ", nkv ", nkv, ")");
  if (head_dim <= 0 || head_dim % 2 || head_dim > 1024)
    cuda_fail("rope_inplace: head_dim ", head_dim, " must be even and in [2, 1024]");
  if (M == 0 || nq + nkv == 0) return;
  if (!pos || !inv_freq || (nq && !q) || (nkv && !k))
    cuda_fail("rope_inplace: null pointer (q, k, positions or inv_freq)");
  const int half = head_dim / 2;
  // A row's second half starts at half * 2 bytes: 16-byte aligned exactly when half % 8 == 0.
  const bool vec = half % 8 == 0 && (!nq || aligned16(q)) && (!nkv || aligned16(k));
  const size_t smem = size_t(head_dim) * sizeof(float);
  if (vec)
    rope_kernel<true>
        <<<unsigned(M), kThreads, smem, stream>>>(q, k, pos, inv_freq, nq, nkv, head_dim);
  else
    rope_kernel<false>
        <<<unsigned(M), kThreads, smem, stream>>>(q, k, pos, inv_freq, nq, nkv, head_dim);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
