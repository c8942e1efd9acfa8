// NestedFP8 GEMM variant pp64x64 (see nested_fp8_gemm.cuh): tile 64x64x128 (weight rows x tokens x K),
// cluster 1x1, KernelTmaWarpSpecializedPingpong.
// NESTEDFP_CUDA_KERNEL_SET=ci (the CI compile check) builds only pp64x16 of this family.
#ifndef NESTEDFP_CUDA_CI_KERNELS
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm {
using Cfg_pp64x64 = Config<cute::Shape<cute::_64, cute::_64, cute::_128>, cute::Shape<cute::_1, cute::_1, cute::_1>,
                      cutlass::gemm::KernelTmaWarpSpecializedPingpong, cutlass::epilogue::TmaWarpSpecialized>;
void run_pp64x64(const Problem& p) { run<Cfg_pp64x64>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#else
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

namespace nestedfp::cuda::fp8gemm {
void run_pp64x64(const Problem&) {
  cuda_fail("nested_fp8_gemm: variant pp64x64 is not built in this compile-check build (NESTEDFP_CUDA_KERNEL_SET=ci)");
}
}  // namespace nestedfp::cuda::fp8gemm
#endif
