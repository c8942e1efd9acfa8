#pragma once
// Paged-KV block ids with reference counts. The engine owns ids; the executor owns the memory
// behind them (step.hpp). Not thread-safe: the engine calls it under its own lock.
#include <cstdint>
#include <vector>

#include "nestedfp/step.hpp"

namespace nestedfp::engine {

class BlockManager {
 public:
  explicit BlockManager(int num_blocks);

  int num_blocks() const { return static_cast<int>(refcount_.size()); }
  int num_free() const { return static_cast<int>(free_.size()); }
  int num_used() const { return num_blocks() - num_free(); }
  bool can_allocate(int n) const { return n <= num_free(); }

  // One block with reference count 1; throws Error when none is free (check can_allocate first).
  int32_t allocate();
  // Another owner of an allocated block (shared prefixes, forks).
  void add_ref(int32_t block);
  // Drops one reference; the block returns to the free list when none is left.
  void release(int32_t block);
  void release_all(std::vector<int32_t>& blocks);  // releases each and clears the vector
  int refcount(int32_t block) const;

  static int blocks_for_tokens(int tokens) { return (tokens + kKvBlockSize - 1) / kKvBlockSize; }

 private:
  void check_id(int32_t block, const char* what) const;
  std::vector<int32_t> refcount_;
  std::vector<int32_t> free_;  // LIFO: recently freed blocks are reused first (warm in cache)
};

}  // namespace nestedfp::engine
