#include "engine/scheduler.hpp"

#include <algorithm>
#include <span>

#include "nestedfp/error.hpp"

namespace nestedfp::engine {

Scheduler::Scheduler(BlockManager& blocks, SchedulerConfig cfg) : bm_(blocks), cfg_(cfg) {
  if (cfg_.max_num_batched_tokens < 1)
    fail("--max-num-batched-tokens must be at least 1 (got {})", cfg_.max_num_batched_tokens);
  if (cfg_.max_num_seqs < 1) fail("--max-num-seqs must be at least 1 (got {})", cfg_.max_num_seqs);
}

void Scheduler::add(Sequence* seq) {
  seq->running = false;
  seq->scheduled = false;
  waiting_.push_back(seq);
}

void Scheduler::remove(Sequence* seq) {
  drop_blocks(seq);
  for (Sequence* f : seq->forks) f->fork_of = nullptr;  // they prefill on their own now
  seq->forks.clear();
  if (seq->fork_of) std::erase(seq->fork_of->forks, seq);
  seq->fork_of = nullptr;
  if (seq->running) {
    std::erase(running_, seq);
  } else {
    auto it = std::find(waiting_.begin(), waiting_.end(), seq);
    if (it != waiting_.end()) waiting_.erase(it);
  }
  seq->running = false;
  seq->scheduled = false;
}

int Scheduler::free_token_capacity(const Sequence* s, int reserve_blocks) const {
  int blocks = static_cast<int>(s->blocks.size()) + std::max(0, bm_.num_free() - reserve_blocks);
  return blocks * kKvBlockSize - s->num_computed;
}

void Scheduler::allocate_for(Sequence* s, int tokens) {
  int need = BlockManager::blocks_for_tokens(tokens) - static_cast<int>(s->blocks.size());
  for (int i = 0; i < need; ++i) s->blocks.push_back(bm_.allocate());
}

bool Scheduler::ensure_capacity(Sequence* s, int tokens) {
  while (BlockManager::blocks_for_tokens(tokens) - static_cast<int>(s->blocks.size()) >
         bm_.num_free()) {
    // The newest running sequence not already in this step; `s` is a candidate itself.
    Sequence* victim = nullptr;
    for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
      if (!(*it)->scheduled) {
        victim = *it;
        break;
      }
    }
    if (!victim)
      fail("scheduler: no KV block can be freed for sequence {}",
           s->id);  // unreachable: s qualifies
    preempt(victim);
    if (victim == s) return false;
  }
  allocate_for(s, tokens);
  return true;
}

int Scheduler::num_waiting_preempted() const {
  return static_cast<int>(std::count_if(waiting_.begin(), waiting_.end(),
                                        [](const Sequence* s) { return s->num_preemptions > 0; }));
}

void Scheduler::drop_blocks(Sequence* s) {
  bm_.release_all(s->blocks);
  s->block_keys.clear();
  s->num_computed = 0;
}

void Scheduler::preempt(Sequence* s) {
  drop_blocks(s);
  s->running = false;
  s->scheduled = false;
  std::erase(running_, s);
  insert_waiting_front(s);
  ++s->num_preemptions;
  ++preemptions_;
}

void Scheduler::insert_running(Sequence* s) {
  auto it = std::upper_bound(
      running_.begin(), running_.end(), s,
      [](const Sequence* a, const Sequence* b) { return a->arrival < b->arrival; });
  running_.insert(it, s);
}

void Scheduler::insert_waiting_front(Sequence* s) {
  // Preempted sequences are older than anything that never ran: keep the queue in arrival order.
  auto it = std::find_if(waiting_.begin(), waiting_.end(),
                         [&](const Sequence* w) { return w->arrival > s->arrival; });
  waiting_.insert(it, s);
}

namespace {

// Leading full blocks a sequence may take from others: never all of its tokens (the step must
// compute at least the last one to get its logits), and none whose prompt logprobs it still lacks
// (those rows must be computed).
int shareable_blocks(const Sequence* s) {
  int n = (static_cast<int>(s->tokens.size()) - 1) / kKvBlockSize;
  if (s->want_prompt_logits && s->prompt_logit_rows < s->prompt_len - 1)
    n = std::min(n, s->prompt_logit_rows / kKvBlockSize);
  return std::max(0, n);
}

}  // namespace

bool Scheduler::waits_for_fork(const Sequence* s) const {
  const Sequence* p = s->fork_of;
  return p && p->running && p->num_computed < shareable_blocks(s) * kKvBlockSize;
}

int Scheduler::share_prefix(Sequence* s) {
  const int limit = shareable_blocks(s);
  if (const Sequence* p = s->fork_of; p && p->running) {
    // The same prompt: p's computed full blocks hold exactly this sequence's KV.
    const int k =
        std::min({limit, p->num_computed / kKvBlockSize, static_cast<int>(p->blocks.size())});
    for (int i = 0; i < k; ++i) {
      bm_.add_ref(p->blocks[static_cast<size_t>(i)]);
      s->blocks.push_back(p->blocks[static_cast<size_t>(i)]);
    }
    if (static_cast<int>(p->block_keys.size()) >= k)
      s->block_keys.assign(p->block_keys.begin(), p->block_keys.begin() + k);
  }
  if (bm_.caching() && s->block_keys.size() == s->blocks.size()) {
    uint64_t parent = s->block_keys.empty() ? BlockManager::kRootKey : s->block_keys.back();
    for (int i = static_cast<int>(s->blocks.size()); i < limit; ++i) {
      auto hit =
          bm_.acquire_cached(parent, std::span<const int32_t>(s->tokens).subspan(
                                         static_cast<size_t>(i) * kKvBlockSize, kKvBlockSize));
      if (!hit) break;
      s->blocks.push_back(hit->block);
      s->block_keys.push_back(hit->key);
      parent = hit->key;
    }
  }
  s->num_computed = static_cast<int>(s->blocks.size()) * kKvBlockSize;
  return s->num_computed;
}

