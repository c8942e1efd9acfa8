#include "engine/block_manager.hpp"

#include <gtest/gtest.h>

#include <set>

#include "nestedfp/error.hpp"

using nestedfp::Error;
using nestedfp::engine::BlockManager;

TEST(BlockManager, AllocatesEveryBlockOnceThenRefuses) {
  BlockManager bm(5);
  std::set<int32_t> got;
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(bm.can_allocate(5 - i));
    EXPECT_FALSE(bm.can_allocate(6 - i));
    got.insert(bm.allocate());
    EXPECT_EQ(bm.num_free(), 4 - i);
    EXPECT_EQ(bm.num_used(), i + 1);
  }
  EXPECT_EQ(got, (std::set<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_FALSE(bm.can_allocate(1));
  EXPECT_THROW(bm.allocate(), Error);
}

TEST(BlockManager, ReferenceCountsKeepSharedBlocksAlive) {
  BlockManager bm(3);
  int32_t b = bm.allocate();
  EXPECT_EQ(bm.refcount(b), 1);
  bm.add_ref(b);
  bm.add_ref(b);
  EXPECT_EQ(bm.refcount(b), 3);
  bm.release(b);
  bm.release(b);
  EXPECT_EQ(bm.num_free(), 2);  // still owned once
  EXPECT_EQ(bm.refcount(b), 1);
  bm.release(b);
  EXPECT_EQ(bm.num_free(), 3);
  EXPECT_EQ(bm.refcount(b), 0);
  EXPECT_THROW(bm.release(b), Error);  // double free
  EXPECT_THROW(bm.add_ref(b), Error);  // reviving a free block
}

TEST(BlockManager, RejectsBadIdsAndSizes) {
  EXPECT_THROW(BlockManager(0), Error);
  BlockManager bm(2);
  EXPECT_THROW(bm.release(2), Error);
  EXPECT_THROW(bm.release(-1), Error);
  EXPECT_THROW(bm.refcount(7), Error);
}

TEST(BlockManager, ReleaseAllAndReuse) {
  BlockManager bm(4);
  std::vector<int32_t> table{bm.allocate(), bm.allocate(), bm.allocate()};
  int32_t last = table.back();
  bm.release_all(table);
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(bm.num_free(), 4);
  EXPECT_EQ(bm.allocate(), last);  // most recently freed first
}

TEST(BlockManager, BlocksForTokens) {
  EXPECT_EQ(BlockManager::blocks_for_tokens(0), 0);
  EXPECT_EQ(BlockManager::blocks_for_tokens(1), 1);
  EXPECT_EQ(BlockManager::blocks_for_tokens(16), 1);
  EXPECT_EQ(BlockManager::blocks_for_tokens(17), 2);
}

namespace {
std::vector<int32_t> block_tokens(int first) {
  std::vector<int32_t> t(16);
  for (int i = 0; i < 16; ++i) t[static_cast<size_t>(i)] = first + i;
  return t;
}
}  // namespace

TEST(PrefixCache, RegisteredBlocksAreFoundOnlyUnderTheSameParentAndTokens) {
  BlockManager bm(4, /*enable_caching=*/true);
  const auto t0 = block_tokens(0), t1 = block_tokens(100);
  int32_t a = bm.allocate(), b = bm.allocate();
  uint64_t ka = bm.register_full(a, BlockManager::kRootKey, t0);
  uint64_t kb = bm.register_full(b, ka, t1);
  EXPECT_NE(ka, BlockManager::kRootKey);
  EXPECT_NE(ka, kb);
  EXPECT_EQ(bm.num_cached(), 2);
  // Same tokens under another parent, or one token different: misses.
  EXPECT_FALSE(bm.acquire_cached(BlockManager::kRootKey, t1));
  auto t1x = t1;
  t1x[15] += 1;
  EXPECT_FALSE(bm.acquire_cached(ka, t1x));
  auto hit = bm.acquire_cached(ka, t1);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->block, b);
  EXPECT_EQ(hit->key, kb);
  EXPECT_EQ(bm.refcount(b), 2);  // shared with its first owner
  // The same content computed again elsewhere keeps the first block and returns its key.
  int32_t c = bm.allocate();
  EXPECT_EQ(bm.register_full(c, BlockManager::kRootKey, t0), ka);
  bm.release(c);
  EXPECT_EQ(bm.refcount(c), 0);
  EXPECT_EQ(bm.num_cached(), 2);
}

TEST(PrefixCache, FreedCachedBlocksStayFindableUntilEvictedLeastRecentlyReleasedFirst) {
  BlockManager bm(3, true);
  std::vector<int32_t> table{bm.allocate(), bm.allocate()};
  uint64_t k0 = bm.register_full(table[0], BlockManager::kRootKey, block_tokens(0));
  uint64_t k1 = bm.register_full(table[1], k0, block_tokens(16));
  const int32_t first = table[0], second = table[1];
  bm.release_all(table);  // the last block first: the prefix's head is evicted last
  EXPECT_EQ(bm.num_free(), 3);
  EXPECT_EQ(bm.num_used(), 0);
  EXPECT_EQ(bm.num_evictable(), 2);
  // A lookup revives an evictable block.
  auto hit = bm.acquire_cached(BlockManager::kRootKey, block_tokens(0));
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->block, first);
  EXPECT_EQ(bm.num_free(), 2);
  bm.release(first);
  // The never-cached block goes first, then the least recently released cached one (second).
  int32_t x = bm.allocate();
  EXPECT_NE(x, first);
  EXPECT_NE(x, second);
  EXPECT_EQ(bm.allocate(), second);
  EXPECT_FALSE(bm.acquire_cached(k0, block_tokens(16)));  // evicted with its block
  EXPECT_EQ(bm.num_cached(), 1);
  (void)k1;
  EXPECT_EQ(bm.allocate(), first);
  EXPECT_FALSE(bm.acquire_cached(BlockManager::kRootKey, block_tokens(0)));
  EXPECT_EQ(bm.num_cached(), 0);
  EXPECT_THROW(bm.allocate(), Error);
}

TEST(PrefixCache, OffMeansNoLookupsAndTheOldReleaseOrder) {
  BlockManager bm(3);
  int32_t a = bm.allocate();
  EXPECT_THROW(bm.register_full(a, BlockManager::kRootKey, block_tokens(0)), Error);
  EXPECT_FALSE(bm.acquire_cached(BlockManager::kRootKey, block_tokens(0)));
  EXPECT_THROW(BlockManager(2, true).register_full(0, 0, block_tokens(0)), Error);  // a free block
  BlockManager on(2, true);
  EXPECT_THROW(on.acquire_cached(0, std::vector<int32_t>(15)), Error);  // not a whole block
}
