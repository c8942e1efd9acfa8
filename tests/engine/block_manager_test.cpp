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
