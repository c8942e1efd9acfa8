// NestedFP8 GEMM variant pp64x128 (see nested_fp8_gemm.cuh): tile 64x128x128 (weight rows x tokens
// x K), cluster 1x1, KernelTmaWarpSpecializedPingpong. Empty unless this build's kernel set
// contains its tier (nested_fp8_gemm_impl.hpp).
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

#if NFP_KERNEL_BUILT(NFP8_TIER_pp64x128)
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm {
using Cfg_pp64x128 =
    Config<cute::Shape<cute::_64, cute::_128, cute::_128>,
           cute::Shape<cute::_1, cute::_1, cute::_1>,
           cutlass::gemm::KernelTmaWarpSpecializedPingpong, cutlass::epilogue::TmaWarpSpecialized>;
void run_pp64x128(const Problem& p) { run<Cfg_pp64x128>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#endif
