// NestedFP8 GEMM variant pp64x128 (see nested_fp8_gemm.cuh): tile 64x128x128 (weight rows x tokens x K),
// cluster 1x1, KernelTmaWarpSpecializedPingpong.
// Not chosen by the heuristic on any measured shape: built only with NESTEDFP_CUDA_KERNEL_SET=all
// (scripts/gpu-check.sh sets it for `bench kernels --all-variants`); each costs minutes of nvcc.
#ifdef NFP8_EXTRA_VARIANTS
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm {
using Cfg_pp64x128 = Config<cute::Shape<cute::_64, cute::_128, cute::_128>, cute::Shape<cute::_1, cute::_1, cute::_1>,
                      cutlass::gemm::KernelTmaWarpSpecializedPingpong, cutlass::epilogue::TmaWarpSpecialized>;
void run_pp64x128(const Problem& p) { run<Cfg_pp64x128>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#else
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

namespace nestedfp::cuda::fp8gemm {
void run_pp64x128(const Problem&) {
  cuda_fail("nested_fp8_gemm: variant pp64x128 is not built (configure with -DNESTEDFP_CUDA_KERNEL_SET=all)");
}
}  // namespace nestedfp::cuda::fp8gemm
#endif
