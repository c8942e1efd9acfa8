// Prefix caching and n > 1 on the real model: pystd-16m on the cpu backend, whose logits do not
// depend on batching or chunking, so the cache and forks must not change a single bit.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "engine/fake_executor.hpp"
#include "engine/model_runner.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/tokenizer.hpp"

using namespace nestedfp;
using nestedfp::fake::drain;

namespace {

const std::string kModel = NESTEDFP_SOURCE_DIR "/models/pystd-16m";

const engine::ModelWeights& weights() {
  static const engine::ModelWeights w = engine::ModelWeights::load(kModel, format::ScaleMode::None);
  return w;
}
const Tokenizer& tokenizer() {
  static const Tokenizer t = Tokenizer::load(kModel);
  return t;
}
std::vector<int32_t> ids(const std::string& text) { return tokenizer().encode(text, false); }

// The model, with the last logits row of every sampled chunk recorded per sequence (forced to the
// host; the engine itself asks for none).
class Recorder : public ModelExecutor {
 public:
  explicit Recorder(int kv_blocks) {
    engine::RunnerOptions ro;
    ro.num_kv_blocks = kv_blocks;
    ro.max_num_batched_tokens = 256;
    ro.max_num_seqs = 16;
    runner_ = std::make_unique<engine::ModelRunner>(backend::make_cpu_backend(2), weights(), ro);
  }
  StepOutput execute(const StepInput& in) override {
    StepInput forced = in;
    for (auto& s : forced.seqs) s.need_logits = s.need_logits || s.sample;
    StepOutput out = runner_->execute(forced);
    const auto vocab = static_cast<size_t>(vocab_size());
    for (size_t i = 0; i < in.seqs.size(); ++i) {
      const auto& s = in.seqs[i];
      if (!s.sample) continue;
      auto& l = out.logits[i];
      rows[s.seq_id].emplace_back(l.end() - static_cast<ptrdiff_t>(vocab), l.end());
      if (!s.need_logits && !s.need_all_logits) l.clear();
    }
    return out;
  }
  int num_kv_blocks() const override { return runner_->num_kv_blocks(); }
  int vocab_size() const override { return runner_->vocab_size(); }
  int max_model_len() const override { return runner_->max_model_len(); }
  int max_step_tokens() const override { return runner_->max_step_tokens(); }

  std::map<int64_t, std::vector<std::vector<float>>> rows;  // seq id -> sampled rows in order

 private:
  std::unique_ptr<engine::ModelRunner> runner_;
};

EngineConfig config(bool caching, int max_seqs = 16) {
  EngineConfig c;
  c.max_num_batched_tokens = 256;
  c.max_num_seqs = max_seqs;
  c.enable_prefix_caching = caching;
  return c;
}

GenerationRequest request(std::vector<int32_t> prompt, int max_tokens, float temperature,
                          uint64_t seed) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.logprobs = 3;
  r.ignore_eos = true;
  return r;
}

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const std::string kShared =
    "import os\nimport sys\n\n\ndef read_config(path, defaults=None):\n"
    "    \"\"\"Read a key=value file into a dict, starting from defaults.\"\"\"\n"
    "    result = dict(defaults or {})\n    with open(path) as f:\n        for line in f:\n"
    "            line = line.strip()\n            if not line or line.startswith('#'):\n"
    "                continue\n            key, _, value = line.partition('=')\n";

struct Outcome {
  std::vector<RequestEvent> events;
  std::vector<std::vector<std::vector<float>>> rows;  // per request, its sampled logits rows
  EngineStats stats;
};

// Waves of requests: each wave's requests run concurrently, after the previous wave finished.
// A wave entry may refer to the output of an earlier request (chat turns): `continue_from`.
struct Planned {
  Planned(GenerationRequest r, int from = -1, std::vector<int32_t> t = {})
      : req(std::move(r)), continue_from(from), tail(std::move(t)) {}
  GenerationRequest req;
  int continue_from;          // index of an earlier request whose prompt + output lead this one
  std::vector<int32_t> tail;  // appended after that
};

