// Per-token E4M3 quantization, standalone and fused into RMSNorm and SiLU·mul (docs/DESIGN.md
// §2.3). One block per token row; the row's FP16 values are kept in shared memory between the pass
// that produces them and the pass that quantizes them, and every kernel quantizes through the same
// device function, so fused and standalone results are bit-identical by construction.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "backend/cuda/kernels.hpp"

namespace nestedfp::cuda {
namespace {

constexpr int kMaxK = 65536;
constexpr float kE4M3Max = 448.f;

__device__ __forceinline__ float block_reduce(float v, float* red, bool is_max) {
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, u) : v + u;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < int(blockDim.x / 32) ? red[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) {
      const float u = __shfl_xor_sync(0xffffffffu, v, o);
      v = is_max ? fmaxf(v, u) : v + u;
    }
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  const float r = red[0];
  __syncthreads();
  return r;
}

__device__ __forceinline__ uint8_t to_e4m3(float x, float scale) {
  if (scale == 0.f) return 0;
  return __nv_cvt_float_to_fp8(__fdiv_rn(x, scale), __NV_SATFINITE, __NV_E4M3);
}

union H8 {
  uint4 u;
  __half h[8];
};

// q[0, K) = E4M3 of x[0, K) / scale by the block's threads, 8 elements per step where kVec,
// with the producers' index mapping below (a thread reads back what it wrote to shared memory).
template <bool kVec>
__device__ void quantize_with(const __half* x, int K, float scale, uint8_t* q) {
  if constexpr (kVec) {
    for (int v = threadIdx.x; v < K / 8; v += blockDim.x) {
      H8 t;
      t.u = reinterpret_cast<const uint4*>(x)[v];
      uint32_t lo = 0, hi = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) lo |= uint32_t(to_e4m3(__half2float(t.h[j]), scale)) << (8 * j);
#pragma unroll
      for (int j = 0; j < 4; ++j)
        hi |= uint32_t(to_e4m3(__half2float(t.h[4 + j]), scale)) << (8 * j);
      reinterpret_cast<uint2*>(q)[v] = make_uint2(lo, hi);
    }
  } else {
    for (int c = threadIdx.x; c < K; c += blockDim.x) q[c] = to_e4m3(__half2float(x[c]), scale);
  }
}

// Quantizes the row held in shared memory. Each thread reads back exactly the elements it wrote
// (same index mapping as the producers below), so only the reduction needs barriers.
template <bool kVec>
__device__ void quantize_row(const __half* s, int K, float local_amax, float* red, uint8_t* q,
                             float* scale_out) {
  const float amax = block_reduce(local_amax, red, true);
  // An all-zero row gets scale 0 and q = 0 (as the CPU backend); x / 0 is never evaluated.
  const float scale = __fdiv_rn(amax, kE4M3Max);
  if (threadIdx.x == 0) *scale_out = scale;
  quantize_with<kVec>(s, K, scale, q);
}

template <bool kVec>
__global__ void quant_kernel(const __half* __restrict__ X, int64_t ld, int K,
                             uint8_t* __restrict__ q, float* __restrict__ scale) {
  extern __shared__ uint4 smem_u4[];
  __shared__ float red[32];
  __half* s = reinterpret_cast<__half*>(smem_u4);
  const int64_t m = blockIdx.x;
  const __half* x = X + m * ld;
  float amax = 0.f;
  if constexpr (kVec) {
    for (int v = threadIdx.x; v < K / 8; v += blockDim.x) {
      H8 t;
      t.u = reinterpret_cast<const uint4*>(x)[v];
      reinterpret_cast<uint4*>(s)[v] = t.u;
#pragma unroll
      for (int j = 0; j < 8; ++j) amax = fmaxf(amax, fabsf(__half2float(t.h[j])));
    }
  } else {
    for (int c = threadIdx.x; c < K; c += blockDim.x) {
      s[c] = x[c];
      amax = fmaxf(amax, fabsf(__half2float(x[c])));
    }
  }
  quantize_row<kVec>(s, K, amax, red, q + m * K, scale + m);
}

