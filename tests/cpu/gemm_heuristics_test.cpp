// The untuned-shape heuristics (src/backend/cuda/gemm_heuristics.hpp), scored on the CPU against
// every candidate that `nestedfp tune` timed on the H200 (bench/kernel-tables/h200.candidates.csv):
// the time of the heuristic's choice over the fastest candidate's, per (family, shape, M).
#include "backend/cuda/gemm_heuristics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace {

namespace h = nestedfp::cuda::heuristic;
constexpr int kH200Sms = 132;

// Tiers of gemm_configs.def, read through its X-macros.
std::map<std::string, std::string> nfp16_tiers() {
  return {
#define NFP16_CUTLASS(name, tier, ...) {#name, #tier},
#define NFP16_MMA(name, tier, tokens, stages) {#name, #tier},
#include "backend/cuda/gemm_configs.def"
  };
}

std::map<std::string, std::string> nfp8_tiers() {
  std::map<std::string, std::string> kernels = {
#define NFP8_CUTLASS(name, tier, ...) {#name, #tier},
#define NFP8_MMA(name, tier, tokens) {#name, #tier},
#include "backend/cuda/gemm_configs.def"
  };
  std::map<std::string, std::string> v;
#define NFP8_VARIANT(name, kernel, split_k, promotion) v[#name] = kernels.at(#kernel);
#include "backend/cuda/gemm_configs.def"
  return v;
}

TEST(GemmHeuristics, ChoicesAreDefaultSetConfigurations) {
  const auto t16 = nfp16_tiers(), t8 = nfp8_tiers();
  for (auto name : h::kNfp16Choices) {
    const auto it = t16.find(std::string(name));
    ASSERT_NE(it, t16.end()) << name;
    EXPECT_TRUE(it->second == "CI" || it->second == "DEFAULT") << name << ": " << it->second;
  }
  for (auto name : h::kNfp8Choices) {
    const auto it = t8.find(std::string(name));
    ASSERT_NE(it, t8.end()) << name;
    EXPECT_TRUE(it->second == "CI" || it->second == "DEFAULT") << name << ": " << it->second;
  }
}

TEST(GemmHeuristics, MmaSplitsFillTheSmsAndKeepTheirPipeline) {
  EXPECT_EQ(h::mma_stream_splits(32, 64, 4, 132), 8);   // 4096 rows: 32 x 8 = 256 CTAs
  EXPECT_EQ(h::mma_stream_splits(40, 64, 4, 132), 4);   // 5120 rows: 160
  EXPECT_EQ(h::mma_stream_splits(200, 64, 4, 132), 1);  // already more CTAs than SMs
  EXPECT_EQ(h::mma_stream_splits(8, 16, 4, 132), 4);    // K = 1024: 16 blocks, 4 per slice
  EXPECT_EQ(h::mma_stream_splits(8, 7, 4, 132), 1);
}

// The token tile of a configuration name ("mma128x16s2", "t128x64x128_coop_sk", "pp64x32": the
// number after the first x), as `tune` reads it.
int tile_tokens(std::string_view name) {
  const size_t x = name.find('x');
  return x == std::string_view::npos ? 0 : std::atoi(std::string(name.substr(x + 1)).c_str());
}

// Over shapes far beyond the fitted ones, every choice stays inside what `tune` would time: a
// streaming mma tile re-reads the weight at most 4 times, a CUTLASS tile at most 64 times.
TEST(GemmHeuristics, ChoicesStayWithinTheTunersCandidateFilter) {
  int checked = 0;
  for (int sms : {78, 114, 132, 148})
    for (int N : {8, 64, 128, 200, 256, 512, 520, 1024, 2048, 3072, 4096, 8192, 28672, 131072})
      for (int K : {16, 336, 1024, 4096, 14336, 65536})
        for (int M = 1; M <= 65536; M = M < 8 ? M + 1 : M * 3 / 2) {
          for (int fam = 0; fam < 2; ++fam) {
            const std::string_view name = fam == 0 ? h::kNfp16Choices[h::nfp16_choice(M, N, K, sms)]
                                                   : h::kNfp8Choices[h::nfp8_choice(M, N, K, sms)];
            const int t = tile_tokens(name);
            const bool mma = name.substr(0, 3) == "mma";
            const bool ok = mma ? t * 4 >= M : (t * 64 >= M || t >= 128);
            EXPECT_TRUE(ok) << name << " at M=" << M << " N=" << N << " K=" << K << " sms=" << sms;
            if (!ok) return;
            ++checked;
          }
        }
  EXPECT_GT(checked, 10000);
}

struct Point {
  std::map<std::string, double> us;  // variant -> median time
  std::string old_choice;            // the heuristic of the tune run
};
using Key = std::tuple<std::string, int, int, int>;  // family, N, K, M

