// The host side of self-speculative decoding (speculative.hpp): the spec parser, the sampling
// distribution the rule reasons about, the rejection rule's output distribution, adaptive k.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "nestedfp/error.hpp"
#include "nestedfp/speculative.hpp"

using namespace nestedfp;

TEST(SpeculativeSpec, ParsesTheAcceptedForms) {
  EXPECT_FALSE(parse_speculative("off").enabled);
  EXPECT_FALSE(parse_speculative("").enabled);
  auto c = parse_speculative("fp8");
  EXPECT_TRUE(c.enabled);
  EXPECT_FALSE(c.adaptive);
  EXPECT_EQ(c.k, 4);
  EXPECT_EQ(c.spec(), "fp8:k=4");
  EXPECT_EQ(parse_speculative("fp8:k=7").k, 7);
  c = parse_speculative("fp8:k=auto,max=6,cost=0.5");
  EXPECT_TRUE(c.adaptive);
  EXPECT_EQ(c.max_k, 6);
  EXPECT_DOUBLE_EQ(c.draft_cost, 0.5);
  EXPECT_EQ(parse_speculative(c.spec()).spec(), c.spec());
  EXPECT_EQ(parse_speculative("fp8:k=auto").max_k, 8);
}

TEST(SpeculativeSpec, RefusesBadSpecsSayingWhy) {
  for (const char* bad : {"fp16", "fp8:k=0", "fp8:k=17", "fp8:k=x", "fp8:k", "fp8:j=2",
                          "fp8:k=2,max=4", "fp8:k=auto,cost=0", "fp8:k=auto,cost=1.5", "eagle"}) {
    try {
      parse_speculative(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("accepted forms"), std::string::npos) << e.what();
    }
  }
}

// sampling_probs must be the distribution sample_with_uniform draws from: every uniform lands on a
// token whose CDF interval (in sample_with_uniform's descending-logit order) contains it.
TEST(SpeculativeRule, SamplingProbsIsWhatTheSamplerDraws) {
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.f, 2.f);
  std::vector<std::pair<float, int32_t>> cand;
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> logits(50);
    for (auto& l : logits) l = n(rng);
    SamplingParams sp;
    sp.temperature = 0.5f + 0.1f * float(trial % 10);
    sp.top_k = trial % 3 == 0 ? 10 : 0;
    sp.top_p = trial % 2 ? 0.8f : 1.f;
    const std::vector<double> p = sampling_probs(logits, sp);
    double sum = 0;
    for (double x : p) sum += x;
    EXPECT_NEAR(sum, 1.0, 1e-12);
    std::vector<int> hits(logits.size(), 0);
    const int draws = 4000;
    for (int i = 0; i < draws; ++i)
      ++hits[size_t(sample_with_uniform(logits, sp, (i + 0.5) / draws, cand))];
    for (size_t t = 0; t < p.size(); ++t) {
      EXPECT_NEAR(hits[t] / double(draws), p[t], 1.0 / draws + 1e-9) << "token " << t;
      if (p[t] == 0) EXPECT_EQ(hits[t], 0);
    }
  }
  SamplingParams greedy;
  greedy.temperature = 0.f;
  const std::vector<float> l = {0.f, 3.f, 1.f};
  EXPECT_EQ(sampling_probs(l, greedy), (std::vector<double>{0, 1, 0}));
}

namespace {

// Pearson chi-square of observed counts against expected probabilities.
double chi_square(const std::vector<int>& counts, const std::vector<double>& p, int n) {
  double x = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double e = p[i] * n;
    x += (counts[i] - e) * (counts[i] - e) / e;
  }
  return x;
}

}  // namespace

// The output of the rule (draft from q, accept with min(1, p/q), else resample from the residual)
// must be distributed as p, for a q that puts mass where p has little and the other way round. The
// draws of q itself are far from p (checked), so accepting every draft would fail the same test.
TEST(SpeculativeRule, OutputDistributionIsTheTargets) {
  const std::vector<double> p = {0.30, 0.05, 0.20, 0.10, 0.02, 0.13, 0.15, 0.05};
  const std::vector<double> q = {0.10, 0.25, 0.20, 0.02, 0.13, 0.10, 0.05, 0.15};
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const int n = 200000;
  std::vector<int> out(p.size(), 0), drafted(p.size(), 0);
  int accepted = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t d = sample_probs(q, u(rng));
    ++drafted[size_t(d)];
    const RuleResult r = speculative_accept(p, q, d, u(rng), u(rng));
    accepted += r.accepted;
    ++out[size_t(r.token)];
  }
  // 7 degrees of freedom: P(chi2 > 24.32) = 0.001.
  EXPECT_LT(chi_square(out, p, n), 24.32);
  EXPECT_GT(chi_square(drafted, p, n), 1000.0);  // the drafts alone are far from p
  // Acceptance probability is sum_i min(p_i, q_i) = 0.59 here.
  EXPECT_NEAR(accepted / double(n), 0.59, 0.01);
}

TEST(SpeculativeRule, EqualDistributionsAlwaysAccept) {
  const std::vector<double> p = {0.5, 0.25, 0.25};
  for (int32_t d = 0; d < 3; ++d) EXPECT_TRUE(speculative_accept(p, p, d, 0.999, 0.5).accepted);
  // A draft the target gives no mass is always rejected and replaced by a token it does.
  const std::vector<double> p2 = {0.0, 1.0, 0.0}, q2 = {0.5, 0.5, 0.0};
  const RuleResult r = speculative_accept(p2, q2, 0, 0.0, 0.3);
  EXPECT_FALSE(r.accepted);
  EXPECT_EQ(r.token, 1);
}

TEST(SpeculativeAdaptive, DraftLengthFollowsAcceptance) {
  EXPECT_EQ(choose_draft_len(0.0, 8, 0.6), 1);
  EXPECT_EQ(choose_draft_len(0.3, 8, 0.6), 1);
  EXPECT_EQ(choose_draft_len(0.99, 8, 0.1), 8);
  int prev = 0;
  for (double a = 0.0; a < 0.99; a += 0.05) {  // more acceptance never drafts fewer
    const int k = choose_draft_len(a, 8, 0.3);
    EXPECT_GE(k, prev) << a;
    prev = k;
  }
  EXPECT_GT(prev, 3);
  AcceptanceEstimate e;
  EXPECT_DOUBLE_EQ(e.rate(0.8), 0.8);
  for (int i = 0; i < 30; ++i) e.update(4, 4);  // all accepted: 4 checked, 4 accepted
  EXPECT_NEAR(e.rate(), 1.0, 1e-12);
  for (int i = 0; i < 30; ++i) e.update(4, 1);  // one accepted, the second rejected: 2 checked
  EXPECT_NEAR(e.rate(), 0.5, 0.01);
}
