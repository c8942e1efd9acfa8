// NestedFP8 GEMM variant coop128x256fa (see nested_fp8_gemm.cuh): tile 128x256x128 (weight rows x tokens x K),
// cluster 1x1, KernelTmaWarpSpecializedCooperativeFP8FastAccum.
// Not chosen by the heuristic on any measured shape: built only with NESTEDFP_CUDA_KERNEL_SET=all
// (scripts/gpu-check.sh sets it for `bench kernels --all-variants`); each costs minutes of nvcc.
#ifdef NFP8_EXTRA_VARIANTS
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm {
using Cfg_coop128x256fa = Config<cute::Shape<cute::_128, cute::_256, cute::_128>, cute::Shape<cute::_1, cute::_1, cute::_1>,
                      cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum, cutlass::epilogue::TmaWarpSpecializedCooperative>;
void run_coop128x256fa(const Problem& p) { run<Cfg_coop128x256fa>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#else
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

namespace nestedfp::cuda::fp8gemm {
void run_coop128x256fa(const Problem&) {
  cuda_fail("nested_fp8_gemm: variant coop128x256fa is not built (configure with -DNESTEDFP_CUDA_KERNEL_SET=all)");
}
}  // namespace nestedfp::cuda::fp8gemm
#endif
