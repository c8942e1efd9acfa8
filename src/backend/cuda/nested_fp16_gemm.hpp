#pragma once
// NestedFP16 GEMM on Hopper (DESIGN §2): Y[M,N] = X[M,K] · Wᵀ with W[N,K] held as the nested
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

// Named kernel configurations: weight-rows tile x token tile x K tile, schedule, cluster.
enum NestedFp16Config : int {
  kNfp16_T128x16_Coop_StreamK = 0,
  kNfp16_T128x32_Coop_StreamK = 1,
  kNfp16_T128x64_Coop_StreamK = 2,
  kNfp16_T128x128_Coop_StreamK = 3,
  kNfp16_T128x256_Coop_StreamK = 4,
  kNfp16_T128x128_Pingpong = 5,
  kNfp16_T256x128_Coop_Cluster2x1 = 6,
  kNfp16_T256x128_Coop_StreamK = 7,
  kNfp16_T128x256_Coop_Cluster1x2 = 8,
  kNfp16_T128x64x128_Coop_StreamK = 9,
  kNfp16_T128x128x128_Coop_StreamK = 10,
  kNfp16_NumConfigs = 11,
};

const char* nested_fp16_config_name(int config);
// The same names as a table, and the heuristic, in the shape kernels.hpp uses for the FP8 GEMM.
const std::vector<std::string>& nested_fp16_gemm_variant_names();
int nested_fp16_gemm_heuristic(int M, int N, int K);
// Configurations 2, 5, 6, 8 and 10 (never the heuristic's pick) are compiled only
// with -DNFP16_EXTRA_CONFIGS; calling one that is not built throws.
bool nested_fp16_config_available(int config);

// The configuration the heuristic picks for a problem (by token count M, then N and K).
int nested_fp16_pick_config(int M, int N, int K);

// config = -1: heuristic. Enqueues on `stream`; safe to capture in a CUDA graph once the
// same (config, shape) has run outside capture (the stream-K workspace is cached per device).
void nested_fp16_gemm(const uint8_t* upper, const uint8_t* lower, const int8_t* k, const __half* X,
                      __half* Y, int M, int N, int K, cudaStream_t stream, int config = -1);

}  // namespace nestedfp::cuda
