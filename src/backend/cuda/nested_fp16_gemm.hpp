#pragma once
// NestedFP16 GEMM on Hopper (KERNELS.md §2): Y[M,N] = X[M,K] · Wᵀ with W[N,K] held as the nested
// byte planes upper/lower [N,K] and per-row exponents k[N] (planes store W · 2^k_r).
// Computed as Yᵀ = W·Xᵀ ("swap AB"): the weight is the wgmma A operand, so a small token count
// M falls into the wgmma N tile. FP32 accumulation; the epilogue multiplies row r by 2^-k_r.
//
// Requirements (checked; a violation throws nestedfp::Error naming the problem):
//   M >= 1, N >= 1, K >= 16 and K % 16 == 0  (TMA: the byte planes' rows must be 16-byte strided),
//   N % 8 == 0                                (TMA store of Y: rows of N halves, 16-byte strided),
//   upper, lower, X, Y 16-byte aligned; k may be null (all k_r = 0).
// N and K need not be multiples of any tile; M is arbitrary.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nestedfp::cuda {

// Kernel configurations (the NFP16_* rows of gemm_configs.def: tile, schedule, cluster) are
// addressed by their index in the variant table: 0 .. kNfp16_NumConfigs - 1 (the row count), named
// by nested_fp16_gemm_variant_names() (e.g. "t128x16x128_coop_sk").
inline constexpr int kNfp16_NumConfigs = 0
#define NFP16_CUTLASS(...) +1
#define NFP16_MMA(...) +1
#include "backend/cuda/gemm_configs.def"
    ;

const char* nested_fp16_config_name(int config);  // "unknown" outside the table
const std::vector<std::string>& nested_fp16_gemm_variant_names();
// False for configurations this build leaves out (NESTEDFP_CUDA_KERNEL_SET=default builds the
// heuristic's picks, ci only t128x16x128_coop_sk, all every one); running one throws.
bool nested_fp16_config_available(int config);
// The smallest kernel set that contains a configuration (0 ci, 1 default, 2 all); -1 outside.
int nested_fp16_config_tier(int config);

// The configuration the heuristic picks for a problem (by token count M, then N and K); both
// names are the same function.
int nested_fp16_gemm_heuristic(int M, int N, int K);
int nested_fp16_pick_config(int M, int N, int K);

// config = -1: heuristic. Enqueues on `stream`; safe to capture in a CUDA graph once the
// same (config, shape) has run outside capture (the stream-K workspace is cached per device).
void nested_fp16_gemm(const uint8_t* upper, const uint8_t* lower, const int8_t* k, const __half* X,
                      __half* Y, int M, int N, int K, cudaStream_t stream, int config = -1);

}  // namespace nestedfp::cuda
