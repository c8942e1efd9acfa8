#pragma once
// Internal plumbing between the NestedFP16 dispatcher (nested_fp16_gemm.cu) and its configuration
// translation units (nested_fp16_gemm_v_<config>.cu, one CUTLASS instantiation each; the tile,
// schedule and cluster types are in nested_fp16_gemm_configs.cuh). Not part of the kernel API.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "backend/cuda/gemm_kernel_set.hpp"

namespace nestedfp::cuda::nfp16 {

// Throws nestedfp::Error("nested_fp16_gemm: " + msg); defined in nested_fp16_gemm_host.cpp
// because nvcc cannot compile the fmt headers that nestedfp/error.hpp uses.
[[noreturn]] void raise(const std::string& msg);

// One GEMM call, already checked by the dispatcher (Y[M, N] = X[M, K] · Wᵀ, W as byte planes).
struct Problem {
  const uint8_t* upper;
  const uint8_t* lower;
  const int8_t* k;  // may be null: all k_r = 0
  const __half* X;
  __half* Y;
  int M, N, K;
  cudaStream_t stream;
};
using RunFn = void (*)(const Problem&);

// The configurations: each one's tier (gemm_kernel_set.hpp) and entry point, defined in its
// translation unit only in builds that contain that tier. The dispatcher's table lists them.
#define NFP16_TIER_t128x16x128_coop_sk NFP_TIER_CI
#define NFP16_TIER_t128x32x128_coop_sk NFP_TIER_DEFAULT
#define NFP16_TIER_t128x64x128_coop_sk NFP_TIER_DEFAULT
#define NFP16_TIER_t128x128x64_coop_sk NFP_TIER_DEFAULT
#define NFP16_TIER_t256x128x64_coop_sk NFP_TIER_DEFAULT
#define NFP16_TIER_t128x256x64_coop_sk NFP_TIER_DEFAULT
#define NFP16_TIER_t128x64x64_coop_sk NFP_TIER_ALL  // replaced by the K tile 128 version
#define NFP16_TIER_t128x128x128_coop_sk NFP_TIER_ALL
#define NFP16_TIER_t128x128x64_pingpong NFP_TIER_ALL
#define NFP16_TIER_t256x128x64_coop_c2x1_sk NFP_TIER_ALL
#define NFP16_TIER_t128x256x64_coop_c1x2_sk NFP_TIER_ALL
#define NFP16_TIER_t64x16x128_pingpong NFP_TIER_ALL  // candidates for `tune` (issue 12)
#define NFP16_TIER_t64x32x128_pingpong NFP_TIER_ALL
#define NFP16_TIER_t64x64x128_pingpong NFP_TIER_ALL
// The streaming mma.sync kernels: in every build (one translation unit, seconds of nvcc).
#define NFP16_TIER_mma128x8 NFP_TIER_CI
#define NFP16_TIER_mma128x16 NFP_TIER_CI
#define NFP16_TIER_mma128x32 NFP_TIER_CI
#define NFP16_TIER_mma128x64 NFP_TIER_CI

void run_t128x16x128_coop_sk(const Problem&);
void run_t128x32x128_coop_sk(const Problem&);
void run_t128x64x128_coop_sk(const Problem&);
void run_t128x128x64_coop_sk(const Problem&);
void run_t256x128x64_coop_sk(const Problem&);
void run_t128x256x64_coop_sk(const Problem&);
void run_t128x64x64_coop_sk(const Problem&);
void run_t128x128x128_coop_sk(const Problem&);
void run_t128x128x64_pingpong(const Problem&);
void run_t256x128x64_coop_c2x1_sk(const Problem&);
void run_t128x256x64_coop_c1x2_sk(const Problem&);
void run_t64x16x128_pingpong(const Problem&);
void run_t64x32x128_pingpong(const Problem&);
void run_t64x64x128_pingpong(const Problem&);
void run_mma128x8(const Problem&);
void run_mma128x16(const Problem&);
void run_mma128x32(const Problem&);
void run_mma128x64(const Problem&);

}  // namespace nestedfp::cuda::nfp16
