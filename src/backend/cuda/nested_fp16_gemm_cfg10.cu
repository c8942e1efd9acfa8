// One NestedFP16 GEMM configuration per translation unit (see nested_fp16_gemm_impl.cuh).
// Not the heuristic's choice on any measured shape, so built only with -DNFP16_EXTRA_CONFIGS
// (bench/nfp16/run_device.sh sets it); each instantiation costs minutes of nvcc on CI.
#ifdef NFP16_EXTRA_CONFIGS
#include "backend/cuda/nested_fp16_gemm_impl.cuh"
#else
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#endif

namespace nestedfp::cuda::nfp16 {
#ifdef NFP16_EXTRA_CONFIGS
void run_cfg10(const uint8_t* upper, const uint8_t* lower, const int8_t* k, const __half* X, __half* Y, int M,
               int N, int K, cudaStream_t stream) {
  run<Cfg10>(upper, lower, k, X, Y, M, N, K, stream);
}
bool built_cfg10() { return true; }
#else
[[noreturn]] void raise(const std::string& msg);
void run_cfg10(const uint8_t*, const uint8_t*, const int8_t*, const __half*, __half*, int, int, int, cudaStream_t) {
  raise("configuration 10 is not built (compile with -DNFP16_EXTRA_CONFIGS)");
}
bool built_cfg10() { return false; }
#endif
}  // namespace nestedfp::cuda::nfp16
