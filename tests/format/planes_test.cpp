#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "nestedfp/format.hpp"

using namespace nestedfp::format;

// AVX2 against scalar on random bit patterns (all of them, not only representable ones), odd
// lengths and unaligned starts; bytes past n must stay untouched.
TEST(Planes, Avx2MatchesScalarOnRandomBuffers) {
  if (!have_avx2()) GTEST_SKIP() << "CPU has no AVX2";
  std::mt19937 rng(11);
  for (size_t n : {0, 1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1001, 4097, 65537}) {
    for (size_t off : {0, 1, 3}) {
      std::vector<uint16_t> src(n + off + 8);
      for (auto& v : src) v = uint16_t(rng());
      const size_t total = n + off + 40;
      std::vector<uint8_t> u1(total, 0xA5), l1(total, 0xA5), u2(total, 0xA5), l2(total, 0xA5);
      split_planes_scalar(src.data() + off, u1.data() + off, l1.data() + off, n);
      split_planes_avx2(src.data() + off, u2.data() + off, l2.data() + off, n);
      ASSERT_EQ(u1, u2) << "n=" << n << " off=" << off;
      ASSERT_EQ(l1, l2) << "n=" << n << " off=" << off;

      std::vector<uint8_t> up(n + off), lo(n + off);
      for (auto& v : up) v = uint8_t(rng());
      for (auto& v : lo) v = uint8_t(rng());
      std::vector<uint16_t> d1(n + off + 20, 0x5A5A), d2(n + off + 20, 0x5A5A);
      merge_planes_scalar(up.data() + off, lo.data() + off, d1.data() + off, n);
      merge_planes_avx2(up.data() + off, lo.data() + off, d2.data() + off, n);
      ASSERT_EQ(d1, d2) << "n=" << n << " off=" << off;
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(d1[off + i], merge(up[off + i], lo[off + i]));
    }
  }
}
