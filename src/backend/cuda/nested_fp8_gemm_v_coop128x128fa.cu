// NestedFP8 GEMM variant coop128x128fa (see nested_fp8_gemm.cuh): tile 128x128x128 (weight rows x
// tokens x K), cluster 1x1, KernelTmaWarpSpecializedCooperativeFP8FastAccum. Empty unless this
// build's kernel set contains its tier (nested_fp8_gemm_impl.hpp).
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

#if NFP_KERNEL_BUILT(NFP8_TIER_coop128x128fa)
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm {
using Cfg_coop128x128fa = Config<cute::Shape<cute::_128, cute::_128, cute::_128>,
                                 cute::Shape<cute::_1, cute::_1, cute::_1>,
                                 cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum,
                                 cutlass::epilogue::TmaWarpSpecializedCooperative>;
void run_coop128x128fa(const Problem& p) { run<Cfg_coop128x128fa>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#endif
