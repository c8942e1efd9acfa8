#pragma once
// Internal plumbing between the NestedFP8 dispatcher (nested_fp8_gemm.cu) and its per-variant
// translation units (nested_fp8_gemm_v*.cu). Not part of the public kernel API.
#include <cuda_runtime.h>

#include <cstddef>

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
  int splits;     // stream-K kernels only: > 1 forces split-K with this many K slices, else stream-K
  int promotion;  // promoted (non-"fa") mainloops: k-blocks between FP32 promotions (0: CUTLASS's 4)
};

// Grow-only device workspace (stream-K partials); throws if it must grow during graph capture.
void* workspace_for(size_t bytes, cudaStream_t stream);

// One entry point per variant; the table in nested_fp8_gemm.cu lists them in this order.
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

}  // namespace nestedfp::cuda::fp8gemm