// The halves of quant_kernel for a tensor-parallel rank's slice of each row (kernels.hpp).
template <bool kVec>
__global__ void token_scale_kernel(const __half* __restrict__ X, int64_t ld, int K,
                                   float* __restrict__ scale) {
  __shared__ float red[32];
  const __half* x = X + int64_t(blockIdx.x) * ld;
  float amax = 0.f;
  if constexpr (kVec) {
    for (int v = threadIdx.x; v < K / 8; v += blockDim.x) {
      H8 t;
      t.u = reinterpret_cast<const uint4*>(x)[v];
#pragma unroll
      for (int j = 0; j < 8; ++j) amax = fmaxf(amax, fabsf(__half2float(t.h[j])));
    }
  } else {
    for (int c = threadIdx.x; c < K; c += blockDim.x) amax = fmaxf(amax, fabsf(__half2float(x[c])));
  }
  amax = block_reduce(amax, red, true);
  if (threadIdx.x == 0) scale[blockIdx.x] = __fdiv_rn(amax, kE4M3Max);
}

template <bool kVec>
__global__ void quant_scaled_kernel(const __half* __restrict__ X, int64_t ld, int K,
                                    const float* __restrict__ scale, uint8_t* __restrict__ Q) {
  const int64_t m = blockIdx.x;
  quantize_with<kVec>(X + m * ld, K, scale[m], Q + m * K);
}

template <bool kVec>
__global__ void rmsnorm_kernel(const __half* __restrict__ X, int64_t ld,
                               const __half* __restrict__ w, float eps, int K,
                               __half* __restrict__ Y, uint8_t* __restrict__ q,
                               float* __restrict__ scale, __half* __restrict__ residual) {
  extern __shared__ uint4 smem_u4[];
  __shared__ float red[32];
  __half* s = reinterpret_cast<__half*>(smem_u4);
  const int64_t m = blockIdx.x;
  const __half* x = X + m * ld;
  __half* res = residual ? residual + m * ld : nullptr;
  // Pass 1: (x + residual) in FP16, sum of squares in FP32.
  float ss = 0.f;
  if constexpr (kVec) {
    for (int v = threadIdx.x; v < K / 8; v += blockDim.x) {
      H8 t;
      t.u = reinterpret_cast<const uint4*>(x)[v];
      if (res) {
        H8 r;
        r.u = reinterpret_cast<const uint4*>(res)[v];
#pragma unroll
        for (int j = 0; j < 8; ++j)
          t.h[j] = __float2half_rn(__half2float(t.h[j]) + __half2float(r.h[j]));
        reinterpret_cast<uint4*>(res)[v] = t.u;
      }
      reinterpret_cast<uint4*>(s)[v] = t.u;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float f = __half2float(t.h[j]);
        ss = fmaf(f, f, ss);
      }
    }
  } else {
    for (int c = threadIdx.x; c < K; c += blockDim.x) {
      __half t = x[c];
      if (res) {
        t = __float2half_rn(__half2float(t) + __half2float(res[c]));
        res[c] = t;
      }
      s[c] = t;
      const float f = __half2float(t);
      ss = fmaf(f, f, ss);
    }
  }
  const float total = block_reduce(ss, red, false);
  const float r = __fdiv_rn(1.f, __fsqrt_rn(__fadd_rn(__fdiv_rn(total, float(K)), eps)));
  // Pass 2: y = fp16(fp16(x·r)·w), kept in shared memory for the quantization.
  float amax = 0.f;
  if constexpr (kVec) {
    for (int v = threadIdx.x; v < K / 8; v += blockDim.x) {
      H8 t, g;
      t.u = reinterpret_cast<const uint4*>(s)[v];
      g.u = reinterpret_cast<const uint4*>(w)[v];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const __half n = __float2half_rn(__half2float(t.h[j]) * r);
        t.h[j] = __float2half_rn(__half2float(n) * __half2float(g.h[j]));
        amax = fmaxf(amax, fabsf(__half2float(t.h[j])));
      }
      reinterpret_cast<uint4*>(s)[v] = t.u;
      if (Y) reinterpret_cast<uint4*>(Y + m * K)[v] = t.u;
    }
  } else {
    for (int c = threadIdx.x; c < K; c += blockDim.x) {
      const __half n = __float2half_rn(__half2float(s[c]) * r);
      const __half y = __float2half_rn(__half2float(n) * __half2float(w[c]));
      s[c] = y;
      if (Y) Y[m * K + c] = y;
      amax = fmaxf(amax, fabsf(__half2float(y)));
    }
  }
  if (q) quantize_row<kVec>(s, K, amax, red, q + m * K, scale + m);
}

