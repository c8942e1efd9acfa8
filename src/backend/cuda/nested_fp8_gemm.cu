// NestedFP8 GEMM: argument checks, the variant table and the M-bucket heuristic. The kernels and
// variants are the NFP8_* rows of gemm_configs.def; each CUTLASS kernel is instantiated in its
// generated translation unit nested_fp8_gemm_v_<kernel>.cu.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "backend/cuda/gemm_heuristics.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/nested_fp8_gemm_impl.hpp"
#include "backend/cuda/sched_env.hpp"

namespace nestedfp::cuda {
namespace fp8gemm {
namespace {

struct Variant {
  const char* name;
  int tier;                     // the smallest kernel set that contains the kernel
  void (*run)(const Problem&);  // nullptr where this build leaves the kernel out
  int tile_rows, tile_tokens;
  bool split_k;   // a stream-K kernel run as split-K (K slices chosen from the SM count)
  int promotion;  // k-blocks of 32 between FP32 promotions; 0 = CUTLASS default (4 = one K tile)
};
// The kernels (NFP8_CUTLASS / NFP8_MMA rows of gemm_configs.def): tier, entry point, tile.
struct Kernel {
  int tier;
  void (*run)(const Problem&);
  int tile_rows, tile_tokens;
};
#define NFP8_CUTLASS(name, tier, tile_rows, tile_tokens, ...) \
  constexpr Kernel kKernel_##name{                            \
      NFP_TIER_##tier, NFP_KERNEL_OR_NULL(NFP_TIER_##tier, run_##name), tile_rows, tile_tokens};
#define NFP8_MMA(name, tier, tokens)               \
  constexpr Kernel kKernel_##name{NFP_TIER_##tier, \
                                  NFP_KERNEL_OR_NULL(NFP_TIER_##tier, run_##name), 128, tokens};
#include "backend/cuda/gemm_configs.def"

constexpr Variant variant(const char* name, const Kernel& k, bool split_k, int promotion) {
  return {name, k.tier, k.run, k.tile_rows, k.tile_tokens, split_k, promotion};
}

// The variants (NFP8_VARIANT rows of gemm_configs.def). The index is the variant number
// (GemmConfig::variant): the row order, append-only.
constexpr Variant kVariants[] = {
#define NFP8_VARIANT(name, kernel, split_k, promotion) \
  variant(#name, kKernel_##kernel, split_k, promotion),
#include "backend/cuda/gemm_configs.def"
};
constexpr int kNumVariants = int(sizeof(kVariants) / sizeof(kVariants[0]));

// K slices for split-K: enough output tiles x slices to give every SM work, each slice >= 2 K
// tiles.
int split_count(const Variant& v, int M, int N, int K, int sms) {
  const int tiles =
      ((N + v.tile_rows - 1) / v.tile_rows) * ((M + v.tile_tokens - 1) / v.tile_tokens);
  const int k_tiles = (K + 127) / 128;
  return std::max(1, std::min(sms / std::max(tiles, 1), k_tiles / 2));
}

// Resolved at compile time: a misspelt name, or a pick outside the default kernel set (which would
// make a default build throw on an ordinary shape), is a compile error.
consteval int pick(std::string_view name) {
  for (int i = 0; i < kNumVariants; ++i) {
    if (name == kVariants[i].name) {
      if (kVariants[i].tier > NFP_TIER_DEFAULT)
        throw "the heuristic may pick only default-set variants";
      return i;
    }
  }
  throw "no NestedFP8 variant has this name";
}

struct DeviceCache {
  int device = -1, sms = 0;
};

DeviceCache& device_cache() {
  thread_local DeviceCache c;
  int dev = 0;
  NFP_CUDA_CHECK(cudaGetDevice(&dev));
  if (c.device != dev) {
    NFP_CUDA_CHECK(cudaDeviceGetAttribute(&c.sms, cudaDevAttrMultiProcessorCount, dev));
    c.device = dev;
  }
  return c;
}

}  // namespace

namespace {
std::mutex g_ws_mutex;
size_t g_ws_total = 0;  // live and retired workspaces
// One workspace per (device, stream), as for NestedFP16: GEMMs on one stream are ordered, so they
// may share it; tensor-parallel ranks (threads of one process, one device and stream each) must
// not. Outgrown workspaces are kept, not freed: a CUDA graph captured with a smaller one (the
// engine's batch buckets, `tune` and `bench kernels` capturing variant after variant) still
// points into it. Growth is rare (a few sizes per process), so this costs little memory.
struct Workspace {
  void* ptr = nullptr;
  size_t size = 0;
};
std::map<std::pair<int, cudaStream_t>, Workspace> g_ws;
std::vector<void*> g_ws_retired;
}  // namespace

void* workspace_for(size_t bytes, cudaStream_t stream) {
  int device = 0;
  NFP_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(g_ws_mutex);
  Workspace& w = g_ws[{device, stream}];
  if (bytes <= w.size) return w.ptr;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  NFP_CUDA_CHECK(cudaStreamIsCapturing(stream, &cap));
  if (cap != cudaStreamCaptureStatusNone)
    cuda_fail("nested_fp8_gemm: needs ", bytes,
              " bytes of workspace during graph capture; run the same "
              "shape once before capturing");
  void* p = nullptr;
  NFP_CUDA_CHECK(cudaMalloc(&p, bytes));
  if (w.ptr) g_ws_retired.push_back(w.ptr);
  w.ptr = p;
  w.size = bytes;
  g_ws_total += bytes;
  return w.ptr;
}

}  // namespace fp8gemm

size_t nested_fp8_workspace_bytes() {
  std::lock_guard<std::mutex> lock(fp8gemm::g_ws_mutex);
  return fp8gemm::g_ws_total;
}

bool nested_fp8_gemm_variant_built(int variant) {
  return variant >= 0 && variant < fp8gemm::kNumVariants &&
         fp8gemm::kVariants[variant].run != nullptr;
}

int nested_fp8_gemm_variant_tier(int variant) {
  return variant >= 0 && variant < fp8gemm::kNumVariants ? fp8gemm::kVariants[variant].tier : -1;
}

const std::vector<std::string>& nested_fp8_gemm_variant_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& x : fp8gemm::kVariants) v.emplace_back(x.name);
    return v;
  }();
  return names;
}

