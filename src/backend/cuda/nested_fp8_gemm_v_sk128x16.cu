// NestedFP8 GEMM variant sk128x16 (see nested_fp8_gemm.cuh): tile 128x16x128 (weight rows x tokens
// x K), cluster 1x1, KernelTmaWarpSpecializedCooperative, StreamKScheduler. Empty unless this
// build's kernel set contains its tier (nested_fp8_gemm_impl.hpp).
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

#if NFP_KERNEL_BUILT(NFP8_TIER_sk128x16)
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm {
using Cfg_sk128x16 =
    Config<cute::Shape<cute::_128, cute::_16, cute::_128>,
           cute::Shape<cute::_1, cute::_1, cute::_1>,
           cutlass::gemm::KernelTmaWarpSpecializedCooperative,
           cutlass::epilogue::TmaWarpSpecializedCooperative, cutlass::gemm::StreamKScheduler>;
void run_sk128x16(const Problem& p) { run<Cfg_sk128x16>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#endif
