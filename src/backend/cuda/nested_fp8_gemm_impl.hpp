#pragma once
// Internal plumbing between the NestedFP8 dispatcher (nested_fp8_gemm.cu) and its per-variant
// translation units (nested_fp8_gemm_v_<kernel>.cu, generated from gemm_configs.def). Not part of
// the public kernel API.
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
  int decomposition;  // stream-K kernels only: 0 as above, 1 data-parallel, 2 split-K, 3 stream-K
  int promotion;  // promoted (non-"fa") mainloops: k-blocks between FP32 promotions (0: CUTLASS's
                  // 4)
  int raster = 0;   // tile order: 0 CUTLASS's heuristic, 1 along the weight rows, 2 along tokens
  int swizzle = 1;  // CUTLASS's max_swizzle_size
};

// Grow-only device workspace (stream-K partials); throws if it must grow during graph capture.
void* workspace_for(size_t bytes, cudaStream_t stream);

// One entry point per kernel row of gemm_configs.def (NFP8_CUTLASS, NFP8_MMA), defined in its
// translation unit only in builds whose kernel set contains its tier (the generated
// nested_fp8_gemm_v_<kernel>.cu; the mma ones in nested_fp8_gemm_v_mma.cu). The variant table in
// nested_fp8_gemm.cu runs each kernel under one or more variant names (NFP8_VARIANT rows).
// A generated configuration TU (NFP_GEMM_ONE_ROW) defines only its own entry point and reads no
// other row, so that adding a row recompiles one TU.
#ifndef NFP_GEMM_ONE_ROW
#define NFP8_CUTLASS(name, ...) void run_##name(const Problem&);
#define NFP8_MMA(name, ...) void run_##name(const Problem&);
#include "backend/cuda/gemm_configs.def"
#endif

}  // namespace nestedfp::cuda::fp8gemm