namespace fp8gemm {
namespace {
// gemm_heuristics.hpp's names, resolved (and checked to be in the default kernel set) at compile
// time.
consteval std::array<int, heuristic::kNfp8Choices.size()> resolve_choices() {
  std::array<int, heuristic::kNfp8Choices.size()> a{};
  for (size_t i = 0; i < a.size(); ++i) a[i] = pick(heuristic::kNfp8Choices[i]);
  return a;
}
constexpr auto kChoiceVariant = resolve_choices();
}  // namespace
}  // namespace fp8gemm

int nested_fp8_gemm_heuristic(int M, int N, int K) {
  return fp8gemm::kChoiceVariant[heuristic::nfp8_choice(M, N, K, fp8gemm::device_cache().sms)];
}

void nested_fp8_gemm(const NestedWeight& w, const uint8_t* xq, const float* x_scale, __half* Y,
                     int M, cudaStream_t stream, const GemmConfig* cfg) {
  if (M < 1) cuda_fail("nested_fp8_gemm: M = ", M, " (need M >= 1)");
  if (w.N < 8 || w.K < 16 || w.N % 8 != 0 || w.K % 16 != 0)
    cuda_fail("nested_fp8_gemm: weight [", w.N, ", ", w.K,
              "] unsupported: TMA needs K % 16 == 0 "
              "(16-byte FP8 rows) and N % 8 == 0 (16-byte FP16 output rows)");
  auto misaligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) != 0; };
  if (!w.upper || !w.k || !xq || !x_scale || !Y || misaligned(w.upper) || misaligned(xq) ||
      misaligned(Y))
    cuda_fail("nested_fp8_gemm: null or not 16-byte aligned operand pointer");
  const int v = cfg && cfg->variant >= 0 ? cfg->variant : nested_fp8_gemm_heuristic(M, w.N, w.K);
  if (v >= fp8gemm::kNumVariants)
    cuda_fail("nested_fp8_gemm: variant ", v, " out of range (0..", fp8gemm::kNumVariants - 1, ")");
  const auto& var = fp8gemm::kVariants[v];
  if (!var.run) cuda_fail("nested_fp8_gemm: ", kernel_set::not_built_message(var.name, var.tier));
  const auto& dc = fp8gemm::device_cache();
  int splits = var.split_k ? fp8gemm::split_count(var, M, w.N, w.K, dc.sms) : 0;
  int decomposition = 0;
  // NFP8_SCHED="decomp=1" (data-parallel), "decomp=2,splits=3", "decomp=3" (stream-K), "splits=3"
  // (split-K): tuning experiments on the stream-K kernels (the others ignore them), read on every
  // call like NFP16_SCHED. decomp=2 without splits takes the split-K variants' count, at least 2.
  // raster (1 along the weight rows, 2 along the tokens) and swizzle apply to every CUTLASS kernel.
  const SchedOverride o = sched_override("NFP8_SCHED");
  if (o.decomp >= 0) decomposition = o.decomp;
  if (o.splits >= 0) splits = o.splits;
  if (decomposition == 2 && o.splits < 0) splits = std::max(splits, 2);
  if (decomposition == 1 || decomposition == 3) splits = 0;
  fp8gemm::Problem p{&w,       xq,     x_scale,       Y,
                     M,        stream, dc.device,     dc.sms,
                     var.name, splits, decomposition, var.promotion};
  if (o.raster >= 0) p.raster = o.raster;
  if (o.swizzle >= 0) p.swizzle = o.swizzle;
  var.run(p);
}

}  // namespace nestedfp::cuda
