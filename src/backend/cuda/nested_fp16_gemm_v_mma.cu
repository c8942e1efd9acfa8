// NestedFP16 GEMM configurations mma128x{8,16,32,64}: the streaming mma.sync kernels for few tokens
// (nested_mma_stream.cuh). Empty unless this build's kernel set contains their tier
// (nested_fp16_gemm_kernels.hpp).
#include "backend/cuda/nested_fp16_gemm_kernels.hpp"

#if NFP_KERNEL_BUILT(NFP16_TIER_mma128x8)
#include <string>

#include "backend/cuda/nested_mma_stream.cuh"

namespace nestedfp::cuda::nfp16 {
int sm_count(int device);  // nested_fp16_gemm_host.cpp

namespace {
template <int kTokens>
void run_mma(const Problem& p) {
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess)
    raise(std::string("cudaGetDevice failed: ") + cudaGetErrorString(e));
  const mma_stream::Args a{
      p.upper, p.lower, p.k, reinterpret_cast<const uint8_t*>(p.X), nullptr, p.Y, p.M, p.N, p.K};
  if (cudaError_t e =
          mma_stream::launch<mma_stream::Mode::Fp16, kTokens>(a, sm_count(device), p.stream);
      e != cudaSuccess)
    raise("mma128x" + std::to_string(kTokens) + " launch failed: " + cudaGetErrorString(e));
}
}  // namespace

void run_mma128x8(const Problem& p) { run_mma<8>(p); }
void run_mma128x16(const Problem& p) { run_mma<16>(p); }
void run_mma128x32(const Problem& p) { run_mma<32>(p); }
void run_mma128x64(const Problem& p) { run_mma<64>(p); }
}  // namespace nestedfp::cuda::nfp16
#endif
