// NestedFP16 GEMM: the variant table, the heuristic, argument checks and dispatch, and the
// NestedWeight overload of kernels.hpp. The configurations are the NFP16_* rows of
// gemm_configs.def, instantiated one per translation unit (nested_fp16_gemm_v_<config>.cu,
// generated); this build's kernel set decides which (gemm_kernel_set.hpp).
#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "backend/cuda/gemm_heuristics.hpp"
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

// gemm_heuristics.hpp's rules, with each name it may return resolved (and checked to be in the
// default kernel set) at compile time.
namespace nfp16 {
namespace {
consteval std::array<int, heuristic::kNfp16Choices.size()> resolve_choices() {
  std::array<int, heuristic::kNfp16Choices.size()> a{};
  for (size_t i = 0; i < a.size(); ++i) a[i] = pick(heuristic::kNfp16Choices[i]);
  return a;
}
constexpr auto kChoiceConfig = resolve_choices();
}  // namespace
}  // namespace nfp16

int nested_fp16_pick_config(int M, int N, int K) {
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess)
    nfp16::raise(std::string("cudaGetDevice failed: ") + cudaGetErrorString(e));
  return nfp16::kChoiceConfig[heuristic::nfp16_choice(M, N, K, nfp16::sm_count(device))];
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