Outcome run(const std::vector<std::vector<Planned>>& waves, bool caching, int kv_blocks = 256,
            int max_seqs = 16) {
  Recorder ex(kv_blocks);
  Engine e(ex, config(caching, max_seqs));
  Outcome o;
  std::vector<int64_t> seq_ids;
  std::vector<std::vector<int32_t>> full;  // prompt + output of each request
  for (const auto& wave : waves) {
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const auto& p : wave) {
      GenerationRequest r = p.req;
      if (p.continue_from >= 0) r.prompt = cat(full[static_cast<size_t>(p.continue_from)], p.tail);
      full.push_back(r.prompt);
      streams.push_back(e.add_request(r));
    }
    for (size_t i = 0; i < streams.size(); ++i) {
      o.events.push_back(drain(*streams[i], &e));
      auto& f = full[full.size() - streams.size() + i];
      f = cat(f, o.events.back().token_ids);
      seq_ids.push_back(streams[i]->id());
    }
  }
  for (int64_t id : seq_ids) o.rows.push_back(ex.rows[id]);
  o.stats = e.stats();
  EXPECT_EQ(o.stats.kv_blocks_used, 0) << "blocks leaked";
  return o;
}

void expect_identical(const Outcome& a, const Outcome& b) {
  ASSERT_EQ(a.events.size(), b.events.size());
  for (size_t i = 0; i < a.events.size(); ++i) {
    EXPECT_EQ(a.events[i].token_ids, b.events[i].token_ids) << "request " << i;
    ASSERT_EQ(a.events[i].logprobs.size(), b.events[i].logprobs.size());
    for (size_t t = 0; t < a.events[i].logprobs.size(); ++t)
      EXPECT_EQ(a.events[i].logprobs[t].chosen.logprob, b.events[i].logprobs[t].chosen.logprob);
    ASSERT_EQ(a.rows[i].size(), b.rows[i].size()) << "request " << i;
    for (size_t t = 0; t < a.rows[i].size(); ++t)
      ASSERT_TRUE(a.rows[i][t] == b.rows[i][t]) << "request " << i << " row " << t << " differs";
  }
}

}  // namespace

TEST(PrefixCacheModel, LogitsAndTokensAreIdenticalWithAndWithoutTheCache) {
  const auto shared = ids(kShared);
  ASSERT_GE(shared.size(), 80u);
  const auto s1 = ids("            result[key.strip()] = value.strip()\n    return result\n");
  const auto s2 = ids("            if key in result:\n                raise KeyError(key)\n");
  const auto user =
      ids("System: You write Python.\n\nUser: a function that adds two numbers\n\n"
          "Assistant:");
  const auto user2 = ids("\n\nUser: now make it subtract\n\nAssistant:");
  std::vector<std::vector<Planned>> waves = {
      {{request(cat(shared, s1), 10, 0.f, 1)}, {request(user, 12, 0.8f, 9)}},
      // Greedy and seeded sampling sharing the long prefix, one with the identical prompt.
      {{request(cat(shared, s2), 10, 0.f, 2)},
       {request(cat(shared, s1), 10, 0.9f, 3)},
       {request(cat(shared, s2), 10, 1.0f, 4)}},
      // The next chat turn: turn 1's prompt and answer (decode blocks cached too), then more.
      {{request({}, 12, 0.8f, 10), 1, user2}},
  };
  Outcome on = run(waves, true), off = run(waves, false);
  expect_identical(on, off);
  EXPECT_EQ(off.stats.prefix_cache_queries, 0u);
  EXPECT_EQ(off.stats.prefix_cache_hits, 0u);
  // Wave 2: every request reuses the shared blocks; the chat turn reuses turn 1's full blocks.
  const uint64_t shared_blocks = shared.size() / kKvBlockSize * kKvBlockSize;
  const uint64_t turn1 = (user.size() + 12 - 1) / kKvBlockSize * kKvBlockSize;
  EXPECT_GE(on.stats.prefix_cache_hits, 3 * shared_blocks + turn1);
  uint64_t queried = 0;
  for (const auto& w : waves)
    for (const auto& p : w) queried += p.req.prompt.size();
  EXPECT_GT(on.stats.prefix_cache_queries, queried);  // plus the chat turn's whole prompt
  // The hits were not computed: the cached run processed exactly that many fewer tokens.
  EXPECT_EQ(on.stats.tokens_fp16 + on.stats.prefix_cache_hits, off.stats.tokens_fp16);
  EXPECT_GT(on.stats.kv_blocks_cached, 0);
}

