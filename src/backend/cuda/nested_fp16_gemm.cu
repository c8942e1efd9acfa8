// NestedFP16 GEMM: configuration names, the heuristic, argument checks and dispatch. The
// kernels themselves are instantiated one per translation unit (nested_fp16_gemm_cfg*.cu).
#include "backend/cuda/nested_fp16_gemm.hpp"


#include <string>
#include <vector>

namespace nestedfp::cuda {
namespace nfp16 {
[[noreturn]] void raise(const std::string& msg);
inline std::string shape_str(int M, int N, int K) {
  return "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K);
}
#define NFP16_DECLARE(i)                                                                          \
  void run_cfg##i(const uint8_t* upper, const uint8_t* lower, const int8_t* k, const __half* X, \
                  __half* Y, int M, int N, int K, cudaStream_t stream);                    \
  bool built_cfg##i();
NFP16_DECLARE(0)
NFP16_DECLARE(1)
NFP16_DECLARE(2)
NFP16_DECLARE(3)
NFP16_DECLARE(4)
NFP16_DECLARE(5)
NFP16_DECLARE(6)
NFP16_DECLARE(7)
NFP16_DECLARE(8)
NFP16_DECLARE(9)
NFP16_DECLARE(10)
#undef NFP16_DECLARE
}  // namespace nfp16

using nfp16::raise;
using nfp16::shape_str;

const std::vector<std::string>& nested_fp16_gemm_variant_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (int i = 0; i < kNfp16_NumConfigs; ++i) v.push_back(nested_fp16_config_name(i));
    return v;
  }();
  return names;
}

bool nested_fp16_config_available(int config) {
  switch (config) {
    case 0: return nfp16::built_cfg0();
    case 1: return nfp16::built_cfg1();
    case 2: return nfp16::built_cfg2();
    case 3: return nfp16::built_cfg3();
    case 4: return nfp16::built_cfg4();
    case 5: return nfp16::built_cfg5();
    case 6: return nfp16::built_cfg6();
    case 7: return nfp16::built_cfg7();
    case 8: return nfp16::built_cfg8();
    case 9: return nfp16::built_cfg9();
    case 10: return nfp16::built_cfg10();
    default: return false;
  }
}

int nested_fp16_gemm_heuristic(int M, int N, int K) { return nested_fp16_pick_config(M, N, K); }

const char* nested_fp16_config_name(int config) {
  switch (config) {
    case kNfp16_T128x16_Coop_StreamK: return "T128x16x128_coop_streamk";
    case kNfp16_T128x32_Coop_StreamK: return "T128x32x128_coop_streamk";
    case kNfp16_T128x64_Coop_StreamK: return "T128x64x64_coop_streamk";
    case kNfp16_T128x128_Coop_StreamK: return "T128x128x64_coop_streamk";
    case kNfp16_T128x256_Coop_StreamK: return "T128x256x64_coop_streamk";
    case kNfp16_T128x128_Pingpong: return "T128x128x64_pingpong";
    case kNfp16_T256x128_Coop_Cluster2x1: return "T256x128x64_coop_cluster2x1_streamk";
    case kNfp16_T256x128_Coop_StreamK: return "T256x128x64_coop_streamk";
    case kNfp16_T128x256_Coop_Cluster1x2: return "T128x256x64_coop_cluster1x2_streamk";
    case kNfp16_T128x64x128_Coop_StreamK: return "T128x64x128_coop_streamk";
    case kNfp16_T128x128x128_Coop_StreamK: return "T128x128x128_coop_streamk";
    default: return "unknown";
  }
}

// Measured on an H200 (bench/nfp16/NOTES.md): the smallest token tile that covers M (with a K tile
// of 128 up to M = 64), except that for 64 < M <= 128 on wide layers (N >= 16384) the 256-row
// tile wins (fewer, fuller waves).
int nested_fp16_pick_config(int M, int N, int K) {
  (void)K;
  if (M <= 16) return kNfp16_T128x16_Coop_StreamK;
  if (M <= 32) return kNfp16_T128x32_Coop_StreamK;
  if (M <= 64) return kNfp16_T128x64x128_Coop_StreamK;
  if (M <= 128) return N >= 16384 ? kNfp16_T256x128_Coop_StreamK : kNfp16_T128x128_Coop_StreamK;
  return kNfp16_T128x256_Coop_StreamK;
}

void nested_fp16_gemm(const uint8_t* upper, const uint8_t* lower, const int8_t* k, const __half* X, __half* Y,
                      int M, int N, int K, cudaStream_t stream, int config) {
  if (M < 1 || N < 1 || K < 1) raise("empty problem " + shape_str(M, N, K));
  if (K % 16 != 0)
    raise("K=" + std::to_string(K) + " must be a multiple of 16 (TMA needs 16-byte row strides for the byte planes)");
  if (N % 8 != 0)
    raise("N=" + std::to_string(N) + " must be a multiple of 8 (TMA stores rows of Y with 16-byte strides)");
  auto misaligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) != 0; };
  if (!upper || !lower || !X || !Y) raise("null operand pointer");
  if (misaligned(upper) || misaligned(lower) || misaligned(X) || misaligned(Y))
    raise("upper, lower, X and Y must be 16-byte aligned");
  if (config < 0) config = nested_fp16_pick_config(M, N, K);
  switch (config) {
    case kNfp16_T128x16_Coop_StreamK: return nfp16::run_cfg0(upper, lower, k, X, Y, M, N, K, stream);
    case kNfp16_T128x32_Coop_StreamK: return nfp16::run_cfg1(upper, lower, k, X, Y, M, N, K, stream);
    case kNfp16_T128x64_Coop_StreamK: return nfp16::run_cfg2(upper, lower, k, X, Y, M, N, K, stream);
    case kNfp16_T128x128_Coop_StreamK: return nfp16::run_cfg3(upper, lower, k, X, Y, M, N, K, stream);
    case kNfp16_T128x256_Coop_StreamK: return nfp16::run_cfg4(upper, lower, k, X, Y, M, N, K, stream);
    case kNfp16_T128x128_Pingpong: return nfp16::run_cfg5(upper, lower, k, X, Y, M, N, K, stream);
    case kNfp16_T256x128_Coop_Cluster2x1: return nfp16::run_cfg6(upper, lower, k, X, Y, M, N, K, stream);
    case kNfp16_T256x128_Coop_StreamK: return nfp16::run_cfg7(upper, lower, k, X, Y, M, N, K, stream);
    case kNfp16_T128x256_Coop_Cluster1x2: return nfp16::run_cfg8(upper, lower, k, X, Y, M, N, K, stream);
    case kNfp16_T128x64x128_Coop_StreamK: return nfp16::run_cfg9(upper, lower, k, X, Y, M, N, K, stream);
    case kNfp16_T128x128x128_Coop_StreamK: return nfp16::run_cfg10(upper, lower, k, X, Y, M, N, K, stream);
    default: raise("unknown config " + std::to_string(config) + " (0.." + std::to_string(kNfp16_NumConfigs - 1) + ")");
  }
}

}  // namespace nestedfp::cuda
