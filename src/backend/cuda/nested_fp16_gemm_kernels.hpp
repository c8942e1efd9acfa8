#pragma once
// Internal plumbing between the NestedFP16 dispatcher (nested_fp16_gemm.cu) and its configuration
// translation units (nested_fp16_gemm_v_<config>.cu, one CUTLASS instantiation each, generated
// from gemm_configs.def; the types are in nested_fp16_gemm_configs.cuh). Not part of the kernel
// API.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "backend/cuda/gemm_kernel_set.hpp"

namespace nestedfp::cuda::nfp16 {

// Throws nestedfp::Error("nested_fp16_gemm: " + msg); defined in nested_fp16_gemm_host.cpp
// because nvcc cannot compile the fmt headers that nestedfp/error.hpp uses.
[[noreturn]] void raise(const std::string& msg);

// The SM count of a device, cached (nested_fp16_gemm_host.cpp).
int sm_count(int device);

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

// One entry point per configuration of gemm_configs.def, defined in its translation unit only in
// builds that contain its tier (the generated nested_fp16_gemm_v_<name>.cu; the mma ones in
// nested_fp16_gemm_v_mma.cu). The dispatcher's table (nested_fp16_gemm.cu) lists them.
// A generated configuration TU (NFP_GEMM_ONE_ROW) defines only its own entry point and reads no
// other row, so that adding a row recompiles one TU.
#ifndef NFP_GEMM_ONE_ROW
#define NFP16_CUTLASS(name, ...) void run_##name(const Problem&);
#define NFP16_MMA(name, ...) void run_##name(const Problem&);
#include "backend/cuda/gemm_configs.def"
#endif

}  // namespace nestedfp::cuda::nfp16
