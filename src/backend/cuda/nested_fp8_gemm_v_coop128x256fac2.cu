// NestedFP8 GEMM variant coop128x256fac2 (see nested_fp8_gemm.cuh): tile 128x256x128 (weight rows x
// tokens x K), cluster 2x1, KernelTmaWarpSpecializedCooperativeFP8FastAccum. Empty unless this
// build's kernel set contains its tier (nested_fp8_gemm_impl.hpp).
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

#if NFP_KERNEL_BUILT(NFP8_TIER_coop128x256fac2)
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm {
using Cfg_coop128x256fac2 = Config<cute::Shape<cute::_128, cute::_256, cute::_128>,
                                   cute::Shape<cute::_2, cute::_1, cute::_1>,
                                   cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum,
                                   cutlass::epilogue::TmaWarpSpecializedCooperative>;
void run_coop128x256fac2(const Problem& p) { run<Cfg_coop128x256fac2>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#endif
