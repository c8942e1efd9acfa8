// The sampling distribution itself, against an independent reference of the rule in sampler.hpp
// (top-k, softmax(logit / T), top-p nucleus, inverse CDF in descending-logit order).
//  - sample_with_uniform is a deterministic map u -> token, so sweeping u over a fine grid gives
//    each token's probability to within one grid step: an exact check, no statistics.
//  - RequestSampler draws u itself: a chi-square test on many seeded draws checks the uniform
//    stream and its use.
#include "nestedfp/sampler.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "nestedfp/error.hpp"

using namespace nestedfp;

namespace {

// P(token) under the rule, computed in a different way from sampler.cpp: rank tokens with a
// stable sort, weigh by exp(l / T) in long double, cut the nucleus on normalized cumulative mass.
std::vector<double> reference_probs(const std::vector<float>& logits, double T, int top_k,
                                    double top_p) {
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  const size_t k = top_k > 0 ? std::min(order.size(), size_t(top_k)) : order.size();
  std::vector<long double> w(k);
  long double z = 0;
  for (size_t i = 0; i < k; ++i)
    z += (w[i] = std::exp((long double)(logits[order[i]] - logits[order[0]]) / T));
  size_t keep = k;
  long double cum = 0;
  for (size_t i = 0; i < k && top_p < 1; ++i)
    if ((cum += w[i] / z) >= top_p) {
      keep = i + 1;
      break;
    }
  long double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += w[i];
  std::vector<double> p(logits.size(), 0.0);
  for (size_t i = 0; i < keep; ++i) p[order[i]] = double(w[i] / kept);
  return p;
}

// Fraction of a grid of N uniforms that sample_with_uniform maps to each token.
std::vector<double> grid_freqs(const std::vector<float>& logits, const SamplingParams& sp,
                               int N = 1 << 16) {
  std::vector<std::pair<float, int32_t>> scratch;
  std::vector<double> f(logits.size(), 0.0);
  for (int j = 0; j < N; ++j) {
    const int32_t t = sample_with_uniform(logits, sp, (j + 0.5) / N, scratch);
    EXPECT_TRUE(t >= 0 && size_t(t) < logits.size()) << t;
    f[size_t(t)] += 1.0 / N;
  }
  return f;
}

SamplingParams params(float T, int top_k = 0, float top_p = 1.f) {
  SamplingParams p;
  p.temperature = T, p.top_k = top_k, p.top_p = top_p;
  return p;
}

// Every token's grid frequency equals its reference probability to within a grid step; tokens of
// probability 0 never come out.
void expect_distribution(const std::vector<float>& logits, float T, int top_k, float top_p) {
  const int N = 1 << 16;
  const auto f = grid_freqs(logits, params(T, top_k, top_p), N);
  const auto p = reference_probs(logits, T, top_k, top_p);
  for (size_t i = 0; i < logits.size(); ++i) {
    if (p[i] == 0)
      EXPECT_EQ(f[i], 0.0) << "token " << i << " is outside top-k/top-p but was sampled";
    else
      EXPECT_NEAR(f[i], p[i], 1.5 / N)
          << "token " << i << " T=" << T << " k=" << top_k << " p=" << top_p;
  }
}

const std::vector<float> kLogits = {1.5f, -0.25f, 3.0f, 0.5f, 2.25f, -2.0f, 0.0f, 1.0f};

}  // namespace

TEST(SamplerDistribution, TemperatureScalesTheSoftmax) {
  for (float T : {0.25f, 0.7f, 1.0f, 1.6f, 4.0f}) expect_distribution(kLogits, T, 0, 1.f);
  // Sanity of the reference itself: a lower temperature sharpens, a higher one flattens.
  EXPECT_GT(reference_probs(kLogits, 0.25, 0, 1)[2], 0.9);
  EXPECT_LT(reference_probs(kLogits, 4.0, 0, 1)[2], 0.3);
}

TEST(SamplerDistribution, TopKKeepsExactlyTheKMostLikely) {
  for (int k : {1, 2, 3, 5, 8, 100}) expect_distribution(kLogits, 1.f, k, 1.f);
  for (int k : {2, 4}) expect_distribution(kLogits, 0.5f, k, 1.f);
}

TEST(SamplerDistribution, TopPKeepsTheSmallestNucleus) {
  for (float p : {0.05f, 0.5f, 0.7f, 0.9f, 0.99f}) expect_distribution(kLogits, 1.f, 0, p);
  for (float p : {0.6f, 0.95f}) expect_distribution(kLogits, 2.f, 5, p);  // with T and top-k
  // T = 1, probabilities 0.498 0.235 0.111 ...: top_p 0.7 keeps tokens 2 and 4 only.
  const auto f = grid_freqs(kLogits, params(1.f, 0, 0.7f));
  EXPECT_NEAR(f[2] + f[4], 1.0, 1e-12);
  EXPECT_GT(f[4], 0.2);
}

