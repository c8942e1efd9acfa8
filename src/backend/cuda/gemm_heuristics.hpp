#pragma once
// The configuration each nested GEMM family runs where the kernel table has no entry (another
// GPU, a model nobody tuned, `--kernel-table none`). Plain C++ with no CUDA: the dispatchers
// (nested_fp16_gemm.cu, nested_fp8_gemm.cu) resolve the names at compile time, and
// tests/cpu/gemm_heuristics_test.cpp scores the rules against every candidate that `tune` timed
// on the H200 (bench/kernel-tables/h200.candidates.csv; docs/KERNELS.md §2.4).
//
// Fitted to that file (2026-12-02: 25 weight shapes of Llama-3.1-8B and Mistral-Small-24B at
// TP 1 and 4, 12 token counts each). Fitted on one model, the other model's points ran within
// 0.5% (NestedFP8 both ways; NestedFP16 fitted on Llama, 1.3% the other way) of their fastest
// candidate (geometric mean; docs/KERNELS.md §2.4); the NestedFP8 refit of session 27 (the
// double-buffered kernels) used both models, and its K >= 16384 rules rest on Mistral's
// down_proj alone. The rules, in words:
//  - few weight rows: the streaming mma kernels, whose token tiles each re-read the weight, win
//    at small M (NestedFP16: up to M = 64 for N <= 2048, M = 256 for N <= 512; NestedFP8: up to
//    M = 8 and 32, above which the ping-pong tiles with the double-buffered promotion win);
//  - NestedFP16 only, few tokens on weights up to 64 MB: the mma kernels too (they keep more
//    loads in flight than a 128-row TMA tile on 132 SMs);
//  - otherwise the largest CUTLASS tile that still gives enough tiles to fill the SMs: the
//    NestedFP16 stream-K tiles need fewer at long K (stream-K splits K), the NestedFP8 tiles
//    about 0.6 per SM; NestedFP8 then runs the 64x32 and 128x64 tiles as clusters of 2 along
//    the tokens (`t2`) where their CTAs fit in one wave (up to 8 token tiles), keeps 64-row tiles
//    up to 64 tokens, and runs the 128x128 tile under stream-K where its tiles just overflow one
//    wave or K >= 16384 (re-fitted in sessions 25 and 27).
#include <array>
#include <cstdint>
#include <string_view>

