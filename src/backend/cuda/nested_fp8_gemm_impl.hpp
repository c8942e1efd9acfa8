#pragma once
// Internal plumbing between the NestedFP8 dispatcher (nested_fp8_gemm.cu) and its per-variant
// translation units (nested_fp8_gemm_v*.cu). Not part of the public kernel API.
#include <cuda_runtime.h>

#include <cstddef>

#include "backend/cuda/gemm_kernel_set.hpp"
#include "backend/cuda/kernels.hpp"

namespace nestedfp::cuda::fp8gemm {

struct Problem {
  const NestedWeight* w;
  const uint8_t* xq;
  const float* x_scale;
  __half* Y;
  int M;
  cudaStream_t stream;
  int device, sm_count;
  const char* variant_name;
  int splits;  // stream-K kernels only: > 1 forces split-K with this many K slices, else stream-K
  int promotion;  // promoted (non-"fa") mainloops: k-blocks between FP32 promotions (0: CUTLASS's
                  // 4)
};

// Grow-only device workspace (stream-K partials); throws if it must grow during graph capture.
void* workspace_for(size_t bytes, cudaStream_t stream);

// One entry point per kernel, with its tier (gemm_kernel_set.hpp): defined in
// nested_fp8_gemm_v_<kernel>.cu only in builds whose kernel set contains the tier. The variant
// table in nested_fp8_gemm.cu runs each kernel under one or more variant names. NFP_TIER_ALL:
// not the heuristic's choice on any measured shape (and each costs minutes of nvcc).
#define NFP8_TIER_pp64x16 NFP_TIER_CI
#define NFP8_TIER_pp64x32 NFP_TIER_DEFAULT
#define NFP8_TIER_pp64x64 NFP_TIER_DEFAULT
#define NFP8_TIER_pp64x128 NFP_TIER_ALL
#define NFP8_TIER_sk128x16 NFP_TIER_DEFAULT
#define NFP8_TIER_sk128x32 NFP_TIER_DEFAULT
#define NFP8_TIER_sk128x64 NFP_TIER_DEFAULT
#define NFP8_TIER_coop128x128 NFP_TIER_DEFAULT
#define NFP8_TIER_coop128x128c2 NFP_TIER_ALL
#define NFP8_TIER_coop128x128fa NFP_TIER_ALL
#define NFP8_TIER_coop128x256fa NFP_TIER_ALL
#define NFP8_TIER_coop128x256fac2 NFP_TIER_ALL
// The streaming mma.sync kernels: in every build (one translation unit, seconds of nvcc).
#define NFP8_TIER_mma128x8 NFP_TIER_CI
#define NFP8_TIER_mma128x16 NFP_TIER_CI
#define NFP8_TIER_mma128x32 NFP_TIER_CI
#define NFP8_TIER_mma128x64 NFP_TIER_CI

void run_pp64x16(const Problem&);
void run_pp64x32(const Problem&);
void run_pp64x64(const Problem&);
void run_pp64x128(const Problem&);
void run_sk128x16(const Problem&);
void run_sk128x32(const Problem&);
void run_sk128x64(const Problem&);
void run_coop128x128(const Problem&);
void run_coop128x128c2(const Problem&);
void run_coop128x128fa(const Problem&);
void run_coop128x256fa(const Problem&);
void run_coop128x256fac2(const Problem&);
void run_mma128x8(const Problem&);
void run_mma128x16(const Problem&);
void run_mma128x32(const Problem&);
void run_mma128x64(const Problem&);

}  // namespace nestedfp::cuda::fp8gemm