void Scheduler::register_blocks(Sequence* s) {
  if (!bm_.caching()) return;
  const size_t full = static_cast<size_t>(s->num_computed / kKvBlockSize);
  for (size_t i = s->block_keys.size(); i < full; ++i) {
    const uint64_t parent = i ? s->block_keys[i - 1] : BlockManager::kRootKey;
    s->block_keys.push_back(bm_.register_full(
        s->blocks[i], parent,
        std::span<const int32_t>(s->tokens).subspan(i * kKvBlockSize, kKvBlockSize)));
  }
}

ScheduledChunk Scheduler::make_chunk(Sequence* s, int n) const {
  ScheduledChunk c;
  c.seq = s;
  c.start = s->num_computed;
  c.num_tokens = n;
  c.decode = s->is_decode();
  int end = c.start + n;
  c.need_logits = end == static_cast<int>(s->tokens.size()) && s->samples;
  c.need_all_logits =
      s->want_prompt_logits && c.start < s->prompt_len - 1 && end > s->prompt_logit_rows;
  return c;
}

std::vector<ScheduledChunk> Scheduler::schedule() {
  std::vector<ScheduledChunk> out;
  int budget = cfg_.max_num_batched_tokens;
  const size_t max_seqs = static_cast<size_t>(cfg_.max_num_seqs);
  for (Sequence* s : running_) s->scheduled = false;
  auto full = [&] { return budget == 0 || out.size() >= max_seqs; };
  auto take = [&](Sequence* s, int n) {
    s->scheduled = true;
    out.push_back(make_chunk(s, n));
    budget -= n;
  };

  // 1. Decodes first: they hold KV already and each token is a user-visible latency.
  std::vector<Sequence*> order = running_;
  for (Sequence* s : order) {
    if (full()) break;
    if (!s->running || !s->is_decode()) continue;
    if (!ensure_capacity(s, s->num_computed + 1)) continue;  // preempted itself
    take(s, 1);
    out.back().draft = std::min(s->draft_want, budget);  // blocks for them come last (4.)
    budget -= out.back().draft;
  }

  // 2. Prefill chunks of admitted sequences whose known tokens are not all computed yet.
  order = running_;
  for (Sequence* s : order) {
    if (full()) break;
    if (!s->running || s->scheduled) continue;
    int cap = free_token_capacity(s, 0);
    if (cap < 1) {
      if (!ensure_capacity(s, s->num_computed + 1)) continue;
      cap = free_token_capacity(s, 0);
    }
    int n = std::min({s->remaining(), budget, cap});
    allocate_for(s, s->num_computed + n);
    take(s, n);
  }

  // 3. Admit waiting sequences in order. Keep a small block reserve when others run, so that
  // admitting a long prompt does not immediately force running decodes into preemption.
  const int watermark = std::max(1, bm_.num_blocks() / 100);
  while (!waiting_.empty() && !full() && running_.size() < max_seqs) {
    Sequence* s = waiting_.front();
    if (waits_for_fork(s)) break;  // its first sample is computing the shared prompt
    const int shared = share_prefix(s);
    int cap = free_token_capacity(s, running_.empty() ? 0 : watermark);
    if (cap < 1) {
      drop_blocks(s);
      break;
    }
    if (s->fork_of) std::erase(s->fork_of->forks, s);
    s->fork_of = nullptr;
    if (bm_.caching()) {
      prefix_queries_ += s->tokens.size();
      prefix_hits_ += static_cast<uint64_t>(shared);
    }
    int n = std::min({s->remaining(), budget, cap});
    waiting_.pop_front();
    s->running = true;
    insert_running(s);
    allocate_for(s, s->num_computed + n);
    take(s, n);
  }

  // 4. Blocks for drafts from what is still free: fewer drafts rather than any preemption.
  for (ScheduledChunk& c : out) {
    if (c.draft == 0) continue;
    Sequence* s = c.seq;
    const int have = (static_cast<int>(s->blocks.size()) + bm_.num_free()) * kKvBlockSize;
    c.draft = std::max(0, std::min(c.draft, have - (c.start + 1)));
    allocate_for(s, c.start + 1 + c.draft);
  }
  return out;
}

void Scheduler::complete(const ScheduledChunk& chunk) {
  Sequence* s = chunk.seq;
  s->num_computed = chunk.start + chunk.num_tokens;
  s->scheduled = false;
  const size_t keep = static_cast<size_t>(BlockManager::blocks_for_tokens(s->num_computed));
  for (; s->blocks.size() > keep; s->blocks.pop_back()) bm_.release(s->blocks.back());
  register_blocks(s);
}

}  // namespace nestedfp::engine
