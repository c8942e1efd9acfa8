// NestedFP16 GEMM configurations mma128x<tokens>[s<stages>]: the streaming mma.sync kernels for few
// tokens (nested_mma_stream.cuh), one per NFP16_MMA row of gemm_configs.def. A row whose tier this
// build's kernel set leaves out gets an entry point that launches nothing (its table entry holds
// no kernel, so it is never called) and no kernel instantiation.
#include <string>

#include "backend/cuda/nested_fp16_gemm_kernels.hpp"
#include "backend/cuda/nested_mma_stream.cuh"

namespace nestedfp::cuda::nfp16 {
namespace {
template <int kTokens, int kStages, bool kBuilt>
void run_mma(const Problem& p) {
  if constexpr (kBuilt) {
    const std::string name = "mma128x" + std::to_string(kTokens) +
                             (kStages ? "s" + std::to_string(kStages) : std::string());
    if (p.M > mma_stream::max_tokens(kTokens))
      raise(name + ": M = " + std::to_string(p.M) + " is more than its " +
            std::to_string(mma_stream::max_tokens(kTokens)) +
            " tokens (65535 token tiles); use another configuration or the heuristic");
    int device = 0;
    if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess)
      raise(std::string("cudaGetDevice failed: ") + cudaGetErrorString(e));
    const mma_stream::Args a{
        p.upper, p.lower, p.k, reinterpret_cast<const uint8_t*>(p.X), nullptr, p.Y, p.M, p.N, p.K};
    if (cudaError_t e = mma_stream::launch<mma_stream::Mode::Fp16, kTokens, kStages>(
            a, sm_count(device), p.stream);
        e != cudaSuccess)
      raise(name + " launch failed: " + cudaGetErrorString(e));
  }
}
}  // namespace

#define NFP16_MMA(name, tier, tokens, stages)                      \
  void run_##name(const Problem& p) {                              \
    run_mma<tokens, stages, NFP_KERNEL_BUILT(NFP_TIER_##tier)>(p); \
  }
#include "backend/cuda/gemm_configs.def"
}  // namespace nestedfp::cuda::nfp16
