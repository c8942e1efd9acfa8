// One NestedFP16 GEMM configuration per translation unit (see nested_fp16_gemm_impl.cuh).
// NESTEDFP_CUDA_KERNEL_SET=ci (the CI compile check) builds only configuration 0 of this family.
#ifndef NESTEDFP_CUDA_CI_KERNELS
#include "backend/cuda/nested_fp16_gemm_impl.cuh"
#else
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#endif

namespace nestedfp::cuda::nfp16 {
#ifndef NESTEDFP_CUDA_CI_KERNELS
void run_cfg7(const uint8_t* upper, const uint8_t* lower, const int8_t* k, const __half* X, __half* Y, int M,
               int N, int K, cudaStream_t stream) {
  run<Cfg7>(upper, lower, k, X, Y, M, N, K, stream);
}
bool built_cfg7() { return true; }
#else
[[noreturn]] void raise(const std::string& msg);
void run_cfg7(const uint8_t*, const uint8_t*, const int8_t*, const __half*, __half*, int, int, int, cudaStream_t) {
  raise("configuration 7 is not built in this compile-check build (NESTEDFP_CUDA_KERNEL_SET=ci)");
}
bool built_cfg7() { return false; }
#endif
}  // namespace nestedfp::cuda::nfp16
