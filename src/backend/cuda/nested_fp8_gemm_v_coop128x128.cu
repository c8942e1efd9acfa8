// NestedFP8 GEMM variant coop128x128 (see nested_fp8_gemm.cuh): tile 128x128x128 (weight rows x tokens x K),
// cluster 1x1, KernelTmaWarpSpecializedCooperative.
// NESTEDFP_CUDA_KERNEL_SET=ci (the CI compile check) builds only pp64x16 of this family.
#ifndef NESTEDFP_CUDA_CI_KERNELS
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm {
using Cfg_coop128x128 = Config<cute::Shape<cute::_128, cute::_128, cute::_128>, cute::Shape<cute::_1, cute::_1, cute::_1>,
                      cutlass::gemm::KernelTmaWarpSpecializedCooperative, cutlass::epilogue::TmaWarpSpecializedCooperative>;
void run_coop128x128(const Problem& p) { run<Cfg_coop128x128>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#else
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

namespace nestedfp::cuda::fp8gemm {
void run_coop128x128(const Problem&) {
  cuda_fail("nested_fp8_gemm: variant coop128x128 is not built in this compile-check build (NESTEDFP_CUDA_KERNEL_SET=ci)");
}
}  // namespace nestedfp::cuda::fp8gemm
#endif
