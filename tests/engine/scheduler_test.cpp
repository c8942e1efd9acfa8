#include "engine/scheduler.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <numeric>

using namespace nestedfp::engine;

namespace {

struct Fixture {
  Fixture(int blocks, int budget, int max_seqs, bool caching = false)
      : bm(blocks, caching), sched(bm, {budget, max_seqs}) {}
  Sequence* add(int prompt_len) {
    auto s = std::make_unique<Sequence>();
    s->id = static_cast<int64_t>(seqs.size()) + 1;
    s->arrival = seqs.size();
    s->tokens.resize(static_cast<size_t>(prompt_len));
    std::iota(s->tokens.begin(), s->tokens.end(), 0);
    s->prompt_len = prompt_len;
    sched.add(s.get());
    seqs.push_back(std::move(s));
    return seqs.back().get();
  }
  // Runs the scheduled chunks: completes them and appends a token where one would be sampled.
  std::vector<ScheduledChunk> step() {
    auto chunks = sched.schedule();
    for (auto& c : chunks) {
      EXPECT_GE(static_cast<int>(c.seq->blocks.size()) * 16, c.start + c.num_tokens);
      sched.complete(c);
      if (c.need_logits) c.seq->tokens.push_back(7);
    }
    return chunks;
  }
  int total(const std::vector<ScheduledChunk>& cs) {
    int n = 0;
    for (auto& c : cs) n += c.num_tokens;
    return n;
  }
  BlockManager bm;
  Scheduler sched;
  std::vector<std::unique_ptr<Sequence>> seqs;
};

}  // namespace

TEST(Scheduler, ChunksPrefillWithinTheTokenBudget) {
  Fixture f(100, 64, 8);
  Sequence* a = f.add(100);
  Sequence* b = f.add(50);
  auto s1 = f.step();
  ASSERT_EQ(s1.size(), 1u);  // a takes the whole budget
  EXPECT_EQ(s1[0].seq, a);
  EXPECT_EQ(s1[0].num_tokens, 64);
  EXPECT_FALSE(s1[0].need_logits);  // prompt not finished: no sampling yet
  auto s2 = f.step();
  ASSERT_EQ(s2.size(), 2u);
  EXPECT_EQ(s2[0].seq, a);
  EXPECT_EQ(s2[0].start, 64);
  EXPECT_EQ(s2[0].num_tokens, 36);
  EXPECT_TRUE(s2[0].need_logits);
  EXPECT_EQ(s2[1].seq, b);
  EXPECT_EQ(s2[1].num_tokens, 28);  // what is left of the budget
  EXPECT_EQ(f.total(s2), 64);
  EXPECT_EQ(b->blocks.size(), 2u);  // 28 tokens -> 2 blocks, not 4
}

TEST(Scheduler, DecodesComeFirst) {
  Fixture f(100, 20, 8);
  Sequence* a = f.add(10);
  f.step();  // a's prefill (10 tokens), samples
  Sequence* b = f.add(40);
  auto s = f.step();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].seq, a);
  EXPECT_TRUE(s[0].decode);
  EXPECT_EQ(s[0].num_tokens, 1);
  EXPECT_EQ(s[1].seq, b);
  EXPECT_FALSE(s[1].decode);
  EXPECT_EQ(s[1].num_tokens, 19);
}

TEST(Scheduler, RespectsMaxNumSeqs) {
  Fixture f(100, 1000, 2);
  for (int i = 0; i < 4; ++i) f.add(5);
  auto s = f.step();
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(f.sched.num_running(), 2);
  EXPECT_EQ(f.sched.num_waiting(), 2);
  s = f.step();  // the two running decode; nobody else is admitted
  EXPECT_EQ(s.size(), 2u);
  for (auto& c : s) EXPECT_TRUE(c.decode);
}

TEST(Scheduler, DecodesAreLimitedByTheBudgetToo) {
  Fixture f(100, 3, 8);
  for (int i = 0; i < 5; ++i) f.add(1);
  f.step();  // admits 3 (1 token each)
  f.step();  // 3 decodes, no room
  auto s = f.step();
  EXPECT_EQ(f.total(s), 3);
  for (auto& c : s) EXPECT_TRUE(c.decode);
}

