#pragma once
// Paged-KV block ids with reference counts, and the automatic prefix cache (docs/DESIGN.md §3.6).
// The engine owns ids; the executor owns the memory behind them (step.hpp). Not thread-safe: the
// engine calls it under its own lock.
//
// Prefix cache (when enabled): a full block whose KV is computed can be registered under a key
// made of its parent's key (the block before it in the sequence; kRootKey for the first) and its
// kKvBlockSize token ids. Keys are ids that are never reused, so a key names exactly one token
// prefix, and a lookup compares the parent key and all the tokens: no hash collision can make two
// prefixes meet. A registered block whose last reference goes stays cached ("evictable") and can
// be revived by a lookup; allocate() takes never-cached free blocks first and then evicts the
// least recently released cached block.
#include <array>
#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "nestedfp/step.hpp"

namespace nestedfp::engine {

class BlockManager {
 public:
  static constexpr uint64_t kRootKey = 0;  // the parent key of a sequence's first block

  explicit BlockManager(int num_blocks, bool enable_caching = false);

  int num_blocks() const { return static_cast<int>(refcount_.size()); }
  // Blocks allocate() can hand out: never-cached free ones plus evictable cached ones.
  int num_free() const { return static_cast<int>(free_.size() + lru_.size()); }
  int num_used() const { return num_blocks() - num_free(); }
  int num_cached() const { return static_cast<int>(by_key_.size()); }  // in use or evictable
  int num_evictable() const { return static_cast<int>(lru_.size()); }
  bool can_allocate(int n) const { return n <= num_free(); }
  bool caching() const { return caching_; }

  // One block with reference count 1; throws Error when none is free (check can_allocate first).
  int32_t allocate();
  // Another owner of an allocated block (shared prefixes, forks).
  void add_ref(int32_t block);
  // Drops one reference; at zero the block becomes evictable (cached) or free.
  void release(int32_t block);
  // Releases each and clears the vector. With caching, the last block goes first, so a prefix's
  // early blocks (shared by more requests) are evicted last.
  void release_all(std::vector<int32_t>& blocks);
  int refcount(int32_t block) const;

  struct Hit {
    int32_t block = -1;
    uint64_t key = kRootKey;
  };
  // The cached block holding `tokens` (kKvBlockSize ids) after the prefix `parent`, with one more
  // reference (an evictable block is revived). nullopt when not cached or caching is off.
  std::optional<Hit> acquire_cached(uint64_t parent, std::span<const int32_t> tokens);
  // Registers `block` (full, its KV computed, referenced) as `tokens` after `parent` and returns
  // the key the next block chains on. When that content is cached already in another block, that
  // block's key is returned and `block` stays unregistered (it is freed normally).
  uint64_t register_full(int32_t block, uint64_t parent, std::span<const int32_t> tokens);

  static int blocks_for_tokens(int tokens) { return (tokens + kKvBlockSize - 1) / kKvBlockSize; }

 private:
  struct Content {
    uint64_t parent = kRootKey;
    std::array<int32_t, kKvBlockSize> tokens{};
    bool operator==(const Content&) const = default;
  };
  struct ContentHash {
    size_t operator()(const Content& c) const;
  };
  struct Entry {  // a registered block
    int32_t block = -1;
    uint64_t key = kRootKey;
  };
  static Content content(uint64_t parent, std::span<const int32_t> tokens);
  void check_id(int32_t block, const char* what) const;
  void evict(int32_t block);

  bool caching_ = false;
  std::vector<int32_t> refcount_;
  std::vector<int32_t> free_;  // never-cached or evicted, LIFO: recently freed reused first
  std::list<int32_t> lru_;     // evictable cached blocks, least recently released first
  std::vector<std::list<int32_t>::iterator> lru_pos_;
  std::vector<std::optional<Content>> content_;  // per block, when registered
  std::unordered_map<Content, Entry, ContentHash> by_key_;
  uint64_t next_key_ = kRootKey + 1;
};

}  // namespace nestedfp::engine
