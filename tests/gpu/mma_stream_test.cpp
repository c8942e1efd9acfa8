// The streaming mma.sync GEMMs (mma128x{8,16,32,64} in both families, mma128x{8,16}s2 in
// NestedFP16; nested_mma_stream.cuh)
// against FP64 references on fresh random data, at every cluster split of K (NFP_MMA_SPLITS):
// row, K and token tails, more tokens than the tile (grid z), slices with no K block at all, and
// bit-identical repeats (the cluster reduction sums in rank order).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "backend/cuda/nested_fp16_gemm.hpp"
#include "gemm_fixture.hpp"
#include "gpu_util.hpp"

namespace nestedfp::gputest {
namespace {

struct Shape {
  int M, N, K;
};
// 264 = 2 x 128 + 8 rows; 4112 = 64 x 64 + 16 (FP16 blocks of 64 k) = 32 x 128 + 16 (FP8);
// M = 70 > every token tile; K = 16: one partial block, so splits > 1 leave slices empty.
const Shape kShapes[] = {
    {1, 264, 4112}, {13, 136, 1040}, {70, 8, 16}, {33, 1000, 14336}, {2, 16, 28672}};
const char* const kNames[] = {"mma128x8", "mma128x16", "mma128x32", "mma128x64"};
// NestedFP16 only: the same kernels with two weight blocks in flight per warp.
const char* const kFp16OnlyNames[] = {"mma128x8s2", "mma128x16s2"};

int index_of(const std::vector<std::string>& names, const std::string& name) {
  for (int i = 0; i < int(names.size()); ++i)
    if (names[i] == name) return i;
  return -1;
}

struct SplitsEnv {  // NFP_MMA_SPLITS for one scope
  explicit SplitsEnv(int s) { setenv("NFP_MMA_SPLITS", std::to_string(s).c_str(), 1); }
  ~SplitsEnv() { unsetenv("NFP_MMA_SPLITS"); }
};

TEST(MmaStreamGemm, BothFamiliesMatchReferencesAtEverySplit) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Shape& c : kShapes) {
    SCOPED_TRACE(testing::Message() << "M=" << c.M << " N=" << c.N << " K=" << c.K);
    Weight w(rng, c.N, c.K, true);
    Activations a(rng, c.M, c.K);
    const auto ref16 = fp16_reference(a, w), ref8 = fp8_reference(a, w);
    DeviceBuffer<uint16_t> y(size_t(c.M) * c.N);
    for (const char* name : kNames) {
      const int v16 = index_of(cuda::nested_fp16_gemm_variant_names(), name);
      const int v8 = index_of(cuda::nested_fp8_gemm_variant_names(), name);
      ASSERT_GE(v16, 0) << name;
      ASSERT_GE(v8, 0) << name;
      ASSERT_TRUE(cuda::nested_fp16_config_available(v16)) << name << " not built";
      ASSERT_TRUE(cuda::nested_fp8_gemm_variant_built(v8)) << name << " not built";
      for (int splits : {1, 2, 4, 8}) {
        SplitsEnv env(splits);
        const std::string what = std::string(name) + " splits " + std::to_string(splits);
        y.poison();
        cuda::GemmConfig cfg16{v16};
        cuda::nested_fp16_gemm(w.view(), as_half(a.dx.get()), as_half(y.get()), c.M, nullptr,
                               &cfg16);
        const auto o16 = y.download();
        std::printf("  fp16 %-10s M=%-3d N=%-5d K=%-6d splits %d rel err %.3g\n", name, c.M, c.N,
                    c.K, splits, rel_error(o16, ref16));
        expect_close(o16, ref16, 1e-3, "NestedFP16 " + what);
        y.poison();
        cuda::GemmConfig cfg8{v8};
        cuda::nested_fp8_gemm(w.view(), a.dq.get(), a.ds.get(), as_half(y.get()), c.M, nullptr,
                              &cfg8);
        const auto o8 = y.download();
        std::printf("  fp8  %-10s M=%-3d N=%-5d K=%-6d splits %d rel err %.3g\n", name, c.M, c.N,
                    c.K, splits, rel_error(o8, ref8));
        expect_close(o8, ref8, 1e-3, "NestedFP8 " + what);
      }
    }
    for (const char* name : kFp16OnlyNames) {
      const int v16 = index_of(cuda::nested_fp16_gemm_variant_names(), name);
      ASSERT_GE(v16, 0) << name;
      ASSERT_TRUE(cuda::nested_fp16_config_available(v16)) << name << " not built";
      for (int splits : {1, 2, 4, 8}) {
        SplitsEnv env(splits);
        y.poison();
        cuda::GemmConfig cfg16{v16};
        cuda::nested_fp16_gemm(w.view(), as_half(a.dx.get()), as_half(y.get()), c.M, nullptr,
                               &cfg16);
        expect_close(y.download(), ref16, 1e-3,
                     "NestedFP16 " + std::string(name) + " splits " + std::to_string(splits));
      }
    }
  }
}

TEST(MmaStreamGemm, RepeatsBitIdenticallyWithClusterSplits) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const int M = 16, N = 512, K = 4096;
  Weight w(rng, N, K, true);
  Activations a(rng, M, K);
  SplitsEnv env(8);
  DeviceBuffer<uint16_t> y(size_t(M) * N);
  const int v16 = index_of(cuda::nested_fp16_gemm_variant_names(), "mma128x16");
  const int v8 = index_of(cuda::nested_fp8_gemm_variant_names(), "mma128x16");
  ASSERT_GE(v16, 0);
  ASSERT_GE(v8, 0);
  for (int fam = 0; fam < 2; ++fam) {
    std::vector<uint16_t> first;
    for (int rep = 0; rep < 3; ++rep) {
      y.poison();
      if (fam == 0) {
        cuda::GemmConfig cfg{v16};
        cuda::nested_fp16_gemm(w.view(), as_half(a.dx.get()), as_half(y.get()), M, nullptr, &cfg);
      } else {
        cuda::GemmConfig cfg{v8};
        cuda::nested_fp8_gemm(w.view(), a.dq.get(), a.ds.get(), as_half(y.get()), M, nullptr, &cfg);
      }
      const auto out = y.download();
      if (rep == 0)
        first = out;
      else
        EXPECT_EQ(out, first) << (fam == 0 ? "NestedFP16" : "NestedFP8") << " repeat " << rep;
    }
  }
}

// Token tiles run on grid z (at most 65535): a forced configuration past that is refused with a
// message, before anything is launched.
TEST(MmaStreamGemm, RefusesMoreTokensThanItsGrid) {
  std::mt19937_64 rng(fresh_seed());
  Weight w(rng, 16, 64, true);
  Activations a(rng, 1, 64);
  DeviceBuffer<uint16_t> y(16);
  const int M = 65535 * 8 + 1;  // buffers are never read: the check comes first
  cuda::GemmConfig c16{index_of(cuda::nested_fp16_gemm_variant_names(), "mma128x8")};
  cuda::GemmConfig c8{index_of(cuda::nested_fp8_gemm_variant_names(), "mma128x8")};
  for (bool fp8 : {false, true}) {
    try {
      if (fp8)
        cuda::nested_fp8_gemm(w.view(), a.dq.get(), a.ds.get(), as_half(y.get()), M, nullptr, &c8);
      else
        cuda::nested_fp16_gemm(w.view(), as_half(a.dx.get()), as_half(y.get()), M, nullptr, &c16);
      ADD_FAILURE() << (fp8 ? "NestedFP8" : "NestedFP16") << ": no error for M = " << M;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("65535 token tiles"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace nestedfp::gputest
