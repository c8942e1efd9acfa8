// NestedFP8 GEMM variants mma128x{8,16,32,64}: the streaming mma.sync kernels for few tokens
// (nested_mma_stream.cuh). Empty unless this build's kernel set contains their tier
// (nested_fp8_gemm_impl.hpp).
#include "backend/cuda/nested_fp8_gemm_impl.hpp"

#if NFP_KERNEL_BUILT(NFP8_TIER_mma128x8)
#include "backend/cuda/nested_mma_stream.cuh"

namespace nestedfp::cuda::fp8gemm {
namespace {
template <int kTokens>
void run_mma(const Problem& p) {
  const NestedWeight& w = *p.w;
  const mma_stream::Args a{w.upper, nullptr, w.k, p.xq, p.x_scale, p.Y, p.M, w.N, w.K};
  if (cudaError_t e = mma_stream::launch<mma_stream::Mode::Fp8, kTokens>(a, p.sm_count, p.stream);
      e != cudaSuccess)
    cuda_fail("nested_fp8_gemm: mma128x", kTokens, " launch failed: ", cudaGetErrorString(e));
}
}  // namespace

void run_mma128x8(const Problem& p) { run_mma<8>(p); }
void run_mma128x16(const Problem& p) { run_mma<16>(p); }
void run_mma128x32(const Problem& p) { run_mma<32>(p); }
void run_mma128x64(const Problem& p) { run_mma<64>(p); }
}  // namespace nestedfp::cuda::fp8gemm
#endif
