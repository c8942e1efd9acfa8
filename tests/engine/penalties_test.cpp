// Penalties, logit_bias and min_tokens: the host rule on hand-computed values, the checks of its
// inputs, the engine's incremental per-request state against a recount, and whole requests on the
// fake model against a plain reference (tests/engine/penalty_reference.hpp).
#include "nestedfp/penalties.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "engine/fake_executor.hpp"
#include "engine/penalty_reference.hpp"
#include "engine/penalty_state.hpp"
#include "nestedfp/error.hpp"

using namespace nestedfp;
using nestedfp::fake::drain;
using nestedfp::fake::FakeExecutor;

namespace {

constexpr int kVocab = 40;

RowPenalties row(float rep, float freq, float pres) {
  RowPenalties r;
  r.repetition = rep, r.frequency = freq, r.presence = pres;
  return r;
}

}  // namespace

TEST(PenaltyRule, HandComputedValues) {
  std::vector<float> l = {2.f, -2.f, 1.f, 0.5f, 3.f, -1.f, 4.f};
  RowPenalties p = row(2.f, 0.5f, 0.25f);
  p.tokens = {0, 1, 4, 6};
  p.output_counts = {0, 2, 1, 0};
  p.in_prompt = {1, 0, 1, 0};  // token 6: neither in the prompt nor in the output
  p.bias_tokens = {0, 2, 5};
  p.bias_values = {2.f, 10.f, -INFINITY};
  apply_penalties(l, p.view());
  EXPECT_EQ(l[0], 2.f);        // bias first: (2 + 2) / 2, not 2 / 2 + 2
  EXPECT_EQ(l[1], -5.25f);     // -2 * 2 - 2 * 0.5 - 0.25
  EXPECT_EQ(l[2], 11.f);       // bias only
  EXPECT_EQ(l[3], 0.5f);       // untouched
  EXPECT_EQ(l[4], 0.75f);      // 3 / 2 - 0.5 - 0.25
  EXPECT_EQ(l[5], -INFINITY);  // masked
  EXPECT_EQ(l[6], 4.f);        // listed with no occurrence: untouched
  // Negative penalties reward; repetition < 1 raises positive logits.
  std::vector<float> m = {1.f, -1.f};
  RowPenalties q = row(0.5f, -1.f, -2.f);
  q.tokens = {0, 1}, q.output_counts = {3, 0}, q.in_prompt = {0, 1};
  apply_penalties(m, q.view());
  EXPECT_EQ(m[0], 7.f);  // 1 / 0.5 + 3 + 2
  EXPECT_EQ(m[1], -0.5f);
}

TEST(PenaltyRule, SampleRowSamplesPenalizedAndReportsRawLogprobs) {
  const std::vector<float> l = {1.f, 3.f, 2.f};
  RowPenalties p = row(1.f, 0.f, 0.f);
  p.bias_tokens = {0}, p.bias_values = {5.f};
  SamplingParams greedy;
  greedy.temperature = 0;
  std::vector<float> scratch;
  std::vector<std::pair<float, int32_t>> cand;
  SampledToken t = sample_row(l, p.view(), greedy, 0.0, 2, scratch, cand);
  EXPECT_EQ(t.token, 0);
  ASSERT_TRUE(t.logprobs);
  EXPECT_NEAR(t.logprobs->chosen.logprob, token_logprob(l, 0), 1e-6);
  EXPECT_EQ(t.logprobs->top[0].token, 1);  // the raw ranking
  EXPECT_EQ(sample_row(l, RowPenalties{}.view(), greedy, 0.0, -1, scratch, cand).token, 1);
}

TEST(PenaltyRule, InputsAreChecked) {
  std::vector<uint8_t> seen;
  auto bad = [&](RowPenalties p) {
    EXPECT_THROW(check_penalties(p.view(), kVocab, seen), Error);
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 0);  // scratch left clean
  };
  RowPenalties ok = row(1.2f, 0.5f, 0.5f);
  ok.tokens = {3, 39}, ok.output_counts = {1, 0}, ok.in_prompt = {0, 1};
  ok.bias_tokens = {3}, ok.bias_values = {-INFINITY};
  EXPECT_NO_THROW(check_penalties(ok.view(), kVocab, seen));
  auto p = ok;
  p.tokens = {3, 3};
  bad(p);
  p = ok, p.tokens = {3, 40};
  bad(p);
  p = ok, p.output_counts = {1};
  bad(p);
  p = ok, p.output_counts = {-1, 0};
  bad(p);
  p = ok, p.bias_tokens = {5, 5}, p.bias_values = {1.f, 1.f};
  bad(p);
  p = ok, p.bias_values = {NAN};
  bad(p);
  p = ok, p.repetition = 0.f;
  bad(p);
}

