// Self-speculative decoding through the engine on the fake model (docs/DESIGN.md §3.13): greedy
// output equals plain FP16 decoding for every k, batch mix, stop string, length limit and under
// preemption; no KV block stays used; FP8 policy steps do not speculate; seeds repeat.
#include <gtest/gtest.h>

#include "engine/fake_executor.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/speculative.hpp"

using namespace nestedfp;
using nestedfp::fake::FakeExecutor;

namespace {

constexpr int kVocab = 40;

GenerationRequest greedy(int prompt_len, int max_tokens, int salt) {
  GenerationRequest r;
  for (int i = 0; i < prompt_len; ++i) r.prompt.push_back((i * 7 + salt * 13 + 3) % kVocab);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.f;
  return r;
}

struct Outcome {
  std::vector<RequestEvent> events;
  EngineStats stats;
  std::vector<FakeExecutor::StepRecord> steps;
};

// All requests at once, the engine stepped on this thread until idle.
Outcome run(const std::vector<GenerationRequest>& rs, const std::string& spec, int blocks = 256,
            int budget = 64, int max_seqs = 8, const std::string& policy = "fp16") {
  FakeExecutor ex(kVocab, blocks, 1024);
  EngineConfig c;
  c.max_num_batched_tokens = budget;
  c.max_num_seqs = max_seqs;
  c.text_decoder = fake::letter_decoder();
  c.speculative = spec;
  c.precision = policy;
  Engine e(ex, c);
  std::vector<std::shared_ptr<RequestStream>> ss;
  for (const auto& r : rs) ss.push_back(e.add_request(r));
  int guard = 0;
  while (e.step() && ++guard < 100000) {
  }
  Outcome out;
  for (auto& s : ss) out.events.push_back(fake::drain(*s));
  out.stats = e.stats();
  out.steps = ex.steps;
  return out;
}

std::vector<GenerationRequest> mix(int n, int max_tokens = 40) {
  std::vector<GenerationRequest> rs;
  for (int i = 0; i < n; ++i) rs.push_back(greedy(3 + (i * 17) % 50, max_tokens - i % 7, i));
  return rs;
}

void expect_same_tokens(const Outcome& a, const Outcome& b, const std::string& what) {
  ASSERT_EQ(a.events.size(), b.events.size());
  for (size_t i = 0; i < a.events.size(); ++i) {
    EXPECT_EQ(a.events[i].token_ids, b.events[i].token_ids) << what << ", request " << i;
    EXPECT_EQ(a.events[i].text, b.events[i].text) << what << ", request " << i;
    EXPECT_EQ(a.events[i].finish, b.events[i].finish) << what << ", request " << i;
  }
}

}  // namespace

TEST(SpeculativeEngine, GreedyEqualsPlainFp16ForEveryK) {
  const auto rs = mix(12);
  const Outcome plain = run(rs, "off");
  EXPECT_EQ(plain.stats.spec_cycles, 0u);
  for (const char* spec : {"fp8:k=1", "fp8:k=2", "fp8:k=4", "fp8:k=8", "fp8:k=auto"}) {
    const Outcome sp = run(rs, spec);
    expect_same_tokens(plain, sp, spec);
    EXPECT_GT(sp.stats.spec_cycles, 0u) << spec;
    // The fake FP8 logits differ from FP16 now and then: both outcomes are exercised.
    EXPECT_GT(sp.stats.spec_accepted, 0u) << spec;
    EXPECT_LT(sp.stats.spec_accepted, sp.stats.spec_drafted) << spec;
    EXPECT_EQ(sp.stats.kv_blocks_used, 0) << spec;
    // Fewer FP16 steps than tokens: verification commits several tokens per step.
    EXPECT_LT(sp.stats.steps_fp16, plain.stats.steps_fp16) << spec;
  }
}

TEST(SpeculativeEngine, VerifyStepsCarryPrefillChunks) {
  // A small token budget: later requests prefill in chunks while earlier ones verify.
  auto rs = mix(6);
  const Outcome plain = run(rs, "off", 256, 24, 8);
  const Outcome sp = run(rs, "fp8:k=4", 256, 24, 8);
  expect_same_tokens(plain, sp, "budget 24");
  bool mixed = false;
  for (const auto& st : sp.steps) {
    if (st.precision != Precision::FP16) continue;
    EXPECT_LE(st.tokens, 24);
    bool verify = false, prefill = false;
    for (int n : st.chunk_sizes) (n > 1 && n <= 5 ? verify : prefill) |= n > 1;
    mixed |= verify && prefill;
  }
  EXPECT_TRUE(mixed) << "no FP16 step held a verify chunk and a prefill chunk";
}

