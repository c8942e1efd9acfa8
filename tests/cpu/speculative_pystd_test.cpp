// Self-speculative decoding on pystd-16m, the real model on the cpu backend (docs/DESIGN.md
// §3.13): greedy output is bit-identical to `--precision fp16` for many prompts, batch
// compositions and k, including verify steps that carry prefill chunks, stop strings, max_tokens
// cutting a cycle and preemption in a tiny KV pool; no KV block stays used; seeded sampling
// repeats.
#include <gtest/gtest.h>

#include <memory>

#include "cpu/pystd_fixture.hpp"
#include "engine/model_runner.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/tokenizer.hpp"

using namespace nestedfp;
using namespace nestedfp::testing_pystd;

namespace {

engine::ModelRunner& runner() {
  static std::unique_ptr<engine::ModelRunner> r = [] {
    engine::RunnerOptions o;
    o.num_kv_blocks = 96;
    o.max_num_seqs = 8;
    o.max_num_batched_tokens = 128;
    return make_runner(o);
  }();
  return *r;
}

const char* const kPrompts[] = {
    "def fibonacci(n):\n",
    "import os\nimport sys\n\ndef main(argv):\n",
    "class Stack:\n    def __init__(self):\n",
    "# Read a CSV file and print the sum of the second column\n",
    "def is_prime(n):\n    if n < 2:\n        return False\n",
    "for i in range(10):\n",
    "def merge_sort(xs):\n    if len(xs) <= 1:\n        return xs\n    mid = len(xs) // 2\n",
    "with open(path) as f:\n",
};

struct Outcome {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::string> text;
  EngineStats stats;
};

Outcome run(const std::vector<GenerationRequest>& rs, const std::string& spec, int kv_blocks = 0,
            int budget = 128, int max_seqs = 8) {
  EngineConfig cfg;
  cfg.max_num_batched_tokens = budget;
  cfg.max_num_seqs = max_seqs;
  cfg.num_kv_blocks = kv_blocks;
  cfg.speculative = spec;
  cfg.eos_token_ids = tokenizer().eos_ids();
  cfg.text_decoder = text_decoder_factory(tokenizer());
  Engine e(runner(), cfg);
  std::vector<std::shared_ptr<RequestStream>> ss;
  for (const auto& r : rs) ss.push_back(e.add_request(r));
  while (e.step()) {
  }
  Outcome out;
  for (auto& s : ss) {
    std::vector<int32_t> ids;
    std::string text;
    while (auto ev = s->next(std::chrono::milliseconds(0))) {
      ids.insert(ids.end(), ev->token_ids.begin(), ev->token_ids.end());
      text += ev->text;
    }
    out.tokens.push_back(ids);
    out.text.push_back(text);
  }
  out.stats = e.stats();
  return out;
}

GenerationRequest greedy(const char* prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = tokenizer().encode(prompt, true);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.f;
  return r;
}

std::vector<GenerationRequest> all_prompts(int max_tokens) {
  std::vector<GenerationRequest> rs;
  int i = 0;
  for (const char* p : kPrompts) rs.push_back(greedy(p, max_tokens - 3 * (i++ % 4)));
  return rs;
}

void expect_same(const Outcome& a, const Outcome& b, const std::string& what) {
  ASSERT_EQ(a.tokens.size(), b.tokens.size());
  for (size_t i = 0; i < a.tokens.size(); ++i) {
    EXPECT_EQ(a.tokens[i], b.tokens[i]) << what << ", prompt " << i;
    EXPECT_EQ(a.text[i], b.text[i]) << what << ", prompt " << i;
  }
}

}  // namespace

TEST(PystdSpeculative, GreedyIsBitIdenticalToFp16) {
  const auto rs = all_prompts(40);
  const Outcome plain = run(rs, "off");
  for (const char* spec : {"fp8:k=1", "fp8:k=2", "fp8:k=4", "fp8:k=8", "fp8:k=auto"}) {
    const Outcome sp = run(rs, spec);
    expect_same(plain, sp, spec);
    EXPECT_GT(sp.stats.spec_accepted, 0u) << spec;
    EXPECT_EQ(sp.stats.kv_blocks_used, 0) << spec;
    EXPECT_LT(sp.stats.steps_fp16, plain.stats.steps_fp16) << spec;
  }
}