__device__ __forceinline__ __half silu_mul_one(__half g, __half u) {
  const float gf = __half2float(g);
  const __half a = __float2half_rn(__fdiv_rn(gf, 1.f + expf(-gf)));
  return __float2half_rn(__half2float(a) * __half2float(u));
}

template <bool kVec>
__global__ void silu_mul_kernel(const __half* __restrict__ G, const __half* __restrict__ U,
                                int64_t ld, int K, __half* __restrict__ Y, uint8_t* __restrict__ q,
                                float* __restrict__ scale) {
  extern __shared__ uint4 smem_u4[];
  __shared__ float red[32];
  __half* s = reinterpret_cast<__half*>(smem_u4);
  const int64_t m = blockIdx.x;
  const __half* g = G + m * ld;
  const __half* u = U + m * ld;
  float amax = 0.f;
  if constexpr (kVec) {
    for (int v = threadIdx.x; v < K / 8; v += blockDim.x) {
      H8 a, b;
      a.u = reinterpret_cast<const uint4*>(g)[v];
      b.u = reinterpret_cast<const uint4*>(u)[v];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        a.h[j] = silu_mul_one(a.h[j], b.h[j]);
        amax = fmaxf(amax, fabsf(__half2float(a.h[j])));
      }
      reinterpret_cast<uint4*>(s)[v] = a.u;
      if (Y) reinterpret_cast<uint4*>(Y + m * K)[v] = a.u;
    }
  } else {
    for (int c = threadIdx.x; c < K; c += blockDim.x) {
      const __half y = silu_mul_one(g[c], u[c]);
      s[c] = y;
      if (Y) Y[m * K + c] = y;
      amax = fmaxf(amax, fabsf(__half2float(y)));
    }
  }
  if (q) quantize_row<kVec>(s, K, amax, red, q + m * K, scale + m);
}

bool aligned16(const void* p) { return p == nullptr || (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

int threads_for(int K) {
  const int want = (K / 16 + 31) / 32 * 32;  // about two 8-wide vectors per thread
  return std::clamp(want, 64, 1024);
}

void check_row_args(const char* what, int M, int K, int64_t ld) {
  if (M < 0 || K <= 0 || K > kMaxK || ld < K)
    cuda_fail(what, ": unsupported shape M=", M, " K=", K, " ld=", ld, " (need 0 < K <= ", kMaxK,
              ", ld >= K)");
}

// Raises the dynamic shared-memory limit once per kernel (before any graph capture uses it).
template <typename Kernel>
void allow_big_smem(Kernel k) {
  NFP_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      int(kMaxK * sizeof(__half))));
}

// Once per kernel and device: the attribute is per device, and tensor-parallel ranks (threads of
// one process) drive several (bit d of `done`: device d).
template <typename Kernel>
void prepare(Kernel k, std::atomic<uint64_t>& done) {
  int device = 0;
  NFP_CUDA_CHECK(cudaGetDevice(&device));
  const uint64_t bit = device < 64 ? uint64_t(1) << device : 0;
  if (bit && (done.load() & bit)) return;
  allow_big_smem(k);
  done.fetch_or(bit);
}

}  // namespace

void quantize_e4m3_per_token(const __half* X, int64_t ld, int M, int K, uint8_t* q, float* scale,
                             cudaStream_t stream) {
  check_row_args("quantize_e4m3_per_token", M, K, ld);
  if (M == 0) return;
  const bool vec =
      K % 8 == 0 && ld % 8 == 0 && aligned16(X) && (reinterpret_cast<uintptr_t>(q) & 7) == 0;
  const size_t smem = size_t(K) * sizeof(__half);
  if (vec) {
    static std::atomic<uint64_t> done{0};
    prepare(quant_kernel<true>, done);
    quant_kernel<true><<<M, threads_for(K), smem, stream>>>(X, ld, K, q, scale);
  } else {
    static std::atomic<uint64_t> done{0};
    prepare(quant_kernel<false>, done);
    quant_kernel<false><<<M, threads_for(K), smem, stream>>>(X, ld, K, q, scale);
  }
  NFP_CUDA_CHECK_LAUNCH();
}

