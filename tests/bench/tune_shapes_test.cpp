// `nestedfp tune`'s shapes (src/bench/tune_shapes.*): a model's GEMMs sharded by --tp, --shapes
// lists, and the argument refusals.
#include "bench/tune_shapes.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "nestedfp/error.hpp"

namespace nestedfp::bench {
namespace {

using NK = std::vector<std::pair<int, int>>;

NK nk(const std::vector<GemmShape>& v) {
  NK out;
  for (const auto& s : v) out.emplace_back(s.N, s.K);
  return out;
}

std::string config(const char* name) {
  return std::string(NESTEDFP_SOURCE_DIR) + "/bench/configs/" + name;
}

std::string error_of(const TuneShapeArgs& a) {
  try {
    tune_shapes(a);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

TEST(TuneShapes, Llama8bAtTp1MergesEqualShapes) {
  const auto s = tune_shapes({config("llama-3.1-8b"), "", 1});
  EXPECT_EQ(
      nk(s),
      (NK{{4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}, {6144, 4096}, {28672, 4096}}));
  EXPECT_EQ(s[0].label, "q_proj, o_proj");
  EXPECT_EQ(s[1].label, "k_proj, v_proj");
  EXPECT_EQ(s[2].label, "gate_proj, up_proj");
  EXPECT_EQ(s[4].label, "qkv_proj (fused)");
}

TEST(TuneShapes, Tp4ShardsColumnsAndRows) {
  // Column-parallel q/k/v/gate/up: N / 4; row-parallel o/down: K / 4.
  const auto s = tune_shapes({config("llama-3.1-8b"), "", 4});
  EXPECT_EQ(nk(s), (NK{{1024, 4096},
                       {256, 4096},
                       {4096, 1024},
                       {3584, 4096},
                       {4096, 3584},
                       {1536, 4096},
                       {7168, 4096}}));
  // 16 ranks, 8 KV heads: each rank keeps one whole KV head (replicated), not half of one.
  const auto r = model_gemm_shapes(io::load_config(config("llama-3.1-8b")), 16);
  EXPECT_EQ(nk(r), (NK{{256, 4096},
                       {128, 4096},
                       {4096, 256},
                       {896, 4096},
                       {4096, 896},
                       {512, 4096},
                       {1792, 4096}}));
}

TEST(TuneShapes, MistralSmallIsTheDesignShapes) {
  const auto s = tune_shapes({config("mistral-small-24b"), "", 1});
  // docs/MEASURING.md §5.1: 6144x5120, 5120x4096, 65536x5120, 5120x32768 among them.
  const NK got = nk(s);
  for (auto want : NK{{6144, 5120}, {5120, 4096}, {65536, 5120}, {5120, 32768}})
    EXPECT_NE(std::find(got.begin(), got.end(), want), got.end())
        << want.first << "x" << want.second;
}

TEST(TuneShapes, TpThatDoesNotDivideTheModelIsRefused) {
  const std::string e = error_of({config("llama-3.1-8b"), "", 3});
  EXPECT_NE(e.find("3"), std::string::npos) << e;
  EXPECT_NE(e.find("num_attention_heads"), std::string::npos) << e;
}

TEST(TuneShapes, ShapeLists) {
  EXPECT_EQ(nk(parse_gemm_shapes("4096,4096;4096,14336")), (NK{{4096, 4096}, {4096, 14336}}));
  EXPECT_EQ(nk(parse_gemm_shapes("4096,4096;4096,14336;")), (NK{{4096, 4096}, {4096, 14336}}));
  EXPECT_EQ(nk(parse_gemm_shapes("6144x4096,4096x4096")), (NK{{6144, 4096}, {4096, 4096}}));
  EXPECT_EQ(nk(parse_gemm_shapes("8,16;8,16")), (NK{{8, 16}}));  // duplicates once
  for (const char* bad : {"", "4096", "4096,", ",4096", "a,b", "4096,4096;;8,16", "0,16", "-8,16",
                          "8,16,32", "4096x", "4096,4096;6144x4096", "8.0,16"})
    EXPECT_THROW(parse_gemm_shapes(bad), Error) << bad;
  try {
    parse_gemm_shapes("4100,4096");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("4100x4096: the nested GEMMs need N % 8"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(parse_gemm_shapes("4096,4100"), Error);  // K % 16
}

TEST(TuneShapes, ArgumentErrors) {
  EXPECT_NE(error_of({"", "", 1}).find("exactly one of --model"), std::string::npos);
  EXPECT_NE(error_of({config("llama-3.1-8b"), "8,16", 1}).find("exactly one of --model"),
            std::string::npos);
  EXPECT_NE(error_of({"", "8,16", 2}).find("--tp 2 applies to --model"), std::string::npos);
  EXPECT_NE(error_of({"/nonexistent/model", "", 1}).find("/nonexistent/model"), std::string::npos);
}

}  // namespace
}  // namespace nestedfp::bench
