// NestedFP8 GEMM variant sk128x16 (see nested_fp8_gemm.cuh): tile 128x16x128 (weight rows x tokens x K),
// cluster 1x1, KernelTmaWarpSpecializedCooperative, StreamKScheduler.
// NESTEDFP_CUDA_KERNEL_SET=ci (the CI compile check) builds only pp64x16 of this family.
#ifndef NESTEDFP_CUDA_CI_KERNELS
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm {
using Cfg_sk128x16 = Config<cute::Shape<cute::_128, cute::_16, cute::_128>, cute::Shape<cute::_1, cute::_1, cute::_1>,
                      cutlass::gemm::KernelTmaWarpSpecializedCooperative, cutlass::epilogue::TmaWarpSpecializedCooperative, cutlass::gemm::StreamKScheduler>;
void run_sk128x16(const Problem& p) { run<Cfg_sk128x16>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#else
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

namespace nestedfp::cuda::fp8gemm {
void run_sk128x16(const Problem&) {
  cuda_fail("nested_fp8_gemm: variant sk128x16 is not built in this compile-check build (NESTEDFP_CUDA_KERNEL_SET=ci)");
}
}  // namespace nestedfp::cuda::fp8gemm
#endif