TEST(PrefixCacheModel, NoBlockLeaksAndSameOutputsUnderPreemption) {
  const auto shared = ids(kShared);
  std::vector<Planned> wave;
  for (int i = 0; i < 6; ++i)
    wave.push_back({request(cat(shared, ids(std::string("    # step ") + char('a' + i) + "\n")), 40,
                            0.9f, 100 + static_cast<uint64_t>(i))});
  std::vector<std::vector<Planned>> waves = {{wave[0]}, wave};
  // 14 blocks hold 224 tokens; six requests of ~130 tokens each cannot all run at once.
  Outcome tight = run(waves, true, 14, 6);
  Outcome roomy = run(waves, false, 256, 6);
  expect_identical(tight, roomy);
  EXPECT_GT(tight.stats.preemptions, 0u);
  EXPECT_GT(tight.stats.prefix_cache_hits, 0u);
  EXPECT_EQ(tight.stats.kv_blocks_used, 0);
}

TEST(PrefixCacheModel, NSamplesEachEqualTheRequestAloneWithItsSeed) {
  const auto prompt = cat(ids(kShared), ids("            value = value.strip()\n"));
  const int max_tokens = 8;
  const auto base = request(prompt, max_tokens, 0.9f, 42);
  std::vector<RequestEvent> alone;
  for (uint64_t j = 0; j < 3; ++j) {
    Recorder ex(256);
    Engine e(ex, config(false));
    auto r = base;
    r.sampling.seed = 42 + j;
    alone.push_back(drain(*e.add_request(r), &e));
  }
  EXPECT_FALSE(alone[0].token_ids == alone[1].token_ids && alone[1].token_ids == alone[2].token_ids)
      << "the seeds should give different samples";
  const auto L = static_cast<uint64_t>(prompt.size());
  const uint64_t shared = (L - 1) / kKvBlockSize * kKvBlockSize;
  for (bool caching : {true, false}) {
    Recorder ex(256);
    Engine e(ex, config(caching));
    auto streams = e.add_requests(base, 3);
    ASSERT_EQ(streams.size(), 3u);
    std::vector<RequestEvent> got;
    for (auto& s : streams) got.push_back(drain(*s, &e));
    for (size_t j = 0; j < 3; ++j) {
      EXPECT_EQ(got[j].token_ids, alone[j].token_ids) << "sample " << j << " caching " << caching;
      ASSERT_EQ(got[j].logprobs.size(), alone[j].logprobs.size());
      for (size_t t = 0; t < got[j].logprobs.size(); ++t)
        EXPECT_EQ(got[j].logprobs[t].chosen.logprob, alone[j].logprobs[t].chosen.logprob);
    }
    // The prompt was computed once; the two forks recomputed only their partial last block.
    const auto s = e.stats();
    EXPECT_EQ(s.tokens_fp16, L + 2 * (L - shared) + 3 * (max_tokens - 1)) << "caching " << caching;
    EXPECT_EQ(s.prefix_cache_hits, caching ? 2 * shared : 0u);
    EXPECT_EQ(s.kv_blocks_used, 0);
  }
  Recorder ex(256);
  Engine e(ex, config(true));
  EXPECT_THROW(e.add_requests(base, 0), RequestError);
  EXPECT_THROW(e.add_requests(base, kMaxSamples + 1), RequestError);
}
