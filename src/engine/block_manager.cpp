#include "engine/block_manager.hpp"

#include "nestedfp/error.hpp"

namespace nestedfp::engine {

BlockManager::BlockManager(int num_blocks) {
  if (num_blocks <= 0) fail("the KV cache needs at least one block (got {})", num_blocks);
  refcount_.assign(static_cast<size_t>(num_blocks), 0);
  free_.reserve(static_cast<size_t>(num_blocks));
  // Hand out low ids first: free_ is popped from the back.
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

void BlockManager::check_id(int32_t block, const char* what) const {
  if (block < 0 || block >= num_blocks())
    fail("{}: KV block id {} is out of range [0, {})", what, block, num_blocks());
}

int32_t BlockManager::allocate() {
  if (free_.empty()) fail("no free KV block (all {} in use)", num_blocks());
  int32_t b = free_.back();
  free_.pop_back();
  refcount_[static_cast<size_t>(b)] = 1;
  return b;
}

void BlockManager::add_ref(int32_t block) {
  check_id(block, "add_ref");
  if (refcount_[static_cast<size_t>(block)] == 0) fail("add_ref: KV block {} is free", block);
  ++refcount_[static_cast<size_t>(block)];
}

void BlockManager::release(int32_t block) {
  check_id(block, "release");
  auto& rc = refcount_[static_cast<size_t>(block)];
  if (rc == 0) fail("release: KV block {} is already free (double free)", block);
  if (--rc == 0) free_.push_back(block);
}

void BlockManager::release_all(std::vector<int32_t>& blocks) {
  for (int32_t b : blocks) release(b);
  blocks.clear();
}

int BlockManager::refcount(int32_t block) const {
  check_id(block, "refcount");
  return refcount_[static_cast<size_t>(block)];
}

}  // namespace nestedfp::engine
