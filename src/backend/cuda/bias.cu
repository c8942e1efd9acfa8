// Bias add after a GEMM (the GEMMs have no bias epilogue; only qwen2's q/k/v carry biases).
#include <cuda_fp16.h>

#include <algorithm>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"

namespace nestedfp::cuda {
namespace {

__global__ void add_bias_kernel(__half* __restrict__ y, const __half* __restrict__ bias,
                                int64_t total, int N) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x)
    y[t] = __float2half_rn(__half2float(y[t]) + __half2float(bias[t % N]));
}

}  // namespace

void add_bias_rows(__half* y, const __half* bias, int M, int N, cudaStream_t stream) {
  if (M < 0 || N <= 0) cuda_fail("add_bias_rows: bad shape ", M, " x ", N);
  if (M == 0) return;
  if (!y || !bias) cuda_fail("add_bias_rows: null pointer");
  const int64_t total = int64_t(M) * N;
  const unsigned grid = unsigned(std::clamp<int64_t>((total + 255) / 256, 1, 4096));
  add_bias_kernel<<<grid, 256, 0, stream>>>(y, bias, total, N);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
