#pragma once
// Continuous-batching scheduler (docs/DESIGN.md §3.5, preemption §3.7). Each step:
//   1. running sequences that decode (one token each), oldest first;
//   2. prefill chunks: sequences admitted earlier whose prompt is not fully computed, then the
//      waiting queue in order (new admissions), each chunk as large as the token budget left and
//      the free KV blocks allow (chunked prefill);
// within `max_num_batched_tokens` tokens and `max_num_seqs` sequences per step (and running).
//
// Preemption by recompute: when a running sequence needs a block and none is free, the
// lowest-priority (newest) running sequence not yet scheduled this step is preempted: its blocks
// are freed and it goes back to the front of the waiting queue with num_computed = 0. Its tokens
// already hold the prompt plus everything generated, so re-prefilling them recomputes exactly the
// lost KV. If the sequence needing the block is itself the newest, it preempts itself.
//
// Prefix sharing (§3.6): at admission a sequence takes the KV of its leading full blocks from the
// prefix cache, or, as a fork (one of a request's n samples), from the first sample once that one
// has computed the prompt; its first chunk then starts after them. Forks wait at the head of the
// queue until then. Full blocks are registered in the cache as they are computed.
//
// Not thread-safe: the engine calls it under its lock.
#include <cstdint>
#include <deque>
#include <vector>

#include "engine/block_manager.hpp"

namespace nestedfp::engine {

struct Sequence {
  int64_t id = 0;
  uint64_t arrival = 0;         // priority: smaller = older = served first
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int prompt_len = 0;
  int num_computed = 0;         // tokens [0, num_computed) have KV in `blocks`
  std::vector<int32_t> blocks;  // block table
  bool samples = true;          // a completed chunk is followed by sampling a token
  bool want_prompt_logits = false;
  int prompt_logit_rows = 0;  // rows collected: logits of positions [0, prompt_logit_rows)
  int num_preemptions = 0;
  // Prefix-cache keys of blocks [0, block_keys.size()), all full and computed (BlockManager).
  std::vector<uint64_t> block_keys;
  // A sample of an n > 1 request that has not forked yet: shares fork_of's prompt blocks at
  // admission. Cleared when it forks or when fork_of leaves the scheduler.
  Sequence* fork_of = nullptr;
  std::vector<Sequence*> forks;  // the samples waiting to fork from this one
  bool running = false;          // admitted (holds blocks or is about to)
  bool scheduled = false;        // part of the step being built
  // Speculative decoding (docs/DESIGN.md §3.13): tokens the engine would like to draft after this
  // sequence's next decode token (0: none). The scheduler grants fewer when the token budget or
  // the free KV blocks do not allow them; it never preempts for drafts.
  int draft_want = 0;

  int remaining() const { return static_cast<int>(tokens.size()) - num_computed; }
  bool is_decode() const { return running && num_computed > 0 && remaining() == 1; }
};

struct ScheduledChunk {
  Sequence* seq = nullptr;
  int start = 0;  // == seq->num_computed when scheduled
  int num_tokens = 0;
  bool decode = false;
  bool need_logits = false;      // last row: the chunk completes the known tokens and seq samples
  bool need_all_logits = false;  // every row: prompt logprobs still missing for these positions
  // A decode chunk: tokens that may be drafted after it; the budget holds them and the block table
  // covers positions [0, start + 1 + draft).
  int draft = 0;
};

struct SchedulerConfig {
  int max_num_batched_tokens = 512;
  int max_num_seqs = 32;
};

class Scheduler {
 public:
  Scheduler(BlockManager& blocks, SchedulerConfig cfg);

  void add(Sequence* seq);     // to the back of the waiting queue
  void remove(Sequence* seq);  // finished or aborted: frees its blocks, leaves the queues
  std::vector<ScheduledChunk> schedule();
  // After the executor ran `chunk`: its tokens' KV is cached now. Blocks past the computed
  // tokens (drafts that were not used or not accepted) go back to the pool.
  void complete(const ScheduledChunk& chunk);

  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  // Of those, the ones preempted after running (they wait ahead of new ones, outside --max-queue).
  int num_waiting_preempted() const;
  int num_running() const { return static_cast<int>(running_.size()); }
  uint64_t num_preemptions() const { return preemptions_; }
  // Tokens of admitted sequences looked up in the prefix cache, and those found (with forks).
  uint64_t prefix_queries() const { return prefix_queries_; }
  uint64_t prefix_hits() const { return prefix_hits_; }
  const SchedulerConfig& config() const { return cfg_; }

 private:
  bool ensure_capacity(Sequence* s, int tokens);
  int free_token_capacity(const Sequence* s, int reserve_blocks) const;
  void allocate_for(Sequence* s, int tokens);
  void preempt(Sequence* s);
  void drop_blocks(Sequence* s);
  bool waits_for_fork(const Sequence* s) const;
  int share_prefix(Sequence* s);  // tokens whose KV it took (blocks, num_computed, block_keys)
  void register_blocks(Sequence* s);
  void insert_running(Sequence* s);
  void insert_waiting_front(Sequence* s);
  ScheduledChunk make_chunk(Sequence* s, int n) const;

  BlockManager& bm_;
  SchedulerConfig cfg_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // sorted by arrival (priority)
  uint64_t preemptions_ = 0;
  uint64_t prefix_queries_ = 0, prefix_hits_ = 0;
};

}  // namespace nestedfp::engine