TEST(Scheduler, PreemptsTheNewestWhenBlocksRunOut) {
  // 4 blocks = 64 tokens; two sequences of 30 tokens need a third block each after two decodes.
  Fixture f(4, 100, 8);
  Sequence* a = f.add(30);
  Sequence* b = f.add(30);
  std::vector<ScheduledChunk> s;
  for (int i = 0; i < 10 && f.sched.num_preemptions() == 0; ++i) s = f.step();
  ASSERT_EQ(f.sched.num_preemptions(), 1u);
  EXPECT_EQ(b->num_preemptions, 1);
  EXPECT_EQ(a->num_preemptions, 0);
  EXPECT_FALSE(b->running);
  EXPECT_TRUE(b->blocks.empty());
  EXPECT_EQ(b->num_computed, 0);
  EXPECT_GT(b->tokens.size(), 30u);  // prompt + generated, all to be recomputed
  ASSERT_GE(s.size(), 1u);
  EXPECT_EQ(s[0].seq, a);
  EXPECT_TRUE(s[0].decode);
  EXPECT_EQ(a->blocks.size(), 3u);
  EXPECT_EQ(f.sched.num_waiting(), 1);
  // Finish a: b is re-admitted and recomputes all its tokens in one chunk.
  f.sched.remove(a);
  EXPECT_EQ(f.bm.num_free(), 4);
  const int len = static_cast<int>(b->tokens.size());
  s = f.step();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].seq, b);
  EXPECT_EQ(s[0].start, 0);
  EXPECT_EQ(s[0].num_tokens, len);
  EXPECT_TRUE(s[0].need_logits);
  f.sched.remove(b);
  EXPECT_EQ(f.bm.num_free(), 4);
}

TEST(Scheduler, PreemptedSequenceReturnsToTheFrontInArrivalOrder) {
  Fixture f(4, 100, 2);  // c cannot be admitted while a and b run
  Sequence* a = f.add(30);
  Sequence* b = f.add(30);
  f.step();
  Sequence* c = f.add(10);
  for (int i = 0; i < 10 && f.sched.num_preemptions() == 0; ++i) f.step();
  ASSERT_EQ(f.sched.num_preemptions(), 1u);
  ASSERT_FALSE(b->running);
  f.sched.remove(a);
  auto s = f.step();
  ASSERT_GE(s.size(), 1u);
  EXPECT_EQ(s[0].seq, b);  // older than c, so first although c waited longer
  if (s.size() > 1) EXPECT_EQ(s[1].seq, c);
}

TEST(Scheduler, PromptLogitsAreRequestedUntilCollected) {
  Fixture f(10, 8, 4);
  Sequence* a = f.add(20);
  a->want_prompt_logits = true;
  auto s = f.sched.schedule();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_TRUE(s[0].need_all_logits);
  f.sched.complete(s[0]);
  a->prompt_logit_rows = 8;
  s = f.sched.schedule();
  EXPECT_TRUE(s[0].need_all_logits);
  f.sched.complete(s[0]);
  a->prompt_logit_rows = 16;
  s = f.sched.schedule();  // positions 16..19: 16..18 still needed
  EXPECT_TRUE(s[0].need_all_logits);
  EXPECT_TRUE(s[0].need_logits);
}

namespace {

// Every block's reference count equals the number of block tables holding it: nothing leaked,
// nothing freed while still listed.
void expect_refcounts_match(const Fixture& f) {
  std::map<int32_t, int> owners;
  for (const auto& s : f.seqs)
    for (int32_t b : s->blocks) ++owners[b];
  for (int32_t b = 0; b < f.bm.num_blocks(); ++b)
    ASSERT_EQ(f.bm.refcount(b), owners.count(b) ? owners.at(b) : 0) << "block " << b;
}

}  // namespace

TEST(Scheduler, PrefixCacheHitStartsAfterTheSharedBlocksAndLeavesATokenToCompute) {
  Fixture f(20, 100, 4, /*caching=*/true);
  Sequence* a = f.add(40);
  f.step();  // a's prompt: blocks 0 and 1 are full and get cached
  f.sched.remove(a);
  EXPECT_EQ(f.bm.num_used(), 0);
  EXPECT_EQ(f.bm.num_cached(), 2);
  Sequence* b = f.add(40);  // the same 40 tokens
  auto s = f.step();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].seq, b);
  EXPECT_EQ(s[0].start, 32);
  EXPECT_EQ(s[0].num_tokens, 8);
  EXPECT_TRUE(s[0].need_logits);
  Sequence* c = f.add(32);  // exactly two blocks: the second is recomputed, not shared
  s = f.step();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1].seq, c);
  EXPECT_EQ(s[1].start, 16);
  EXPECT_EQ(s[1].num_tokens, 16);
  EXPECT_EQ(c->blocks[0], b->blocks[0]);
  EXPECT_NE(c->blocks[1], b->blocks[1]);
  EXPECT_EQ(f.sched.prefix_queries(), 40u + 40u + 32u);
  EXPECT_EQ(f.sched.prefix_hits(), 32u + 16u);
  expect_refcounts_match(f);
  // Prompt logprobs still missing: those rows must be computed, so no hit.
  Sequence* d = f.add(40);
  d->want_prompt_logits = true;
  s = f.step();
  ASSERT_EQ(s.back().seq, d);
  EXPECT_EQ(s.back().start, 0);
}