void token_scales_e4m3(const __half* X, int64_t ld, int M, int K, float* scale,
                       cudaStream_t stream) {
  check_row_args("token_scales_e4m3", M, K, ld);
  if (M == 0) return;
  if (K % 8 == 0 && ld % 8 == 0 && aligned16(X))
    token_scale_kernel<true><<<M, threads_for(K), 0, stream>>>(X, ld, K, scale);
  else
    token_scale_kernel<false><<<M, threads_for(K), 0, stream>>>(X, ld, K, scale);
  NFP_CUDA_CHECK_LAUNCH();
}

void quantize_e4m3_scaled(const __half* X, int64_t ld, int M, int K, const float* scale, uint8_t* q,
                          cudaStream_t stream) {
  check_row_args("quantize_e4m3_scaled", M, K, ld);
  if (M == 0) return;
  if (K % 8 == 0 && ld % 8 == 0 && aligned16(X) && (reinterpret_cast<uintptr_t>(q) & 7) == 0)
    quant_scaled_kernel<true><<<M, threads_for(K), 0, stream>>>(X, ld, K, scale, q);
  else
    quant_scaled_kernel<false><<<M, threads_for(K), 0, stream>>>(X, ld, K, scale, q);
  NFP_CUDA_CHECK_LAUNCH();
}

void rmsnorm(const __half* X, int64_t ld, const __half* weight, float eps, int M, int K, __half* Y,
             uint8_t* q, float* scale, cudaStream_t stream, __half* residual) {
  check_row_args("rmsnorm", M, K, ld);
  if (!Y && !q) cuda_fail("rmsnorm: neither an FP16 nor a quantized output was given");
  if (q && !scale) cuda_fail("rmsnorm: a quantized output needs a scale vector");
  if (M == 0) return;
  const bool vec = K % 8 == 0 && ld % 8 == 0 && aligned16(X) && aligned16(weight) && aligned16(Y) &&
                   aligned16(residual) && (reinterpret_cast<uintptr_t>(q) & 7) == 0;
  const size_t smem = size_t(K) * sizeof(__half);
  if (vec) {
    static std::atomic<uint64_t> done{0};
    prepare(rmsnorm_kernel<true>, done);
    rmsnorm_kernel<true>
        <<<M, threads_for(K), smem, stream>>>(X, ld, weight, eps, K, Y, q, scale, residual);
  } else {
    static std::atomic<uint64_t> done{0};
    prepare(rmsnorm_kernel<false>, done);
    rmsnorm_kernel<false>
        <<<M, threads_for(K), smem, stream>>>(X, ld, weight, eps, K, Y, q, scale, residual);
  }
  NFP_CUDA_CHECK_LAUNCH();
}

void silu_mul(const __half* gate, const __half* up, int64_t ld, int M, int I, __half* Y, uint8_t* q,
              float* scale, cudaStream_t stream) {
  check_row_args("silu_mul", M, I, ld);
  if (!Y && !q) cuda_fail("silu_mul: neither an FP16 nor a quantized output was given");
  if (q && !scale) cuda_fail("silu_mul: a quantized output needs a scale vector");
  if (M == 0) return;
  const bool vec = I % 8 == 0 && ld % 8 == 0 && aligned16(gate) && aligned16(up) && aligned16(Y) &&
                   (reinterpret_cast<uintptr_t>(q) & 7) == 0;
  const size_t smem = size_t(I) * sizeof(__half);
  if (vec) {
    static std::atomic<uint64_t> done{0};
    prepare(silu_mul_kernel<true>, done);
    silu_mul_kernel<true><<<M, threads_for(I), smem, stream>>>(gate, up, ld, I, Y, q, scale);
  } else {
    static std::atomic<uint64_t> done{0};
    prepare(silu_mul_kernel<false>, done);
    silu_mul_kernel<false><<<M, threads_for(I), smem, stream>>>(gate, up, ld, I, Y, q, scale);
  }
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