TEST(SpeculativeEngine, StopStringsAndLengthCutACycle) {
  // Stop strings from the plain run's text: a stop inside a verified run of tokens must end the
  // request there, exactly as plain decoding does.
  auto rs = mix(8, 30);
  const Outcome ref = run(rs, "off");
  for (size_t i = 0; i < rs.size(); ++i) {
    const std::string& t = ref.events[i].text;
    ASSERT_GT(t.size(), 12u);
    rs[i].stop = {t.substr(5 + i % 5, 3)};
    rs[i].max_tokens = 7 + int(i) % 5;  // length limits inside a cycle of 4 or 8
  }
  const Outcome plain = run(rs, "off");
  for (const char* spec : {"fp8:k=4", "fp8:k=8"}) {
    const Outcome sp = run(rs, spec);
    expect_same_tokens(plain, sp, spec);
    EXPECT_EQ(sp.stats.kv_blocks_used, 0) << spec;
    for (const auto& ev : sp.events) EXPECT_LE(ev.completion_tokens, 11);
  }
}

TEST(SpeculativeEngine, TinyKvPoolPreemptsAndStillMatches) {
  const auto rs = mix(10, 48);
  const Outcome plain = run(rs, "off", 12, 64, 8);
  EXPECT_GT(plain.stats.preemptions, 0u);
  for (const char* spec : {"fp8:k=2", "fp8:k=8"}) {
    const Outcome sp = run(rs, spec, 12, 64, 8);
    expect_same_tokens(plain, sp, spec);
    EXPECT_EQ(sp.stats.kv_blocks_used, 0) << spec;
    EXPECT_GT(sp.stats.spec_cycles, 0u) << spec;
  }
}

TEST(SpeculativeEngine, PrefixCacheHoldsOnlyVerifiedBlocks) {
  // The same prompts again after a speculative run: cached blocks reused by the second round give
  // the same tokens as plain decoding (a block registered with draft KV or tokens would not).
  auto rs = mix(6, 40);
  const Outcome plain = run(rs, "off");
  std::vector<GenerationRequest> twice = rs;
  for (size_t i = 0; i < rs.size(); ++i) {  // second round: prompt = first round's prompt + output
    GenerationRequest r = rs[i];
    r.prompt.insert(r.prompt.end(), plain.events[i].token_ids.begin(),
                    plain.events[i].token_ids.end());
    r.max_tokens = 10;
    twice.push_back(r);
  }
  const Outcome a = run(twice, "off", 256, 64, 4), b = run(twice, "fp8:k=4", 256, 64, 4);
  expect_same_tokens(a, b, "prefix cache");
  EXPECT_GT(b.stats.prefix_cache_hits, 0u);
}

TEST(SpeculativeEngine, Fp8PolicyStepsDoNotSpeculate) {
  const auto rs = mix(4);
  const Outcome fp8 = run(rs, "off", 256, 64, 8, "fp8");
  const Outcome sp = run(rs, "fp8:k=4", 256, 64, 8, "fp8");
  expect_same_tokens(fp8, sp, "fp8 policy");
  EXPECT_EQ(sp.stats.spec_cycles, 0u);
  EXPECT_EQ(sp.stats.steps_fp16, 0u);
  EXPECT_EQ(sp.stats.kv_blocks_used, 0);
  // dynamic: a light load (4 decodes) is under the threshold, so those steps speculate.
  const Outcome dyn = run(rs, "fp8:k=4", 256, 64, 8, "dynamic:threshold=32");
  EXPECT_GT(dyn.stats.spec_cycles, 0u);
  EXPECT_GT(dyn.stats.steps_fp8, 0u);
}

TEST(SpeculativeEngine, SeededSamplingRepeats) {
  std::vector<GenerationRequest> rs = mix(6);
  for (size_t i = 0; i < rs.size(); ++i) {
    rs[i].sampling.temperature = 0.8f;
    rs[i].sampling.top_p = 0.9f;
    rs[i].sampling.seed = 77 + i;
  }
  const Outcome a = run(rs, "fp8:k=4"), b = run(rs, "fp8:k=4");
  expect_same_tokens(a, b, "seeded");
  EXPECT_GT(a.stats.spec_cycles, 0u);
  EXPECT_EQ(a.stats.kv_blocks_used, 0);
  // A request alone with ample budget and blocks drafts the same k, so it repeats alone too.
  const Outcome alone = run({rs[2]}, "fp8:k=4");
  EXPECT_EQ(alone.events[0].token_ids, a.events[2].token_ids);
}

TEST(SpeculativeEngine, PenaltiesAndLogprobsDecodePlainly) {
  auto rs = mix(3);
  rs[0].penalties.repetition_penalty = 1.3f;
  rs[1].logprobs = 2;
  const Outcome plain = run(rs, "off"), sp = run(rs, "fp8:k=4");
  expect_same_tokens(plain, sp, "penalties/logprobs");
  EXPECT_EQ(sp.events[1].logprobs.size(), sp.events[1].token_ids.size());
  EXPECT_GT(sp.stats.spec_cycles, 0u);  // the third request still speculates
}

