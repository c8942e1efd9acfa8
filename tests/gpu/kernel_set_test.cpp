// The GEMM kernel sets (CMake NESTEDFP_CUDA_KERNEL_SET = ci | default | all): the CI
// configuration of each family is in every build, and every configuration a build leaves out
// is refused with an Error that names it and says how to rebuild. Needs no GPU: the dispatchers
// refuse before touching the device, so the operands are host buffers that are never read.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/nested_fp16_gemm.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::gputest {
namespace {

int index_of(const std::vector<std::string>& names, const std::string& name) {
  const auto it = std::find(names.begin(), names.end(), name);
  return it == names.end() ? -1 : int(it - names.begin());
}

// The message of the Error that f throws, or "" (a test failure) when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no nestedfp::Error thrown";
  return "";
}

void expect_rebuild_hint(const std::string& msg, const std::string& family,
                         const std::string& config) {
  EXPECT_NE(msg.find(family + ": configuration " + config + " is not built"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("rebuild with -DNESTEDFP_CUDA_KERNEL_SET="), std::string::npos) << msg;
}

alignas(16) uint8_t g_bytes[2][64 * 64];
alignas(16) int8_t g_k[64];
alignas(16) uint16_t g_half[2][64 * 64];
alignas(16) float g_scale[64];

TEST(KernelSet, CiConfigurationsAreInEveryBuild) {
  const auto& fp16 = cuda::nested_fp16_gemm_variant_names();
  ASSERT_EQ(int(fp16.size()), cuda::kNfp16_NumConfigs);
  const int c16 = index_of(fp16, "t128x16x128_coop_sk");
  ASSERT_GE(c16, 0);
  EXPECT_TRUE(cuda::nested_fp16_config_available(c16));
  EXPECT_STREQ(cuda::nested_fp16_config_name(c16), "t128x16x128_coop_sk");
  // The ci build's CUTLASS tile at M <= 16, on a weight too large for the streaming kernels.
  EXPECT_EQ(cuda::nested_fp16_gemm_heuristic(1, 4096, 14336), c16);
  const int c8 = index_of(cuda::nested_fp8_gemm_variant_names(), "pp64x16");
  ASSERT_GE(c8, 0);
  EXPECT_TRUE(cuda::nested_fp8_gemm_variant_built(c8));
  // The streaming mma kernels are in every build, and the heuristics send narrow layers at small M
  // to them (KERNELS.md §2.4).
  const int m16 = index_of(fp16, "mma128x8"),
            m8 = index_of(cuda::nested_fp8_gemm_variant_names(), "mma128x8");
  ASSERT_GE(m16, 0);
  ASSERT_GE(m8, 0);
  EXPECT_TRUE(cuda::nested_fp16_config_available(m16));
  EXPECT_TRUE(cuda::nested_fp8_gemm_variant_built(m8));
  EXPECT_EQ(cuda::nested_fp16_gemm_heuristic(1, 1024, 4096), m16);
  EXPECT_EQ(cuda::nested_fp8_gemm_heuristic(8, 1024, 4096), m8);
  EXPECT_NE(cuda::nested_fp8_gemm_heuristic(8, 4096, 4096), m8);
  // Above 8 tokens the ping-pong 64x16 tile (a ci configuration) takes over there.
  EXPECT_EQ(cuda::nested_fp8_gemm_heuristic(16, 1024, 4096),
            index_of(cuda::nested_fp8_gemm_variant_names(), "pp64x16p8"));
  EXPECT_FALSE(cuda::nested_fp16_config_available(cuda::kNfp16_NumConfigs));
  EXPECT_FALSE(cuda::nested_fp8_gemm_variant_built(-1));
}

TEST(KernelSet, LeftOutConfigurationsAreRefusedWithARebuildHint) {
  auto* X = reinterpret_cast<const __half*>(g_half[0]);
  auto* Y = reinterpret_cast<__half*>(g_half[1]);
  int left_out = 0;
  for (int c = 0; c < cuda::kNfp16_NumConfigs; ++c) {
    if (cuda::nested_fp16_config_available(c)) continue;
    ++left_out;
    const std::string name = cuda::nested_fp16_config_name(c);
    expect_rebuild_hint(error_of([&] {
                          cuda::nested_fp16_gemm(g_bytes[0], g_bytes[1], g_k, X, Y, 16, 64, 64,
                                                 nullptr, c);
                        }),
                        "nested_fp16_gemm", name);
  }
  const auto& fp8 = cuda::nested_fp8_gemm_variant_names();
  const cuda::NestedWeight w{g_bytes[0], g_bytes[1], g_k, 64, 64};
  for (int v = 0; v < int(fp8.size()); ++v) {
    if (cuda::nested_fp8_gemm_variant_built(v)) continue;
    ++left_out;
    const cuda::GemmConfig cfg{v};
    expect_rebuild_hint(
        error_of([&] { cuda::nested_fp8_gemm(w, g_bytes[0], g_scale, Y, 16, nullptr, &cfg); }),
        "nested_fp8_gemm", fp8[v]);
  }
  // Zero in an `all` build (scripts/gpu-check.sh); a default build leaves out 8 + 5, ci 13 + 18.
  std::printf("  %d configurations left out of this build\n", left_out);
}

}  // namespace
}  // namespace nestedfp::gputest
