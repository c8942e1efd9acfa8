// The model runner on random weights: prefill at once, chunked prefill, token-by-token decode
// and mixed batches give the same logits; sampling is deterministic per seed.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/sampler.hpp"

using namespace nestedfp;

namespace {

io::ModelConfig tiny_config(const std::string& type) {
  io::ModelConfig c;
  c.model_type = type;
  c.hidden_size = 64, c.intermediate_size = 96, c.num_layers = 2, c.num_heads = 4,
  c.num_kv_heads = 2;
  c.head_dim = 16, c.vocab_size = 300, c.max_position_embeddings = 256, c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000;
  if (type == "qwen2") c.attention_bias = true;
  if (type == "qwen3") c.qk_norm = true, c.tie_word_embeddings = true;
  if (type == "llama3")
    c.model_type = "llama", c.rope_scaling.type = "llama3", c.rope_scaling.factor = 8,
    c.rope_scaling.original_max_position_embeddings = 64;
  return c;
}

std::unique_ptr<engine::ModelRunner> make(const std::string& type,
                                          format::ScaleMode mode = format::ScaleMode::Channel) {
  engine::RunnerOptions o;
  o.num_kv_blocks = 64;
  return std::make_unique<engine::ModelRunner>(
      backend::make_cpu_backend(2), engine::ModelWeights::random(tiny_config(type), mode, 7), o);
}

std::vector<int32_t> tokens(int n, int seed) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back((i * 37 + seed * 11 + 5) % 300);
  return t;
}

}  // namespace

class RunnerConsistency : public ::testing::TestWithParam<std::tuple<std::string, Precision>> {};

TEST_P(RunnerConsistency, PrefillChunkedAndDecodeAgree) {
  const auto [type, prec] = GetParam();
  auto r = make(type);
  const auto t = tokens(70, 1);
  engine::SingleSequence a(*r), b(*r, 1), c(*r, 2);
  const auto all = a.feed(t, prec, true);          // one step
  const auto chunked = b.feed(t, prec, true, 16);  // chunks of 16 (block-aligned)
  std::vector<float> stepwise;
  for (size_t i = 0; i < t.size(); i += 1) {  // decode one token at a time
    auto l = c.feed(std::span(t).subspan(i, 1), prec);
    stepwise.insert(stepwise.end(), l.begin(), l.end());
  }
  ASSERT_EQ(all.size(), t.size() * 300);
  // Every op is row-independent with a fixed summation order, so this is exact.
  EXPECT_EQ(all, chunked);
  EXPECT_EQ(all, stepwise);
  // Odd chunk sizes too (chunks that end inside a block).
  engine::SingleSequence d(*r, 3);
  EXPECT_EQ(all, d.feed(t, prec, true, 7));
  double spread = 0;
  for (float x : all) spread = std::max(spread, double(std::fabs(x)));
  EXPECT_GT(spread, 0.01);  // not all zero
}

INSTANTIATE_TEST_SUITE_P(Models, RunnerConsistency,
                         ::testing::Combine(::testing::Values("llama", "llama3", "qwen2", "qwen3"),
                                            ::testing::Values(Precision::FP16, Precision::FP8)));

TEST(Runner, MixedBatchEqualsSeparateRuns) {
  auto r = make("qwen2");
  const int V = r->vocab_size();
  // Reference: each sequence alone (prefill 20 tokens, then 1 decode token).
  std::vector<std::vector<int32_t>> seqs = {tokens(21, 1), tokens(21, 2), tokens(21, 3)};
  std::vector<std::vector<float>> ref;
  for (auto& s : seqs) {
    engine::SingleSequence one(*r);
    ref.push_back(one.feed(s, Precision::FP8, true));
  }
  // Batched: seq 0 prefill all; seq 1 chunk [0,10) then [10,21) with seq 2 decodes mixed in.
  // Blocks are interleaved and out of order.
  const std::vector<std::vector<int32_t>> tables = {{9, 3}, {4, 11}, {0, 7}};
  auto chunk = [&](int s, int b, int e, bool all) {
    SeqChunk c;
    c.seq_id = s;
    c.tokens.assign(seqs[s].begin() + b, seqs[s].begin() + e);
    c.start_pos = b;
    c.block_table = tables[s];
    c.need_all_logits = all;
    return c;
  };
  StepInput s1;
  s1.precision = Precision::FP8;
  s1.seqs = {chunk(0, 0, 21, true), chunk(1, 0, 10, true), chunk(2, 0, 20, false)};
  auto o1 = r->execute(s1);
  StepInput s2;
  s2.precision = Precision::FP8;
  s2.seqs = {chunk(2, 20, 21, false), chunk(1, 10, 21, true)};
  auto o2 = r->execute(s2);
  EXPECT_EQ(o1.logits[0], ref[0]);
  std::vector<float> seq1 = o1.logits[1];
  seq1.insert(seq1.end(), o2.logits[1].begin(), o2.logits[1].end());
  EXPECT_EQ(seq1, ref[1]);
  ASSERT_EQ(o1.logits[2].size(), size_t(V));  // last-token logits only
  EXPECT_EQ(o1.logits[2], std::vector<float>(ref[2].begin() + 19 * V, ref[2].begin() + 20 * V));
  EXPECT_EQ(o2.logits[0], std::vector<float>(ref[2].begin() + 20 * V, ref[2].end()));
}