TEST(PystdSpeculative, BatchCompositionsPrefillMixingAndOneAtATime) {
  const auto rs = all_prompts(24);
  // Each prompt alone, and all of them through a small budget that keeps prefill chunks in the
  // verify steps of the first ones.
  Outcome alone;
  for (const auto& r : rs) {
    const Outcome o = run({r}, "off");
    alone.tokens.push_back(o.tokens[0]);
    alone.text.push_back(o.text[0]);
  }
  expect_same(alone, run(rs, "fp8:k=4", 0, 40, 8), "budget 40");
  expect_same(alone, run(rs, "fp8:k=2", 0, 128, 3), "3 at a time");
}

TEST(PystdSpeculative, StopStringsAndMaxTokensInsideACycle) {
  auto rs = all_prompts(30);
  const Outcome ref = run(rs, "off");
  for (size_t i = 0; i < rs.size(); ++i) {
    ASSERT_GT(ref.text[i].size(), 12u);
    rs[i].stop = {ref.text[i].substr(6 + i % 3, 2)};
    rs[i].max_tokens = 5 + int(i % 4);
  }
  const Outcome plain = run(rs, "off");
  const Outcome sp = run(rs, "fp8:k=8");
  expect_same(plain, sp, "stops");
  EXPECT_EQ(sp.stats.kv_blocks_used, 0);
}

TEST(PystdSpeculative, TinyKvPoolPreemption) {
  const auto rs = all_prompts(40);
  const Outcome plain = run(rs, "off", 14);
  EXPECT_GT(plain.stats.preemptions, 0u);
  const Outcome sp = run(rs, "fp8:k=4", 14);
  expect_same(plain, sp, "14 blocks");
  EXPECT_GT(sp.stats.spec_cycles, 0u);
  EXPECT_EQ(sp.stats.kv_blocks_used, 0);
}

TEST(PystdSpeculative, SeededSamplingRepeats) {
  auto rs = all_prompts(32);
  for (size_t i = 0; i < rs.size(); ++i) {
    rs[i].sampling.temperature = 0.9f;
    rs[i].sampling.top_k = 40;
    rs[i].sampling.seed = 5 + i;
  }
  const Outcome a = run(rs, "fp8:k=4"), b = run(rs, "fp8:k=4");
  expect_same(a, b, "seeded");
  EXPECT_GT(a.stats.spec_accepted, 0u);
  EXPECT_LT(a.stats.spec_accepted, a.stats.spec_drafted);
  EXPECT_EQ(a.stats.kv_blocks_used, 0);
}

// The runner's verify layout: sample_all returns the greedy token after every row, equal to the
// argmax of that row's logits, across several logits groups and mixed with an ordinary chunk.
TEST(PystdSpeculative, SampleAllRowsAreTheRowsArgmax) {
  engine::ModelRunner& r = runner();
  const auto& ids = text_ids();
  StepInput in;
  for (int s = 0; s < 3; ++s) {  // 3 x 40 rows (plus a plain chunk): more than 64 logits rows
    SeqChunk c;
    c.seq_id = s;
    c.tokens.assign(ids.begin() + 1000 * s, ids.begin() + 1000 * s + 40);
    for (int b = 0; b < 3; ++b) c.block_table.push_back(s * 3 + b);
    c.sample = c.sample_all = s != 1;
    c.sampling.temperature = 0.f;
    c.need_all_logits = true;
    in.seqs.push_back(c);
  }
  const StepOutput out = r.execute(in);
  const size_t V = size_t(r.vocab_size());
  for (size_t s = 0; s < in.seqs.size(); ++s) {
    ASSERT_EQ(out.logits[s].size(), 40 * V);
    if (s == 1) {
      EXPECT_TRUE(out.row_tokens[s].empty());
      continue;
    }
    ASSERT_EQ(out.row_tokens[s].size(), 40u);
    for (size_t i = 0; i < 40; ++i)
      EXPECT_EQ(out.row_tokens[s][i],
                argmax(std::span<const float>(out.logits[s]).subspan(i * V, V)))
          << "sequence " << s << " row " << i;
    EXPECT_EQ(out.tokens[s], out.row_tokens[s].back());
  }
  SeqChunk bad = in.seqs[0];
  bad.sampling.temperature = 1.f;
  EXPECT_THROW(r.execute(StepInput{{bad}, Precision::FP16}), Error);
}
