// The GEMM configuration table src/backend/cuda/gemm_configs.def, read on the CPU through the same
// X-macros as the CUDA dispatchers: the variant index order is interface (GemmConfig::variant,
// benchmark columns) and committed kernel tables name variants, so rows may only be appended.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace {

struct Row {
  std::string name, tier;
  bool operator==(const Row&) const = default;
};

std::vector<Row> nfp16_variants() {
  return {
#define NFP16_CUTLASS(name, tier, ...) Row{#name, #tier},
#define NFP16_MMA(name, tier, tokens, stages) Row{#name, #tier},
#include "backend/cuda/gemm_configs.def"
  };
}

std::map<std::string, std::string> nfp8_kernel_tiers() {
  return {
#define NFP8_CUTLASS(name, tier, ...) {#name, #tier},
#define NFP8_MMA(name, tier, tokens) {#name, #tier},
#include "backend/cuda/gemm_configs.def"
  };
}

std::vector<Row> nfp8_variants() {
  const auto tiers = nfp8_kernel_tiers();
  std::vector<Row> v;
#define NFP8_VARIANT(name, kernel, split_k, promotion) v.push_back({#name, tiers.at(#kernel)});
#include "backend/cuda/gemm_configs.def"
  return v;
}

// The lists of 2026-12-02 (nested_fp16_gemm_variant_names(), nested_fp8_gemm_variant_names()
// before the table existed), with each variant's tier.
const std::vector<Row> kNfp16Frozen = {
    {"t128x16x128_coop_sk", "CI"},
    {"t128x32x128_coop_sk", "DEFAULT"},
    {"t128x64x64_coop_sk", "ALL"},
    {"t128x128x64_coop_sk", "DEFAULT"},
    {"t128x256x64_coop_sk", "DEFAULT"},
    {"t128x128x64_pingpong", "ALL"},
    {"t256x128x64_coop_c2x1_sk", "ALL"},
    {"t256x128x64_coop_sk", "DEFAULT"},
    {"t128x256x64_coop_c1x2_sk", "ALL"},
    {"t128x64x128_coop_sk", "DEFAULT"},
    {"t128x128x128_coop_sk", "ALL"},
    {"t64x16x128_pingpong", "ALL"},
    {"t64x32x128_pingpong", "ALL"},
    {"t64x64x128_pingpong", "ALL"},
    {"mma128x8", "CI"},
    {"mma128x16", "CI"},
    {"mma128x32", "CI"},
    {"mma128x64", "CI"},
    {"mma128x8s2", "CI"},
    {"mma128x16s2", "CI"},
    {"t128x128x64_coopsm_sk", "ALL"},
    {"t128x256x64_coopsm_sk", "ALL"},
    {"t128x64x64_coopsm_sk", "ALL"},
};
const std::vector<Row> kNfp8Frozen = {
    {"pp64x16", "CI"},
    {"pp64x32", "DEFAULT"},
    {"pp64x64", "DEFAULT"},
    {"pp64x128", "ALL"},
    {"sk128x16", "DEFAULT"},
    {"sk128x32", "DEFAULT"},
    {"sk128x64", "DEFAULT"},
    {"spk128x16", "DEFAULT"},
    {"spk128x32", "DEFAULT"},
    {"spk128x64", "DEFAULT"},
    {"coop128x128", "DEFAULT"},
    {"coop128x128c2", "ALL"},
    {"pp64x16p8", "CI"},
    {"pp64x64p8", "DEFAULT"},
    {"sk128x64p8", "DEFAULT"},
    {"coop128x128p8", "DEFAULT"},
    {"coop128x128p16", "DEFAULT"},
    {"coop128x128fa", "ALL"},
    {"coop128x256fa", "ALL"},
    {"coop128x256fac2", "ALL"},
    {"mma128x8", "CI"},
    {"mma128x16", "CI"},
    {"mma128x32", "CI"},
    {"mma128x64", "CI"},
};

void expect_prefix_and_unique(const std::vector<Row>& table, const std::vector<Row>& frozen) {
  ASSERT_GE(table.size(), frozen.size()) << "a row was removed";
  for (size_t i = 0; i < frozen.size(); ++i)
    EXPECT_EQ(table[i], frozen[i])
        << "variant " << i << ": rows were reordered, renamed or "
        << "re-tiered (expected " << frozen[i].name << " " << frozen[i].tier << ", got "
        << table[i].name << " " << table[i].tier << ")";
  std::set<std::string> names;
  for (const Row& r : table) EXPECT_TRUE(names.insert(r.name).second) << r.name << " twice";
}

TEST(GemmConfigs, Nfp16VariantsAppendOnly) {
  expect_prefix_and_unique(nfp16_variants(), kNfp16Frozen);
}

TEST(GemmConfigs, Nfp8VariantsAppendOnly) {
  expect_prefix_and_unique(nfp8_variants(), kNfp8Frozen);
}

// Every variant a committed kernel table names is in the table, in its family.
TEST(GemmConfigs, CommittedKernelTablesNameKnownVariants) {
  std::set<std::string> nfp16, nfp8;
  for (const Row& r : nfp16_variants()) nfp16.insert(r.name);
  for (const Row& r : nfp8_variants()) nfp8.insert(r.name);
  const auto dir = std::filesystem::path(NESTEDFP_SOURCE_DIR) / "bench/kernel-tables";
  int checked = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() != ".json") continue;
    std::ifstream in(f.path());
    const auto table = nlohmann::json::parse(in);
    for (const auto& e : table.at("entries")) {
      const std::string family = e.at("family"), variant = e.at("variant");
      ASSERT_TRUE(family == "nfp16" || family == "nfp8") << f.path() << ": family " << family;
      EXPECT_TRUE((family == "nfp16" ? nfp16 : nfp8).count(variant))
          << f.path() << ": " << family << " variant " << variant << " is not in gemm_configs.def";
      ++checked;
    }
  }
  EXPECT_GT(checked, 0) << "no kernel table entries under " << dir;
}

}  // namespace