TEST(Runner, Fp8DiffersFromFp16AndChannelScalesAreExactInFp16) {
  auto none = make("llama", format::ScaleMode::None),
       chan = make("llama", format::ScaleMode::Channel);
  const auto t = tokens(30, 4);
  engine::SingleSequence a(*none), b(*chan), c(*none, 1);
  const auto l16 = a.feed(t, Precision::FP16, true);
  // Power-of-two channel scales are exact in FP16: identical logits.
  EXPECT_EQ(l16, b.feed(t, Precision::FP16, true));
  const auto l8 = c.feed(t, Precision::FP8, true);
  double diff = 0;
  for (size_t i = 0; i < l8.size(); ++i) diff = std::max(diff, double(std::fabs(l8[i] - l16[i])));
  EXPECT_GT(diff, 1e-3);
  EXPECT_LT(diff, 2.0);
}

TEST(Runner, RejectsBadSteps) {
  auto r = make("llama");
  StepInput in;
  SeqChunk c;
  c.tokens = {1, 2, 3};
  c.block_table = {};  // no block for 3 tokens
  in.seqs = {c};
  EXPECT_THROW(r->execute(in), Error);
  in.seqs[0].block_table = {64};  // outside the cache
  EXPECT_THROW(r->execute(in), Error);
  in.seqs[0].block_table = {0};
  in.seqs[0].tokens = {1, 300};  // outside the vocabulary
  EXPECT_THROW(r->execute(in), Error);
}

TEST(Sampler, GreedySeededAndLogprobs) {
  std::vector<float> logits = {0.f, 2.f, 1.f, 2.f, -1.f};
  SamplingParams greedy;
  greedy.temperature = 0;
  RequestSampler g(greedy);
  EXPECT_EQ(g.sample(logits), 1);  // lowest id among ties
  SamplingParams p;
  p.temperature = 0.8f, p.top_p = 0.9f, p.top_k = 4, p.seed = 42;
  RequestSampler a(p), b(p);
  std::vector<int32_t> sa, sb;
  for (int i = 0; i < 200; ++i) sa.push_back(a.sample(logits)), sb.push_back(b.sample(logits));
  EXPECT_EQ(sa, sb);
  EXPECT_EQ(std::count(sa.begin(), sa.end(), 4), 0);  // cut by top_k = 4
  EXPECT_GT(std::count(sa.begin(), sa.end(), 2), 0);
  p.seed = 43;
  RequestSampler c(p);
  std::vector<int32_t> sc;
  for (int i = 0; i < 200; ++i) sc.push_back(c.sample(logits));
  EXPECT_NE(sa, sc);
  SamplingParams topk1 = p;
  topk1.top_k = 1;
  RequestSampler k1(topk1);
  EXPECT_EQ(k1.sample(logits), 1);
  const auto lp = logprobs(logits, 2, 3);
  double z = 0;
  for (float l : logits) z += std::exp(double(l));
  EXPECT_NEAR(lp.chosen.logprob, 1.0 - std::log(z), 1e-6);
  ASSERT_EQ(lp.top.size(), 3u);
  EXPECT_EQ(lp.top[0].token, 1);
  EXPECT_EQ(lp.top[1].token, 3);
  EXPECT_EQ(lp.top[2].token, 2);
  SamplingParams badp;
  badp.top_p = 0;
  EXPECT_THROW(badp.validate(), Error);
}
