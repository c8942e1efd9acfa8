// NestedFP16 GEMM configuration t64x16x128_pingpong (type: nested_fp16_gemm_configs.cuh).
// Empty unless this build's kernel set contains its tier (nested_fp16_gemm_kernels.hpp).
#include "backend/cuda/nested_fp16_gemm_kernels.hpp"

#if NFP_KERNEL_BUILT(NFP16_TIER_t64x16x128_pingpong)
#include "backend/cuda/nested_fp16_gemm_configs.cuh"

namespace nestedfp::cuda::nfp16 {
void run_t64x16x128_pingpong(const Problem& p) { run<configs::t64x16x128_pingpong>(p); }
}  // namespace nestedfp::cuda::nfp16
#endif
