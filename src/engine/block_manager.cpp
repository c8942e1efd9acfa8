#include "engine/block_manager.hpp"

#include <algorithm>

#include "nestedfp/error.hpp"

namespace nestedfp::engine {

BlockManager::BlockManager(int num_blocks, bool enable_caching) : caching_(enable_caching) {
  if (num_blocks <= 0) fail("the KV cache needs at least one block (got {})", num_blocks);
  refcount_.assign(static_cast<size_t>(num_blocks), 0);
  lru_pos_.assign(static_cast<size_t>(num_blocks), lru_.end());
  content_.assign(static_cast<size_t>(num_blocks), std::nullopt);
  free_.reserve(static_cast<size_t>(num_blocks));
  // Hand out low ids first: free_ is popped from the back.
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

void BlockManager::check_id(int32_t block, const char* what) const {
  if (block < 0 || block >= num_blocks())
    fail("{}: KV block id {} is out of range [0, {})", what, block, num_blocks());
}

size_t BlockManager::ContentHash::operator()(const Content& c) const {
  // The chain hash: the parent's key, then each token, mixed (splitmix64 finalizer).
  uint64_t h = c.parent * 0x9e3779b97f4a7c15ull;
  for (int32_t t : c.tokens) {
    h ^= static_cast<uint32_t>(t) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return static_cast<size_t>(h);
}

BlockManager::Content BlockManager::content(uint64_t parent, std::span<const int32_t> tokens) {
  if (tokens.size() != static_cast<size_t>(kKvBlockSize))
    fail("prefix cache: a block holds {} tokens, got {}", kKvBlockSize, tokens.size());
  Content c;
  c.parent = parent;
  std::copy(tokens.begin(), tokens.end(), c.tokens.begin());
  return c;
}

void BlockManager::evict(int32_t block) {
  auto& c = content_[static_cast<size_t>(block)];
  if (c) by_key_.erase(*c);
  c.reset();
}

int32_t BlockManager::allocate() {
  int32_t b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {  // only then give up cached KV: the least recently released
    b = lru_.front();
    lru_.pop_front();
    lru_pos_[static_cast<size_t>(b)] = lru_.end();
    evict(b);
  } else {
    fail("no free KV block (all {} in use)", num_blocks());
  }
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
  if (--rc > 0) return;
  if (content_[static_cast<size_t>(block)])
    lru_pos_[static_cast<size_t>(block)] = lru_.insert(lru_.end(), block);
  else
    free_.push_back(block);
}

void BlockManager::release_all(std::vector<int32_t>& blocks) {
  if (caching_)
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) release(*it);
  else
    for (int32_t b : blocks) release(b);
  blocks.clear();
}

int BlockManager::refcount(int32_t block) const {
  check_id(block, "refcount");
  return refcount_[static_cast<size_t>(block)];
}

std::optional<BlockManager::Hit> BlockManager::acquire_cached(uint64_t parent,
                                                              std::span<const int32_t> tokens) {
  if (!caching_) return std::nullopt;
  auto it = by_key_.find(content(parent, tokens));
  if (it == by_key_.end()) return std::nullopt;
  const int32_t b = it->second.block;
  auto& rc = refcount_[static_cast<size_t>(b)];
  if (rc == 0) {
    lru_.erase(lru_pos_[static_cast<size_t>(b)]);
    lru_pos_[static_cast<size_t>(b)] = lru_.end();
  }
  ++rc;
  return Hit{b, it->second.key};
}

uint64_t BlockManager::register_full(int32_t block, uint64_t parent,
                                     std::span<const int32_t> tokens) {
  check_id(block, "register_full");
  if (!caching_) fail("register_full: the prefix cache is off");
  if (refcount_[static_cast<size_t>(block)] == 0) fail("register_full: KV block {} is free", block);
  Content c = content(parent, tokens);
  auto& mine = content_[static_cast<size_t>(block)];
  if (mine) {  // registered already (a cache hit): its key stands
    if (*mine != c) fail("register_full: KV block {} is cached with other tokens", block);
    return by_key_.at(c).key;
  }
  auto [it, inserted] = by_key_.try_emplace(c, Entry{block, next_key_});
  if (!inserted) return it->second.key;  // same prefix computed twice: keep the first
  mine = std::move(c);
  return next_key_++;
}

}  // namespace nestedfp::engine
