// Tensor-parallel partial sums of the row-parallel FP8 linears in fp32 (kernels.hpp, docs/DESIGN.md
// §3.14): the ranks add unrounded values and round once, so the sum is one GPU's. cuBLASLt runs
// the upper plane as a plain E4M3 matrix; the nested scales follow in a second pass.
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include "backend/cuda/kernels.hpp"

namespace nestedfp::cuda {
namespace {

// y[m, n] = (acc · 2^-(k[n]+8)) · x_scale[m]: the NestedFP8 epilogue's operations, without its
// rounding to fp16.
__global__ void scale_partials_kernel(float* __restrict__ Y, int M, int N,
                                      const int8_t* __restrict__ k,
                                      const float* __restrict__ x_scale) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(M) * N) return;
  const int n = int(i % N), m = int(i / N);
  Y[i] = __fmul_rn(__fmul_rn(Y[i], ldexpf(1.f, -(int(k[n]) + 8))), x_scale[m]);
}

__device__ __forceinline__ float e4m3(uint8_t b) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(b, __NV_E4M3)));
}

// The fallback GEMM: one warp per output, lanes over K (only where cuBLASLt has no fp32 kernel).
__global__ void fp8_gemm_f32_kernel(const uint8_t* __restrict__ W, const uint8_t* __restrict__ X,
                                    float* __restrict__ Y, int M, int N, int K) {
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (warp >= int64_t(M) * N) return;
  const int n = int(warp % N), m = int(warp / N);
  float acc = 0.f;
  for (int c = lane; c < K; c += 32) {
    acc = fmaf(e4m3(W[int64_t(n) * K + c]), e4m3(X[int64_t(m) * K + c]), acc);
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) Y[int64_t(m) * N + n] = acc;
}

__global__ void round_kernel(const float* __restrict__ src, __half* __restrict__ dst, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = __float2half_rn(src[i]);
}

constexpr int kThreads = 256;

}  // namespace

bool nested_fp8_gemm_f32(const NestedWeight& w, const uint8_t* xq, const float* x_scale, float* Y,
                         int M, cudaStream_t stream) {
  if (M < 1) return true;
  if (!w.upper || !w.k || !xq || !x_scale || !Y)
    cuda_fail("nested_fp8_gemm_f32: a null pointer (weight plane, k, activations, scales or out)");
  const bool lt = cublaslt_fp8_gemm_f32(w.upper, w.N, w.K, xq, Y, M, stream);
  if (!lt) {
    const int64_t warps = int64_t(M) * w.N;
    fp8_gemm_f32_kernel<<<unsigned((warps * 32 + kThreads - 1) / kThreads), kThreads, 0,
                          stream>>>(w.upper, xq, Y, M, w.N, w.K);
    NFP_CUDA_CHECK_LAUNCH();
  }
  const int64_t n = int64_t(M) * w.N;
  scale_partials_kernel<<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      Y, M, w.N, w.k, x_scale);
  NFP_CUDA_CHECK_LAUNCH();
  return lt;
}

void round_f32_to_f16(const float* src, __half* dst, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  round_kernel<<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(src, dst, n);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