TEST(SpeculativeEngine, MetricsExportSpeculation) {
  FakeExecutor ex(kVocab, 64, 1024);
  EngineConfig c;
  c.speculative = "fp8:k=3";
  Engine e(ex, c);
  EXPECT_EQ(e.config().speculative, "fp8:k=3");
  auto s = e.add_request(greedy(10, 20, 1));
  fake::drain(*s, &e);
  const std::string m = e.metrics_text();
  for (const char* name :
       {"nestedfp_spec_verify_total", "nestedfp_spec_draft_tokens_total",
        "nestedfp_spec_accepted_tokens_total", "nestedfp_spec_emitted_tokens_total",
        "nestedfp_spec_acceptance_rate", "nestedfp_spec_tokens_per_cycle"})
    EXPECT_NE(m.find(name), std::string::npos) << name;
  const EngineStats st = e.stats();
  // 19 decode tokens after the prefill's: all from cycles but a last plain one when a single
  // token is left (k is capped so that a cycle never emits past max_tokens).
  EXPECT_GE(st.spec_committed, 18u);
  EXPECT_LE(st.spec_committed, 19u);
  EXPECT_LE(st.spec_drafted, 3u * st.spec_cycles);
  EXPECT_EQ(st.spec_committed, st.spec_accepted + st.spec_cycles);
  EXPECT_THROW(Engine(ex,
                      [] {
                        EngineConfig bad;
                        bad.speculative = "fp8:k=99";
                        return bad;
                      }()),
               Error);
}

// The rule through the whole engine: the second token (the first one a speculative cycle emits,
// after drafts from the perturbed FP8 logits) must follow the FP16 distribution given the first.
// Expected counts come from the fake model's FP16 logits for each request's own prefix; the
// statistic is Pearson's over bins with expected count >= 5 (the FP8 drafts alone fail it).
TEST(SpeculativeEngine, SampledTokensFollowTheFp16Distribution) {
  const int n = 20000;
  const std::vector<int32_t> prompt = {3, 10, 17, 24, 31};
  FakeExecutor ex(kVocab, 4096, 1024);
  EngineConfig c;
  c.max_num_batched_tokens = 4096;
  c.max_num_seqs = 256;
  c.speculative = "fp8:k=2";
  c.max_queue = size_t(n);
  Engine e(ex, c);
  std::vector<std::shared_ptr<RequestStream>> ss;
  for (int i = 0; i < n; ++i) {
    GenerationRequest r;
    r.prompt = prompt;
    r.max_tokens = 3;
    r.sampling.temperature = 1.f;
    r.sampling.seed = 1000 + uint64_t(i);
    ss.push_back(e.add_request(r));
  }
  while (e.step()) {
  }
  EXPECT_GT(e.stats().spec_cycles, uint64_t(n) / 2);
  std::vector<double> expected(kVocab, 0.0), observed(kVocab, 0.0);
  std::vector<float> logits(kVocab);
  SamplingParams sp;
  sp.temperature = 1.f;
  for (auto& s : ss) {
    const RequestEvent ev = fake::drain(*s);
    ASSERT_EQ(ev.token_ids.size(), 3u);
    std::vector<int32_t> prefix = prompt;
    prefix.push_back(ev.token_ids[0]);
    FakeExecutor::logits_for(FakeExecutor::prefix_hash(prefix, prefix.size()), kVocab,
                             Precision::FP16, logits.data());
    const std::vector<double> p = sampling_probs(logits, sp);
    for (int t = 0; t < kVocab; ++t) expected[size_t(t)] += p[size_t(t)];
    observed[size_t(ev.token_ids[1])] += 1;
  }
  double chi2 = 0, rest_e = 0, rest_o = 0;
  int bins = 0;
  for (int t = 0; t < kVocab; ++t) {
    if (expected[size_t(t)] < 5) {
      rest_e += expected[size_t(t)], rest_o += observed[size_t(t)];
      continue;
    }
    chi2 += (observed[size_t(t)] - expected[size_t(t)]) *
            (observed[size_t(t)] - expected[size_t(t)]) / expected[size_t(t)];
    ++bins;
  }
  if (rest_e > 0) chi2 += (rest_o - rest_e) * (rest_o - rest_e) / rest_e, ++bins;
  ASSERT_GE(bins, 20);
  // df = bins - 1 <= 39: P(chi2 > 72.05) = 0.001 at 39 df, a stricter bound for fewer bins.
  EXPECT_LT(chi2, 72.05) << bins << " bins";
  RecordProperty("chi2", std::to_string(chi2));
}
