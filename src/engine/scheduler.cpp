#include "engine/scheduler.hpp"

#include <algorithm>

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
  bm_.release_all(seq->blocks);
  seq->num_computed = 0;
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

void Scheduler::preempt(Sequence* s) {
  bm_.release_all(s->blocks);
  s->num_computed = 0;
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
    int cap = free_token_capacity(s, running_.empty() ? 0 : watermark);
    if (cap < 1) break;
    int n = std::min({s->remaining(), budget, cap});
    waiting_.pop_front();
    s->running = true;
    insert_running(s);
    allocate_for(s, n);
    take(s, n);
  }
  return out;
}

void Scheduler::complete(const ScheduledChunk& chunk) {
  Sequence* s = chunk.seq;
  s->num_computed = chunk.start + chunk.num_tokens;
  s->scheduled = false;
}

}  // namespace nestedfp::engine
