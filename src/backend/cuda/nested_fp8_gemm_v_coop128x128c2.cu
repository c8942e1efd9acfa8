// NestedFP8 GEMM variant coop128x128c2 (see nested_fp8_gemm.cuh): tile 128x128x128 (weight rows x
// tokens x K), cluster 2x1, KernelTmaWarpSpecializedCooperative. Empty unless this build's kernel
// set contains its tier (nested_fp8_gemm_impl.hpp).
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

#if NFP_KERNEL_BUILT(NFP8_TIER_coop128x128c2)
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm {
using Cfg_coop128x128c2 = Config<cute::Shape<cute::_128, cute::_128, cute::_128>,
                                 cute::Shape<cute::_2, cute::_1, cute::_1>,
                                 cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                                 cutlass::epilogue::TmaWarpSpecializedCooperative>;
void run_coop128x128c2(const Problem& p) { run<Cfg_coop128x128c2>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#endif