namespace nestedfp::cuda::heuristic {

// Cluster size along K of a streaming mma launch (nested_mma_stream.cuh): the smallest power of
// two up to 8 that gives every SM a CTA, while each K slice keeps at least `stages` blocks.
constexpr int mma_stream_splits(int64_t ctas, int k_blocks, int stages, int sms) {
  int s = 1;
  while (s < 8 && ctas * s < sms && k_blocks / (2 * s) >= stages) s *= 2;
  return s;
}

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int pow2_at_least(int x) {  // capped at 2^20: no tile is larger
  int t = 1;
  while (t < x && t < (1 << 20)) t *= 2;
  return t;
}

// What the heuristics may return; every name must be in the default kernel set (the dispatchers
// check this at compile time, the CPU test against gemm_configs.def).
inline constexpr std::array<std::string_view, 12> kNfp16Choices = {"mma128x8",
                                                                   "mma128x16",
                                                                   "mma128x32",
                                                                   "mma128x64",
                                                                   "mma128x8s2",
                                                                   "mma128x16s2",
                                                                   "t128x16x128_coop_sk",
                                                                   "t128x32x128_coop_sk",
                                                                   "t128x64x128_coop_sk",
                                                                   "t128x128x64_coop_sk",
                                                                   "t128x256x64_coop_sk",
                                                                   "t256x128x64_coop_sk"};
inline constexpr std::array<std::string_view, 12> kNfp8Choices = {
    "mma128x8",  "mma128x16",  "mma128x32",      "mma128x64",   "pp64x16p8",      "pp64x32",
    "pp64x64p8", "sk128x64p8", "coop128x128p16", "pp64x32t2p8", "coop128x64t2p8", "sk128x128p16"};

constexpr int mma_index(int tokens) {  // 8, 16, 32, 64 -> 0..3 in both lists
  return tokens <= 8 ? 0 : tokens <= 16 ? 1 : tokens <= 32 ? 2 : 3;
}

// NestedFP16: an index into kNfp16Choices.
constexpr int nfp16_choice(int M, int N, int K, int sms) {
  if (M < 1 || N < 1 || K < 1 || sms < 1) return 6;  // the callers refuse such shapes anyway
  auto mma = [&](int tokens) {
    tokens = tokens < 8 ? 8 : tokens > 64 ? 64 : tokens;
    // mma128x8 / x16 keep 4 weight blocks in flight (~80 KB of shared memory: 2 CTAs per SM).
    // When their K-split clusters of 4 or 8 CTAs need more than ~1.8 CTAs per SM, the clusters
    // no longer fit at once and a second wave starts; the 2-stage variants fit more CTAs per SM
    // (N = 4096 and 8192 at M <= 16 on the H200: 1.06-1.3x; the second wave measured in
    // bench/results/2026-12-02-h200-mma-splits.md).
    const int64_t ctas = ceil_div(N, 128) * ceil_div(M, tokens);
    const int s = mma_stream_splits(ctas, int(ceil_div(K, 64)), 4, sms);
    if (tokens <= 16 && s >= 4 && 10 * ctas * s > 18 * int64_t(sms)) return tokens <= 8 ? 4 : 5;
    return mma_index(tokens);
  };
  if (N <= 512 && M <= 256) return mma(pow2_at_least(M) / 4);
  if (N <= 2048 && M <= 64) return mma(pow2_at_least(M));
  if (M <= 16 && int64_t(N) * K <= (int64_t(32) << 20)) return mma(M <= 8 ? 8 : 16);
  // Very wide layers at 64 < M <= 128: the 256-row tile (fewer, fuller waves).
  if (M > 64 && M <= 128 && N >= 24576) return 11;
  // Tiles wanted: 0.3 per SM (40 of 132) at K = 4096, times sqrt(4096 / K): more at short K
  // (less for stream-K to split), fewer at long K. An integer square root keeps this constexpr.
  int64_t want = 0;
  {
    const int64_t sq = int64_t(40 * 40) * sms * sms * 4096 / (int64_t(132 * 132) * K);
    while ((want + 1) * (want + 1) <= sq) ++want;
  }
  const int64_t rows = ceil_div(N, 128);
  int t = pow2_at_least(M);
  t = t < 16 ? 16 : t > 256 ? 256 : t;
  while (t > 16 && rows * ceil_div(M, t) < want) t /= 2;
  // At most 64 token tiles per row block (as `tune` filters its candidates): more re-read the
  // weight too often.
  while (t < 256 && int64_t(t) * 64 < M) t *= 2;
  switch (t) {
    case 16: return 6;
    case 32: return 7;
    case 64: return 8;
    case 128: return 9;
    default: return 10;
  }
}

// NestedFP8: an index into kNfp8Choices.
constexpr int nfp8_choice(int M, int N, int K, int sms) {
  if (M < 1 || N < 1 || sms < 1) return 4;  // the callers refuse such shapes anyway
  // The streaming mma kernels on narrow layers at few tokens; above, the ping-pong kernels with
  // the double-buffered promotion (PingDb, session 27) are as fast or faster.
  if (N <= 512 && M <= 32) return 0;  // mma128x8
  if (N <= 2048 && M <= 8) return 0;  // mma128x8
  // The largest tile (64x16, 64x32, 64x64, 128x64 stream-K, 128x128) whose tile count reaches
  // 0.6 per SM, and whose token tile is at least M / 64 (more tiles per row block are slow).
  struct Tile {
    int rows, tokens, choice;
  };
  constexpr Tile tiles[] = {{64, 16, 4}, {64, 32, 5}, {64, 64, 6}, {128, 64, 7}, {128, 128, 8}};
  const int64_t want = (int64_t(6) * sms + 9) / 10;
  const int cap = pow2_at_least(M) < 16 ? 16 : pow2_at_least(M);
  int pick = 0;
  for (int i = 0; i < 5; ++i) {
    const Tile& t = tiles[i];
    if (t.tokens > cap) break;
    if (ceil_div(N, t.rows) * ceil_div(M, t.tokens) < want) break;
    pick = i;
  }
  while (pick < 4 && int64_t(tiles[pick].tokens) * 64 < M) ++pick;
  // Up to 64 tokens the 64-row ping-pong tiles stay (128x64 stream-K is 3-9% slower there).
  if (M <= 64 && pick > 2) pick = 2;
  // Two token tiles or more that fit in one wave as clusters of 2 along the tokens: the `t2`
  // kernel, which multicasts each weight tile to both CTAs (4-10% faster on the H200 at
  // M = 64-256 on 3584-7168-row layers, bench/results/2026-12-02-h200-nfp8-t2.md).
  const Tile& t = tiles[pick];
  // (an odd number of token tiles still launches whole clusters). Up to 8 token tiles: with more
  // (narrow layers at M >= 1024) the stream-K / plain kernels are 6-16% faster.
  if ((t.choice == 5 || t.choice == 7) && M > t.tokens && M <= 8 * t.tokens &&
      ceil_div(N, t.rows) * 2 * ceil_div(ceil_div(M, t.tokens), 2) <= sms)
    return t.choice == 5 ? 9 : 10;
  // 128x128 tiles just over one wave (at most a quarter of the SMs in the second; 5120 rows at
  // M = 512: 160 tiles for 132 SMs) at K >= 2048: stream-K spreads the remainder over every SM
  // (1.2-1.35x faster than the persistent kernel on 5120x8192 and 5120x32768).
  // At K >= 16384 up to three waves of 128x128 tiles: stream-K, on 128x64 tiles below one wave
  // (1.07-1.18x faster than the persistent kernel). Fitted to one layer, Mistral-Small's
  // down_proj (5120x32768 at M = 256 and 1024): the only K >= 16384 shape tuned.
  if (t.choice == 8) {
    const int64_t n = ceil_div(N, 128) * ceil_div(M, 128);
    if (K >= 16384 && n < sms && M <= 64 * 64) return 7;  // (at most 64 token tiles)
    if (K >= 16384 && n <= 3 * int64_t(sms)) return 11;
    if (K >= 2048 && n > sms && 4 * (n - sms) <= sms) return 11;
  }
  return t.choice;
}

}  // namespace nestedfp::cuda::heuristic
