// The GPU split kernel against the CPU codec (src/format), bit for bit; merge round trip.
#include <gtest/gtest.h>

#include "gpu_util.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/format.hpp"

namespace nestedfp::gputest {
namespace {

struct GpuSplit {
  cuda::SplitStatus st;
  std::vector<uint8_t> upper, lower;
  std::vector<int8_t> k;
};

GpuSplit gpu_split(const std::vector<uint16_t>& w, int N, int K, bool channel) {
  DeviceBuffer<uint16_t> dw(w);
  DeviceBuffer<uint8_t> up(size_t(N) * K), lo(size_t(N) * K);
  DeviceBuffer<int8_t> dk(N);
  up.poison();
  lo.poison();
  dk.poison();
  GpuSplit g;
  g.st =
      cuda::split_weight(as_half(dw.get()), N, K, channel, up.get(), lo.get(), dk.get(), nullptr);
  g.upper = up.download();
  g.lower = lo.download();
  g.k = dk.download();
  return g;
}

void expect_same_as_cpu(const std::vector<uint16_t>& w, int N, int K, format::ScaleMode mode) {
  const auto cpu = format::split_tensor(w.data(), N, K, mode);
  const auto g = gpu_split(w, N, K, mode == format::ScaleMode::Channel);
  ASSERT_TRUE(g.st.ok) << "GPU rejected row " << g.st.bad_row << " that the CPU codec nests";
  ASSERT_EQ(g.k, cpu.k);
  size_t bad = 0;
  for (size_t i = 0; i < g.upper.size(); ++i)
    bad += g.upper[i] != cpu.upper[i] || g.lower[i] != cpu.lower[i];
  EXPECT_EQ(bad, 0u) << "plane bytes differing from the CPU codec";
  // Merge on the GPU gives back the scaled FP16 values bit for bit.
  DeviceBuffer<uint8_t> up(g.upper), lo(g.lower);
  DeviceBuffer<uint16_t> out(size_t(N) * K);
  out.poison();
  cuda::merge_planes(up.get(), lo.get(), as_half(out.get()), int64_t(N) * K, nullptr);
  EXPECT_EQ(out.download(), format::merge_tensor(cpu));
}

TEST(Split, AllRepresentablePatternsMatchCpuCodec) {
  std::vector<uint16_t> w;
  for (uint32_t h = 0; h < 0x10000; ++h)
    if ((h & 0x7FFF) < 0x3F80) w.push_back(uint16_t(h));  // |w| < 1.875
  while (w.size() % 64) w.push_back(0x3C00);
  const int K = 64, N = int(w.size() / K);
  expect_same_as_cpu(w, N, K, format::ScaleMode::None);
}

TEST(Split, RandomRowsBothModesMatchCpuCodec) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto [N, K] : {std::pair{67, 200}, std::pair{256, 4096}, std::pair{8, 16}}) {
    // Magnitudes from 2^-14 (subnormals appear) to ~0.3: every row gets some k > 0.
    auto w = random_rows(rng, N, K, -14.f, -2.f);
    expect_same_as_cpu(w, N, K, format::ScaleMode::Channel);
    auto w2 = random_rows(rng, N, K, -8.f, -3.f);  // small enough for ScaleMode::None
    expect_same_as_cpu(w2, N, K, format::ScaleMode::None);
  }
}

TEST(Split, AdversarialRowsMatchCpuCodec) {
  const int K = 48;
  std::vector<std::vector<uint16_t>> rows;
  auto row_of = [&](std::initializer_list<uint16_t> vals) {
    std::vector<uint16_t> r(K, 0x2E66);  // 0.1
    size_t i = 0;
    for (uint16_t v : vals) r[i++] = v;
    rows.push_back(r);
  };
  row_of({0x3F00});                  // 1.75 exactly: k = 0
  row_of({0x3F7F, 0xBF7F});          // just below 1.875: negative k, lossless
  row_of({0x3F7F, 0x0001});          // negative k would drop a subnormal bit -> k = 0
  row_of({0x4400, 0x0400});          // 4.0 with the smallest normal: k = -2, exact
  row_of({0x0001, 0x0003, 0x8002});  // subnormals only (rest set below)
  rows.back().assign(K, 0x0001);
  rows.back()[1] = 0x83FF;
  rows.push_back(std::vector<uint16_t>(K, 0));       // all-zero row: k = 0
  rows.push_back(std::vector<uint16_t>(K, 0x8000));  // negative zeros
  row_of({0x3B00, 0x3B80, 0x3BC0, 0x3C40});          // ties at the rounding boundary
  std::vector<uint16_t> w;
  for (auto& r : rows) w.insert(w.end(), r.begin(), r.end());
  expect_same_as_cpu(w, int(rows.size()), K, format::ScaleMode::Channel);
}

TEST(Split, IneligibleRowIsReported) {
  const int N = 5, K = 32;
  std::vector<uint16_t> w(size_t(N) * K, 0x2E66);
  w[3 * K + 7] = 0x4000;  // 2.0: not representable without a scale
  auto g = gpu_split(w, N, K, false);
  EXPECT_FALSE(g.st.ok);
  EXPECT_EQ(g.st.bad_row, 3);
  EXPECT_THROW(format::split_tensor(w.data(), N, K, format::ScaleMode::None), Error);
  // With channel scales the row is fine (k = -1 is exact here).
  expect_same_as_cpu(w, N, K, format::ScaleMode::Channel);
  // A large value next to a subnormal that k < 0 would lose: not nestable in either mode.
  w[3 * K + 8] = 0x0001;
  EXPECT_FALSE(gpu_split(w, N, K, true).st.ok);
  EXPECT_THROW(format::split_tensor(w.data(), N, K, format::ScaleMode::Channel), Error);
}

}  // namespace
}  // namespace nestedfp::gputest
