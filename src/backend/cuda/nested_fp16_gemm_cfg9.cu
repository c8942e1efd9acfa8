// One NestedFP16 GEMM configuration per translation unit (see nested_fp16_gemm_impl.cuh).
#include "backend/cuda/nested_fp16_gemm_impl.cuh"

namespace nestedfp::cuda::nfp16 {
void run_cfg9(const uint8_t* upper, const uint8_t* lower, const int8_t* k, const __half* X, __half* Y, int M,
               int N, int K, cudaStream_t stream) {
  run<Cfg9>(upper, lower, k, X, Y, M, N, K, stream);
}
bool built_cfg9() { return true; }
}  // namespace nestedfp::cuda::nfp16
