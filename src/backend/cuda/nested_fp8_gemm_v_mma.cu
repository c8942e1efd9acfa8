// NestedFP8 GEMM kernels mma128x<tokens>: the streaming mma.sync kernels for few tokens
// (nested_mma_stream.cuh), one per NFP8_MMA row of gemm_configs.def. A row whose tier this build's
// kernel set leaves out gets an entry point that launches nothing (its variants hold no kernel, so
// it is never called) and no kernel instantiation.
#include "backend/cuda/nested_fp8_gemm_impl.hpp"
#include "backend/cuda/nested_mma_stream.cuh"

namespace nestedfp::cuda::fp8gemm {
namespace {
template <int kTokens, bool kBuilt>
void run_mma(const Problem& p) {
  if constexpr (kBuilt) {
    if (p.M > mma_stream::max_tokens(kTokens))
      cuda_fail("nested_fp8_gemm: mma128x", kTokens, ": M = ", p.M, " is more than its ",
                mma_stream::max_tokens(kTokens),
                " tokens (65535 token tiles); use another variant or the heuristic");
    const NestedWeight& w = *p.w;
    const mma_stream::Args a{w.upper, nullptr, w.k, p.xq, p.x_scale, p.Y, p.M, w.N, w.K};
    if (cudaError_t e = mma_stream::launch<mma_stream::Mode::Fp8, kTokens>(a, p.sm_count, p.stream);
        e != cudaSuccess)
      cuda_fail("nested_fp8_gemm: mma128x", kTokens, " launch failed: ", cudaGetErrorString(e));
  }
}
}  // namespace

#define NFP8_MMA(name, tier, tokens) \
  void run_##name(const Problem& p) { run_mma<tokens, NFP_KERNEL_BUILT(NFP_TIER_##tier)>(p); }
#include "backend/cuda/gemm_configs.def"
}  // namespace nestedfp::cuda::fp8gemm
