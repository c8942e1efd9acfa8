#pragma once
// Which GEMM kernel configurations a build contains, shared by the NestedFP8 and NestedFP16
// families. Every configuration has a tier, the smallest kernel set that compiles it:
//   NFP_TIER_CI      in every build: the one configuration per family that the CI compile check
//                    (a machine with nvcc but no GPU) builds and links
//   NFP_TIER_DEFAULT the configurations the dispatch heuristics pick
//   NFP_TIER_ALL     the others (tuning, `bench kernels --all-variants`, scripts/gpu-check.sh)
// CMake's NESTEDFP_CUDA_KERNEL_SET (ci | default | all) becomes NESTEDFP_CUDA_KERNEL_SET_LEVEL
// (0 | 1 | 2). A configuration's translation unit is empty unless NFP_KERNEL_BUILT(its tier), so
// the CUTLASS instantiations (minutes of nvcc each) are skipped, and its registry entry then holds
// no kernel; the dispatcher reports kernel_set::not_built_message instead of running it.
// No CUTLASS and no fmt here: included by the dispatchers and by every configuration's .cu file.
#include <string>

#define NFP_TIER_CI 0
#define NFP_TIER_DEFAULT 1
#define NFP_TIER_ALL 2

#ifndef NESTEDFP_CUDA_KERNEL_SET_LEVEL  // set by CMake; direct nvcc builds pass it themselves
#error \
    "NESTEDFP_CUDA_KERNEL_SET_LEVEL undefined: configure with CMake, or define it as 0 (ci), 1 (default) or 2 (all)"
#endif
#if NESTEDFP_CUDA_KERNEL_SET_LEVEL < NFP_TIER_CI || NESTEDFP_CUDA_KERNEL_SET_LEVEL > NFP_TIER_ALL
#error "NESTEDFP_CUDA_KERNEL_SET_LEVEL must be 0 (ci), 1 (default) or 2 (all)"
#endif

// True when this build compiles the configurations of `tier`; usable in #if.
#define NFP_KERNEL_BUILT(tier) ((tier) <= NESTEDFP_CUDA_KERNEL_SET_LEVEL)

// A registry entry's kernel: &fn where this build compiles `tier`, else nullptr. fn is named only
// in the discarded branch of `if constexpr` when left out, so it needs no definition (the linker
// never sees a reference to the empty translation unit's function).
#define NFP_KERNEL_OR_NULL(tier, fn)        \
  ([]() -> decltype(&fn) {                  \
    if constexpr (NFP_KERNEL_BUILT(tier)) { \
      return &fn;                           \
    } else {                                \
      return nullptr;                       \
    }                                       \
  }())

namespace nestedfp::cuda::kernel_set {

constexpr const char* tier_name(int tier) {
  return tier == NFP_TIER_CI ? "ci" : tier == NFP_TIER_DEFAULT ? "default" : "all";
}
// The kernel set of this build: "ci", "default" or "all".
constexpr const char* name() { return tier_name(NESTEDFP_CUDA_KERNEL_SET_LEVEL); }
constexpr bool built(int tier) { return NFP_KERNEL_BUILT(tier); }

// "configuration <config> is not built in this build (...); rebuild with ..." for the dispatchers'
// errors, which put their family's name in front.
inline std::string not_built_message(const char* config, int tier) {
  return std::string("configuration ") + config +
         " is not built in this build (NESTEDFP_CUDA_KERNEL_SET=" + name() +
         "); rebuild with -DNESTEDFP_CUDA_KERNEL_SET=" +
         (tier <= NFP_TIER_DEFAULT ? "default or all" : "all");
}

}  // namespace nestedfp::cuda::kernel_set