TEST(SamplerDistribution, NucleusBoundaryIsInclusive) {
  // Four equal logits: each token has probability exactly 1/4, so the mass after two tokens is
  // exactly 0.5 = top_p, and the nucleus is those two (the smallest prefix whose mass reaches p).
  const std::vector<float> eq = {1.f, 1.f, 1.f, 1.f};
  const auto f = grid_freqs(eq, params(1.f, 0, 0.5f));
  EXPECT_NEAR(f[0], 0.5, 1e-12);
  EXPECT_NEAR(f[1], 0.5, 1e-12);
  EXPECT_EQ(f[2] + f[3], 0.0);
}

TEST(SamplerDistribution, InverseCdfIntervalsAreHalfOpen) {
  // Two equal tokens: token 0 owns u in [0, 0.5), token 1 owns [0.5, 1).
  const std::vector<float> two = {0.f, 0.f};
  std::vector<std::pair<float, int32_t>> s;
  const auto sp = params(1.f);
  EXPECT_EQ(sample_with_uniform(two, sp, 0.0, s), 0);
  EXPECT_EQ(sample_with_uniform(two, sp, std::nextafter(0.5, 0.0), s), 0);
  EXPECT_EQ(sample_with_uniform(two, sp, 0.5, s), 1);
  EXPECT_EQ(sample_with_uniform(two, sp, std::nextafter(1.0, 0.0), s), 1);
  // Descending-logit order: the most likely token owns the start of [0, 1).
  EXPECT_EQ(sample_with_uniform(kLogits, sp, 0.0, s), 2);
  EXPECT_EQ(sample_with_uniform(kLogits, params(0.f), 0.99, s), 2);  // greedy ignores u
}

// Chi-square of seeded RequestSampler draws against the reference probabilities.
double chi_square(const std::vector<float>& logits, const SamplingParams& sp, int n, uint64_t seed,
                  int& outside) {
  SamplingParams p = sp;
  p.seed = seed;
  RequestSampler r(p);
  std::vector<int> count(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++count[size_t(r.sample(logits))];
  const auto prob = reference_probs(logits, sp.temperature, sp.top_k, sp.top_p);
  double chi2 = 0;
  outside = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (prob[i] == 0) {
      outside += count[i];
      continue;
    }
    const double e = prob[i] * n;
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  return chi2;
}

TEST(SamplerDistribution, SeededDrawsFollowTheDistribution) {
  // 7 degrees of freedom at most: P(chi2 > 35) < 2e-5 for a correct sampler, while a skewed
  // uniform stream or a dropped filter gives thousands at n = 40000.
  const SamplingParams cases[] = {params(1.f), params(0.6f), params(1.8f, 5), params(1.f, 0, 0.9f),
                                  params(0.8f, 6, 0.95f)};
  uint64_t seed = 0x5EED;
  for (const auto& sp : cases) {
    int outside = 0;
    const double chi2 = chi_square(kLogits, sp, 40000, seed++, outside);
    EXPECT_LT(chi2, 35.0) << "T=" << sp.temperature << " k=" << sp.top_k << " p=" << sp.top_p;
    EXPECT_EQ(outside, 0) << "tokens outside top-k/top-p were sampled";
  }
}

TEST(SamplerDistribution, UniformStreamIsUniformAndSeeded) {
  SamplingParams p = params(1.f);
  p.seed = 12345;
  RequestSampler a(p), b(p);
  const int n = 100000, bins = 20;
  std::vector<int> h(bins, 0);
  double lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    const double u = a.next_uniform();
    ASSERT_EQ(u, b.next_uniform());
    ASSERT_TRUE(u >= 0 && u < 1) << u;
    lo = std::min(lo, u), hi = std::max(hi, u);
    ++h[size_t(u * bins)];
  }
  double chi2 = 0;
  for (int c : h) chi2 += (c - double(n) / bins) * (c - double(n) / bins) / (double(n) / bins);
  EXPECT_LT(chi2, 60.0);  // 19 dof: P(chi2 > 60) < 1e-5
  EXPECT_LT(lo, 1e-3);
  EXPECT_GT(hi, 1 - 1e-3);
  // Without a seed the engine's fallback seed decides; different seeds give different streams.
  RequestSampler c(params(1.f), 1), d(params(1.f), 2);
  EXPECT_NE(c.next_uniform(), d.next_uniform());
}

TEST(SamplerDistribution, RejectsBadParameters) {
  EXPECT_THROW(params(-0.5f).validate(), Error);
  EXPECT_THROW(params(NAN).validate(), Error);
  EXPECT_THROW(params(1.f, 0, 1.5f).validate(), Error);
  EXPECT_THROW(params(1.f, 0, 0.f).validate(), Error);
  EXPECT_NO_THROW(params(0.f, 0, 1.f).validate());
}
