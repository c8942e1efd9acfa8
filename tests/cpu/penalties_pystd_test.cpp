// Penalties on pystd-16m through the whole path (engine -> model runner -> step CSR arrays -> cpu
// backend): batched penalized requests, greedy and seeded, equal a plain reference that takes
// each prefix's logits from a separate single-sequence run, penalizes them by recounting the
// history (tests/engine/penalty_reference.hpp) and samples with the same uniform draw.
#include <gtest/gtest.h>

#include <memory>

#include "cpu/pystd_fixture.hpp"
#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "engine/penalty_reference.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/tokenizer.hpp"

using namespace nestedfp;
using namespace nestedfp::testing_pystd;

namespace {

engine::ModelRunner& runner() {
  static std::unique_ptr<engine::ModelRunner> r = [] {
    engine::RunnerOptions o;
    o.num_kv_blocks = 128;
    o.max_num_seqs = 8;
    o.max_num_batched_tokens = 256;
    return make_runner(o);
  }();
  return *r;
}

// The reference: one sequence fed token by token on the same runner (the cpu backend's logits do
// not depend on the batch).
std::vector<int32_t> expected(const GenerationRequest& r, const std::vector<int32_t>& eos) {
  RequestSampler draws(r.sampling, *r.sampling.seed);
  engine::SingleSequence seq(runner());
  std::vector<float> logits = seq.feed(r.prompt, Precision::FP16);
  std::vector<int32_t> out;
  for (int i = 0; i < r.max_tokens; ++i) {
    const int32_t t = reference::pick(reference::penalized(logits, r, out, eos), r.sampling, draws);
    out.push_back(t);
    if (!r.ignore_eos && std::count(eos.begin(), eos.end(), t)) break;
    logits = seq.feed(std::span(&out.back(), 1), Precision::FP16);
  }
  return out;
}

std::vector<std::vector<int32_t>> run(const std::vector<GenerationRequest>& rs,
                                      const std::vector<int32_t>& eos = {}) {
  EngineConfig cfg;
  cfg.max_num_batched_tokens = 256;
  cfg.max_num_seqs = 8;
  cfg.eos_token_ids = eos;
  Engine e(runner(), cfg);
  return run_to_completion(e, rs);
}

GenerationRequest request(const std::string& prompt, int max_tokens, float temperature,
                          uint64_t seed) {
  GenerationRequest r;
  r.prompt = tokenizer().encode(prompt, true);
  r.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.top_p = temperature > 0 ? 0.95f : 1.f;
  r.sampling.seed = seed;
  return r;
}

// Greedy continues it with "d = d\n        self.dc = d\n        self": mostly prompt tokens.
const char* kRepetitive = "self.a = a\n        self.b = b\n        self.c = c\n        self.";

}  // namespace

TEST(PystdPenalties, BatchedGreedyAndSeededEqualThePlainReference) {
  std::vector<GenerationRequest> rs;
  auto a = request(kRepetitive, 16, 0.f, 1);
  a.penalties.repetition_penalty = 1.5f;
  rs.push_back(a);
  auto b = request("def add(a, b):\n", 16, 0.9f, 42);
  b.penalties.frequency_penalty = 1.2f, b.penalties.presence_penalty = 0.6f;
  b.penalties.logit_bias = {{tokenizer().encode("return", false).at(0), 4.f}};
  rs.push_back(b);
  auto c = request("import os\nimport sys\n", 16, 0.f, 3);
  c.penalties.presence_penalty = -1.5f, c.penalties.repetition_penalty = 0.8f;
  rs.push_back(c);
  auto d = request("class Stack:\n", 16, 1.f, 7);  // no penalties, batched with the others
  rs.push_back(d);
  const auto got = run(rs);
  for (size_t i = 0; i < rs.size(); ++i) EXPECT_EQ(got[i], expected(rs[i], {})) << "request " << i;
}

TEST(PystdPenalties, RepetitionPenaltyChangesGreedyOutputOnARepetitivePrompt) {
  auto plain = request(kRepetitive, 12, 0.f, 1);
  auto pen = plain;
  pen.penalties.repetition_penalty = 2.f;
  const auto got = run({plain, pen});
  // Output tokens the prompt (or earlier output) already holds: what the penalty discourages.
  auto repeats = [&](const std::vector<int32_t>& out) {
    std::vector<int32_t> seen = plain.prompt;
    int n = 0;
    for (int32_t t : out) {
      n += std::count(seen.begin(), seen.end(), t) > 0;
      seen.push_back(t);
    }
    return n;
  };
  const std::string a = tokenizer().decode(got[0]), b = tokenizer().decode(got[1]);
  EXPECT_GE(repeats(got[0]), 8) << a;  // the model repeats itself without the penalty
  EXPECT_LT(repeats(got[1]), repeats(got[0])) << a << "\n---\n" << b;
  EXPECT_EQ(got[1], expected(pen, {}));
}

TEST(PystdPenalties, MinTokensHoldsBackEos) {
  auto r = request("def add(a, b):\n", 12, 0.f, 1);
  const int32_t first = expected(r, {})[0];  // the first greedy token plays EOS
  EXPECT_EQ(run({r}, {first})[0], std::vector<int32_t>{first});
  auto m = r;
  m.penalties.min_tokens = 3;
  const auto got = run({m}, {first})[0];
  ASSERT_GE(got.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_NE(got[size_t(i)], first);
  EXPECT_EQ(got, expected(m, {first}));
}

TEST(PystdPenalties, LogitBiasPlus100ForcesAToken) {
  auto r = request("def add(a, b):\n", 6, 1.f, 9);
  const int32_t forced = tokenizer().encode("while", false).at(0);
  r.penalties.logit_bias = {{forced, 100.f}};
  EXPECT_EQ(run({r})[0], std::vector<int32_t>(6, forced));
}
