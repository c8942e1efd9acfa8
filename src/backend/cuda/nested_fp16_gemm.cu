// NestedFP16 GEMM: the variant table, the heuristic, argument checks and dispatch, and the
// NestedWeight overload of kernels.hpp. The configurations are the NFP16_* rows of
// gemm_configs.def, instantiated one per translation unit (nested_fp16_gemm_v_<config>.cu,
// generated); this build's kernel set decides which (gemm_kernel_set.hpp).
#include <string>
#include <string_view>
#include <vector>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/nested_fp16_gemm.hpp"
#include "backend/cuda/nested_fp16_gemm_kernels.hpp"

namespace nestedfp::cuda {
namespace nfp16 {
namespace {

struct Config {
  const char* name;
  int tier;   // the smallest kernel set that contains it
  RunFn run;  // nullptr where this build leaves the configuration out
};
// The index is the variant number (GemmConfig::variant, the benchmarks' "per config" columns): the
// row order of gemm_configs.def, append-only.
constexpr Config kConfigs[] = {
#define NFP16_CUTLASS(name, tier, ...) \
  Config{#name, NFP_TIER_##tier, NFP_KERNEL_OR_NULL(NFP_TIER_##tier, run_##name)},
#define NFP16_MMA(name, tier, tokens, stages) \
  Config{#name, NFP_TIER_##tier, NFP_KERNEL_OR_NULL(NFP_TIER_##tier, run_##name)},
#include "backend/cuda/gemm_configs.def"
};

// Resolved at compile time: a misspelt name, or a pick outside the default kernel set (which would
// make a default build throw on an ordinary shape), is a compile error.
consteval int pick(std::string_view name) {
  for (int i = 0; i < kNfp16_NumConfigs; ++i) {
    if (name == kConfigs[i].name) {
      if (kConfigs[i].tier > NFP_TIER_DEFAULT)
        throw "the heuristic may pick only default-set configurations";
      return i;
    }
  }
  throw "no NestedFP16 configuration has this name";
}

}  // namespace
}  // namespace nfp16

using nfp16::raise;

const char* nested_fp16_config_name(int config) {
  return config >= 0 && config < kNfp16_NumConfigs ? nfp16::kConfigs[config].name : "unknown";
}

const std::vector<std::string>& nested_fp16_gemm_variant_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& c : nfp16::kConfigs) v.emplace_back(c.name);
    return v;
  }();
  return names;
}

bool nested_fp16_config_available(int config) {
  return config >= 0 && config < kNfp16_NumConfigs && nfp16::kConfigs[config].run != nullptr;
}

int nested_fp16_config_tier(int config) {
  return config >= 0 && config < kNfp16_NumConfigs ? nfp16::kConfigs[config].tier : -1;
}

// Narrow layers at small M (k/v projections, tensor-parallel shards) go to the streaming mma
// kernels: fitted to the H200 kernel table of 2026-12-02 (bench/kernel-tables/h200.md), where they
// are 1.6-2.8x faster for N <= 1536 at every M <= 64, and 1.2-1.4x for weights of <= 15 Mi
// elements at M <= 16.
// Otherwise, measured on an H200 (bench/nfp16/NOTES.md): the smallest token tile that covers M
// (with a K tile of 128 up to M = 64), except that for 64 < M <= 128 on wide layers (N >= 16384)
// the 256-row tile wins (fewer, fuller waves).
int nested_fp16_pick_config(int M, int N, int K) {
  using nfp16::pick;
  const bool narrow = N <= 2048, small = int64_t(N) * K <= 15 * (int64_t(1) << 20);
  if ((narrow && M <= 64) || (small && M <= 16)) {
    if (M <= 8) return pick("mma128x8");
    if (M <= 16) return pick("mma128x16");
    return M <= 32 ? pick("mma128x32") : pick("mma128x64");
  }
  if (M <= 16) return pick("t128x16x128_coop_sk");
  if (M <= 32) return pick("t128x32x128_coop_sk");
  if (M <= 64) return pick("t128x64x128_coop_sk");
  if (M <= 128) return N >= 16384 ? pick("t256x128x64_coop_sk") : pick("t128x128x64_coop_sk");
  return pick("t128x256x64_coop_sk");
}

int nested_fp16_gemm_heuristic(int M, int N, int K) { return nested_fp16_pick_config(M, N, K); }

void nested_fp16_gemm(const uint8_t* upper, const uint8_t* lower, const int8_t* k, const __half* X,
                      __half* Y, int M, int N, int K, cudaStream_t stream, int config) {
  if (M < 1 || N < 1 || K < 1)
    raise("empty problem M=" + std::to_string(M) + " N=" + std::to_string(N) +
          " K=" + std::to_string(K));
  if (K % 16 != 0)
    raise("K=" + std::to_string(K) +
          " must be a multiple of 16 (TMA needs 16-byte row strides for the byte planes)");
  if (N % 8 != 0)
    raise("N=" + std::to_string(N) +
          " must be a multiple of 8 (TMA stores rows of Y with 16-byte strides)");
  auto misaligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) != 0; };
  if (!upper || !lower || !X || !Y) raise("null operand pointer");
  if (misaligned(upper) || misaligned(lower) || misaligned(X) || misaligned(Y))
    raise("upper, lower, X and Y must be 16-byte aligned");
  if (config < 0) config = nested_fp16_pick_config(M, N, K);
  if (config >= kNfp16_NumConfigs)
    raise("unknown config " + std::to_string(config) + " (0.." +
          std::to_string(kNfp16_NumConfigs - 1) + ")");
  const nfp16::Config& c = nfp16::kConfigs[config];
  if (!c.run) raise(kernel_set::not_built_message(c.name, c.tier));
  c.run({upper, lower, k, X, Y, M, N, K, stream});
}

void nested_fp16_gemm(const NestedWeight& w, const __half* X, __half* Y, int M, cudaStream_t stream,
                      const GemmConfig* cfg) {
  nested_fp16_gemm(w.upper, w.lower, w.k, X, Y, M, w.N, w.K, stream, cfg ? cfg->variant : -1);
}

}  // namespace nestedfp::cuda