TEST(Scheduler, ForksWaitForTheFirstSampleAndShareItsFullPromptBlocks) {
  Fixture f(20, 100, 8);  // no prefix cache: forks share anyway
  Sequence* a = f.add(40);
  Sequence* f1 = f.add(40);
  Sequence* f2 = f.add(40);
  for (Sequence* x : {f1, f2}) {
    x->fork_of = a;
    a->forks.push_back(x);
  }
  Sequence* late = f.add(5);
  auto s = f.step();
  ASSERT_EQ(s.size(), 1u);  // the forks wait at the head of the queue, and so does `late`
  EXPECT_EQ(s[0].seq, a);
  s = f.step();
  ASSERT_EQ(s.size(), 4u);
  EXPECT_TRUE(s[0].decode);
  for (int i : {1, 2}) {
    EXPECT_EQ(s[static_cast<size_t>(i)].start, 32);
    EXPECT_EQ(s[static_cast<size_t>(i)].num_tokens, 8);  // the partial block, recomputed
  }
  EXPECT_EQ(s[3].seq, late);
  EXPECT_EQ(f1->blocks[0], a->blocks[0]);
  EXPECT_EQ(f2->blocks[1], a->blocks[1]);
  EXPECT_NE(f1->blocks[2], a->blocks[2]);
  EXPECT_NE(f1->blocks[2], f2->blocks[2]);
  EXPECT_EQ(f.bm.refcount(a->blocks[0]), 3);
  EXPECT_TRUE(a->forks.empty());
  EXPECT_EQ(f1->fork_of, nullptr);
  expect_refcounts_match(f);
  for (auto& x : f.seqs) f.sched.remove(x.get());
  EXPECT_EQ(f.bm.num_used(), 0);
}

TEST(Scheduler, ForksOfARemovedSequencePrefillAlone) {
  Fixture f(20, 100, 8);
  Sequence* a = f.add(40);
  Sequence* f1 = f.add(40);
  f1->fork_of = a;
  a->forks.push_back(f1);
  f.step();
  f.sched.remove(a);  // e.g. aborted: f1 must not read a's freed blocks
  EXPECT_EQ(f1->fork_of, nullptr);
  auto s = f.step();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].seq, f1);
  EXPECT_EQ(s[0].start, 0);
  EXPECT_EQ(s[0].num_tokens, 40);
}

TEST(Scheduler, SharedAndCachedBlocksAreNeverLeakedUnderPreemption) {
  // 12 blocks for 6 sequences sharing a 34-token prompt that each grow to 90 tokens: preemption
  // is certain; after every step the reference counts must equal the block-table owners.
  Fixture f(12, 48, 6, /*caching=*/true);
  for (int i = 0; i < 6; ++i) f.add(34);
  for (size_t i = 1; i < f.seqs.size(); ++i) {  // one request with n = 3, two alone
    if (i == 1 || i == 2) {
      f.seqs[i]->fork_of = f.seqs[0].get();
      f.seqs[0]->forks.push_back(f.seqs[i].get());
    }
  }
  int done = 0;
  for (int step = 0; step < 2000 && done < 6; ++step) {
    f.step();
    expect_refcounts_match(f);
    for (auto& x : f.seqs) {
      if (x->tokens.size() >= 90 && x->running && !x->scheduled && x->prompt_len > 0) {
        f.sched.remove(x.get());
        x->prompt_len = 0;  // marks it finished for this loop
        ++done;
      }
    }
  }
  EXPECT_EQ(done, 6);
  EXPECT_GT(f.sched.num_preemptions(), 0u);
  EXPECT_GT(f.sched.prefix_hits(), 0u);
  EXPECT_EQ(f.bm.num_used(), 0);
  EXPECT_GT(f.bm.num_evictable(), 0);
  expect_refcounts_match(f);
}