TEST(PenaltyParams, ValidateNamesTheField) {
  auto says = [](PenaltyParams p, const char* field) {
    try {
      p.validate(kVocab);
      ADD_FAILURE() << field << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
  };
  PenaltyParams p;
  EXPECT_NO_THROW(p.validate(kVocab));
  p.repetition_penalty = 0;
  says(p, "repetition_penalty");
  p = {}, p.frequency_penalty = 2.5f;
  says(p, "frequency_penalty");
  p = {}, p.presence_penalty = -2.5f;
  says(p, "presence_penalty");
  p = {}, p.min_tokens = -1;
  says(p, "min_tokens");
  p = {}, p.logit_bias = {{40, 1.f}};
  says(p, "logit_bias");
  p = {}, p.logit_bias = {{1, 101.f}};
  says(p, "logit_bias");
  p = {}, p.logit_bias = {{1, 1.f}, {1, 2.f}};
  says(p, "logit_bias");
}

// The state after each commit equals a recount of prompt + output, and the min_tokens mask lasts
// exactly until min_tokens tokens were committed.
TEST(PenaltyState, IncrementalCountsEqualARecount) {
  std::mt19937 rng(3);
  PenaltyParams p;
  p.frequency_penalty = 0.5f, p.min_tokens = 5;
  p.logit_bias = {{7, 3.f}, {9, -1.f}};
  std::vector<int32_t> prompt;
  for (int i = 0; i < 30; ++i) prompt.push_back(int32_t(rng() % kVocab));
  const std::vector<int32_t> stop = {9, 11};
  engine::PenaltyState st(p, prompt, stop);
  std::vector<int32_t> output;
  for (int g = 1; g <= 60; ++g) {
    const int32_t t = int32_t(rng() % kVocab);
    output.push_back(t);
    st.commit(t, g);
    const RowPenalties& r = st.row();
    std::map<int32_t, std::pair<int, int>> got, want;  // token -> (count, in prompt)
    for (size_t i = 0; i < r.tokens.size(); ++i)
      ASSERT_TRUE(got.emplace(r.tokens[i], std::pair{r.output_counts[i], r.in_prompt[i]}).second);
    for (int32_t x : prompt) want[x].second = 1;
    for (int32_t x : output) ++want[x].first;
    ASSERT_EQ(got, want) << "after " << g << " tokens";
    std::map<int32_t, float> bias;
    for (size_t i = 0; i < r.bias_tokens.size(); ++i) bias[r.bias_tokens[i]] = r.bias_values[i];
    if (g < 5)
      EXPECT_EQ(bias, (std::map<int32_t, float>{{7, 3.f}, {9, -INFINITY}, {11, -INFINITY}}));
    else
      EXPECT_EQ(bias, (std::map<int32_t, float>{{7, 3.f}, {9, -1.f}}));
  }
  // Only a bias: nothing recorded per token; nothing at all: inactive.
  PenaltyParams b;
  b.logit_bias = {{1, 1.f}};
  engine::PenaltyState sb(b, prompt, stop);
  sb.commit(1, 1);
  EXPECT_TRUE(sb.active());
  EXPECT_TRUE(sb.row().tokens.empty());
  EXPECT_FALSE(engine::PenaltyState(PenaltyParams{}, prompt, stop).active());
}

namespace {

GenerationRequest request(int max_tokens, float temperature, uint64_t seed, int salt) {
  GenerationRequest r;
  for (int i = 0; i < 12; ++i) r.prompt.push_back((i * 5 + salt * 3 + 1) % 9);  // repetitive
  r.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  return r;
}

// What the engine must produce for `r` on the fake model, by the plain reference.
std::vector<int32_t> expected(const GenerationRequest& r, const std::vector<int32_t>& eos) {
  RequestSampler draws(r.sampling, *r.sampling.seed);
  std::vector<int32_t> ctx = r.prompt, out;
  for (int i = 0; i < r.max_tokens; ++i) {
    std::vector<float> l(kVocab);
    FakeExecutor::logits_for(FakeExecutor::prefix_hash(ctx, ctx.size()), kVocab, Precision::FP16,
                             l.data());
    const int32_t t = reference::pick(reference::penalized(l, r, out, eos), r.sampling, draws);
    out.push_back(t), ctx.push_back(t);
    if (std::count(eos.begin(), eos.end(), t) && !r.ignore_eos) break;
  }
  return out;
}

}  // namespace

TEST(EnginePenalties, BatchedRequestsMatchThePlainReference) {
  std::vector<GenerationRequest> rs;
  for (int i = 0; i < 6; ++i) {
    auto r = request(24, i % 2 ? 0.8f : 0.f, 100 + i, i);
    r.penalties.repetition_penalty = i % 3 == 0 ? 1.6f : 1.f;
    r.penalties.frequency_penalty = i % 3 == 1 ? 0.7f : 0.f;
    r.penalties.presence_penalty = i >= 3 ? 1.1f : -0.3f;
    if (i == 4) r.penalties.logit_bias = {{2, 1.5f}, {30, -3.f}};
    rs.push_back(r);
  }
  FakeExecutor ex(kVocab, 128, 1024);
  Engine e(ex, EngineConfig{});
  std::vector<std::shared_ptr<RequestStream>> ss;
  for (auto& r : rs) ss.push_back(e.add_request(r));
  for (size_t i = 0; i < rs.size(); ++i) {
    RequestEvent ev = drain(*ss[i], &e);
    EXPECT_EQ(ev.token_ids, expected(rs[i], {})) << "request " << i;
  }
  // The penalties change the output (the fake model repeats itself without them).
  auto plain = rs[0];
  plain.penalties = {};
  EXPECT_NE(expected(plain, {}), expected(rs[0], {}));
}

TEST(EnginePenalties, MinTokensHoldsBackEosAndStopIds) {
  auto r = request(10, 0.f, 1, 0);
  const int32_t first = expected(r, {})[0];  // greedy's first token becomes EOS
  EngineConfig cfg;
  cfg.eos_token_ids = {first};
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, cfg);
  EXPECT_EQ(drain(*e.add_request(r), &e).token_ids, std::vector<int32_t>{first});
  for (int min_tokens : {1, 4}) {
    auto m = r;
    m.penalties.min_tokens = min_tokens;
    RequestEvent ev = drain(*e.add_request(m), &e);
    const auto want = expected(m, {first});
    EXPECT_EQ(ev.token_ids, want);
    ASSERT_GE(ev.token_ids.size(), size_t(min_tokens));
    for (int i = 0; i < min_tokens; ++i) EXPECT_NE(ev.token_ids[size_t(i)], first);
  }
  // stop_token_ids are held back as well; with ignore_eos the EOS id is an ordinary token.
  auto s = r;
  s.stop_token_ids = {first};
  s.ignore_eos = true;
  s.penalties.min_tokens = 3;
  RequestEvent ev = drain(*e.add_request(s), &e);
  ASSERT_GE(ev.token_ids.size(), 3u);
  EXPECT_NE(ev.token_ids[0], first);
}

