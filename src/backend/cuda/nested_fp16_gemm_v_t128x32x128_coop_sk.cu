// NestedFP16 GEMM configuration t128x32x128_coop_sk (type: nested_fp16_gemm_configs.cuh).
// Empty unless this build's kernel set contains its tier (nested_fp16_gemm_kernels.hpp).
#include "backend/cuda/nested_fp16_gemm_kernels.hpp"

#if NFP_KERNEL_BUILT(NFP16_TIER_t128x32x128_coop_sk)
#include "backend/cuda/nested_fp16_gemm_configs.cuh"

namespace nestedfp::cuda::nfp16 {
void run_t128x32x128_coop_sk(const Problem& p) { run<configs::t128x32x128_coop_sk>(p); }
}  // namespace nestedfp::cuda::nfp16
#endif