// shape,N,K,M,family,variant,us,heuristic,chosen (the shape label is quoted: it has commas).
std::map<Key, Point> load_candidates(const std::filesystem::path& file) {
  std::ifstream in(file);
  EXPECT_TRUE(in) << "cannot read " << file;
  std::map<Key, Point> pts;
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "shape,N,K,M,family,variant,us,heuristic,chosen");
  while (std::getline(in, line)) {
    const size_t q = line.find('"', 1);
    if (line.empty() || line[0] != '"' || q == std::string::npos) {
      ADD_FAILURE() << "bad line: " << line;
      continue;
    }
    std::stringstream rest(line.substr(q + 2));
    std::vector<std::string> f;
    for (std::string x; std::getline(rest, x, ',');) f.push_back(x);
    if (f.size() != 8) {
      ADD_FAILURE() << "bad line: " << line;
      continue;
    }
    Point& p = pts[{f[3], std::stoi(f[0]), std::stoi(f[1]), std::stoi(f[2])}];
    p.us[f[4]] = std::stod(f[5]);
    if (f[6] == "1") p.old_choice = f[4];
  }
  return pts;
}

struct Score {
  double geomean = 0, worst = 0, old_geomean = 0;
  size_t points = 0;
};

template <class Choose>
Score score(const std::map<Key, Point>& pts, const std::string& family, Choose choose) {
  double log_sum = 0, old_log_sum = 0;
  Score s;
  for (const auto& [key, p] : pts) {
    const auto& [fam, N, K, M] = key;
    if (fam != family) continue;
    double best = 1e300;
    for (const auto& [v, us] : p.us) best = std::min(best, us);
    const std::string pick(choose(M, N, K));
    const auto it = p.us.find(pick);
    if (it == p.us.end()) {
      ADD_FAILURE() << family << " N=" << N << " K=" << K << " M=" << M << ": the heuristic picks "
                    << pick << ", which the tune did not time there";
      continue;
    }
    const auto old = p.us.find(p.old_choice);
    if (old == p.us.end()) {
      ADD_FAILURE() << family << " N=" << N << " K=" << K << " M=" << M
                    << ": no row is flagged as the tune's heuristic";
      continue;
    }
    const double loss = it->second / best;
    log_sum += std::log(loss);
    old_log_sum += std::log(old->second / best);
    s.worst = std::max(s.worst, loss);
    ++s.points;
  }
  s.geomean = std::exp(log_sum / double(s.points));
  s.old_geomean = std::exp(old_log_sum / double(s.points));
  return s;
}

// Bounds a little above what the rules reach on this file (2026-12-02: NestedFP16 1.005 geomean,
// worst 1.16; NestedFP8 1.004, worst 1.10; the heuristics before them 1.083 / 3.69 and 1.049 /
// 1.96; re-tuned twice in session 25 with the NestedFP8 `t2` and `sk128x128` kernels: NestedFP16
// 1.005 / 1.16, NestedFP8 1.0067 / 1.10, 1.0086 / 1.35 without the `sk128x128p16` rule; re-tuned in
// session 27 with the double-buffered promotion (CoopDb / PingDb): NestedFP16 1.0060 / 1.17,
// NestedFP8 1.0057 / 1.126 with the rules refitted, 1.0115 / 1.21 with the old ones; the NestedFP8
// bounds are tight enough that dropping any one of its rules fails, scripts/mutants.tsv): a change
// that makes these shapes slower fails here. The score is in-sample (the rules
// were fitted to this file); KERNELS.md §2.4 gives the held-out-model figures.
TEST(GemmHeuristics, WithinAFewPercentOfTheFastestH200Candidate) {
  const auto pts = load_candidates(std::filesystem::path(NESTEDFP_SOURCE_DIR) /
                                   "bench/kernel-tables/h200.candidates.csv");
  ASSERT_GE(pts.size(), 500u);
  const Score s16 = score(pts, "nfp16", [](int M, int N, int K) {
    return h::kNfp16Choices[h::nfp16_choice(M, N, K, kH200Sms)];
  });
  const Score s8 = score(pts, "nfp8", [](int M, int N, int K) {
    return h::kNfp8Choices[h::nfp8_choice(M, N, K, kH200Sms)];
  });
  std::printf("[ nfp16: %zu points, heuristic / fastest %.4f geomean, %.3f worst (tune's %.4f) ]\n",
              s16.points, s16.geomean, s16.worst, s16.old_geomean);
  std::printf("[ nfp8: %zu points, heuristic / fastest %.4f geomean, %.3f worst (tune's %.4f) ]\n",
              s8.points, s8.geomean, s8.worst, s8.old_geomean);
  EXPECT_GE(s16.points, 250u);
  EXPECT_GE(s8.points, 250u);
  EXPECT_LE(s16.geomean, 1.01);
  EXPECT_LE(s16.worst, 1.20);
  EXPECT_LE(s8.geomean, 1.006);
  EXPECT_LE(s8.worst, 1.13);
  EXPECT_LE(s16.geomean, s16.old_geomean);
  EXPECT_LE(s8.geomean, s8.old_geomean);
}

}  // namespace