TEST(EnginePenalties, LogitBiasForcesAToken) {
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, EngineConfig{});
  for (float t : {0.f, 1.f}) {
    auto r = request(8, t, 5, 2);
    r.penalties.logit_bias = {{17, 100.f}};
    EXPECT_EQ(drain(*e.add_request(r), &e).token_ids, std::vector<int32_t>(8, 17));
    r.penalties.logit_bias = {{expected(request(8, t, 5, 2), {})[0], -100.f}};
    EXPECT_NE(drain(*e.add_request(r), &e).token_ids[0], r.penalties.logit_bias[0].first);
  }
}

TEST(EnginePenalties, BadValuesAreRequestErrors) {
  FakeExecutor ex(kVocab, 64, 1024);
  Engine e(ex, EngineConfig{});
  auto r = request(4, 0.f, 1, 0);
  r.penalties.logit_bias = {{kVocab, 1.f}};
  EXPECT_THROW(e.add_request(r), RequestError);
  r = request(4, 0.f, 1, 0);
  r.penalties.min_tokens = 5;
  try {
    e.add_request(r);
    ADD_FAILURE() << "min_tokens > max_tokens accepted";
  } catch (const RequestError& err) {
    EXPECT_NE(std::string(err.what()).find("min_tokens"), std::string::npos);
  }
  r = request(4, 0.f, 1, 0);
  r.penalties.repetition_penalty = -1.f;
  EXPECT_THROW(e.add_request(r), RequestError);
}

// n samples of one request: each keeps its own output counts (sample j runs as the request alone
// with seed + j would).
TEST(EnginePenalties, EachOfNSamplesHasItsOwnHistory) {
  auto r = request(16, 0.9f, 50, 1);
  r.penalties.frequency_penalty = 1.5f, r.penalties.repetition_penalty = 1.3f;
  FakeExecutor ex(kVocab, 128, 1024);
  Engine e(ex, EngineConfig{});
  auto ss = e.add_requests(r, 3);
  ASSERT_EQ(ss.size(), 3u);
  for (uint64_t j = 0; j < 3; ++j) {
    auto rj = r;
    rj.sampling.seed = 50 + j;
    EXPECT_EQ(drain(*ss[j], &e).token_ids, expected(rj, {})) << "sample " << j;
  }
}
