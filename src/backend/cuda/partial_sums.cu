// Tensor-parallel partial sums of the row-parallel FP8 linears in fp32 (kernels.hpp, docs/DESIGN.md
// §3.14): the ranks add bare accumulators, then one pass applies the nested scales and rounds
// once, so the sum is one GPU's. cuBLASLt runs the upper plane as a plain E4M3 matrix.
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "backend/cuda/kernels.hpp"

namespace nestedfp::cuda {
namespace {

// y[m, n] = fp16((acc · 2^-(k[n]+8)) · x_scale[m]): the NestedFP8 epilogue's operations.
__global__ void finish_kernel(const float* __restrict__ acc, const int8_t* __restrict__ k,
                              const float* __restrict__ x_scale, __half* __restrict__ Y, int M,
                              int N) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(M) * N) return;
  const int n = int(i % N), m = int(i / N);
  Y[i] = __float2half_rn(__fmul_rn(__fmul_rn(acc[i], ldexpf(1.f, -(int(k[n]) + 8))), x_scale[m]));
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

constexpr int kThreads = 256;

}  // namespace

bool nested_fp8_gemm_acc(const NestedWeight& w, const uint8_t* xq, float* acc, int M,
                         cudaStream_t stream, bool use_cublaslt) {
  if (M < 1) return true;
  if (!w.upper || !xq || !acc)
    cuda_fail("nested_fp8_gemm_acc: a null pointer (weight plane, activations or accumulators)");
  if (use_cublaslt && cublaslt_fp8_gemm_f32(w.upper, w.N, w.K, xq, acc, M, stream)) return true;
  const int64_t warps = int64_t(M) * w.N;
  fp8_gemm_f32_kernel<<<unsigned((warps * 32 + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      w.upper, xq, acc, M, w.N, w.K);
  NFP_CUDA_CHECK_LAUNCH();
  return false;
}

void nested_fp8_finish(const float* acc, const int8_t* k, const float* x_scale, __half* Y, int M,
                       int N, cudaStream_t stream) {
  if (M < 1) return;
  if (!acc || !k || !x_scale || !Y)
    cuda_fail("nested_fp8_finish: a null pointer (accumulators, k, token scales or out)");
  const int64_t n = int64_t(M) * N;
  finish_kernel<<<unsigned((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(acc, k, x_scale,
                                                                                  Y, M, N);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
