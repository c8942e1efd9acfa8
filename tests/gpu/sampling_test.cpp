// sample_tokens and logprobs_topn against host references: greedy argmax (ties, NaN), top-k and
// top-p support (never a token outside the kept set, ties at the boundary kept), the exact
// distribution by stratified u (inverse CDF: token j gets R·p_j ± 1 of R evenly spaced u), and
// log-probabilities / top-n order against an fp64 log_softmax.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "backend/cuda/ops.hpp"
#include "gpu_util.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::gputest {
namespace {

using cuda::SampleParams;

// Random logits; `step` > 0 rounds them to multiples of step, so ties are everywhere.
std::vector<float> random_logits(std::mt19937_64& rng, int V, float sd, float step) {
  std::normal_distribution<float> nd(0.f, sd);
  std::vector<float> l(static_cast<size_t>(V));
  for (auto& x : l) x = step > 0 ? std::round(nd(rng) / step) * step : nd(rng);
  return l;
}

// The distribution sample_tokens draws from (ops.hpp): top-k by value with boundary ties kept,
// softmax(l / T) over them, then the smallest logit threshold whose mass reaches top_p (ties kept).
std::vector<double> host_dist(const std::vector<float>& l, const SampleParams& p) {
  const size_t V = l.size();
  float tk = -INFINITY;
  if (p.top_k > 0 && size_t(p.top_k) < V) {
    std::vector<float> s = l;
    std::nth_element(s.begin(), s.begin() + (p.top_k - 1), s.end(), std::greater<float>());
    tk = s[size_t(p.top_k - 1)];
  }
  const double mx = *std::max_element(l.begin(), l.end());
  std::vector<double> w(V, 0.0);
  std::map<float, double, std::greater<float>> groups;  // logit value -> mass, descending
  double z = 0;
  for (size_t j = 0; j < V; ++j)
    if (l[j] >= tk) {
      w[j] = std::exp((double(l[j]) - mx) / p.temperature);
      z += w[j];
      groups[l[j]] += w[j];
    }
  float tp = tk;
  if (p.top_p < 1.f) {
    double cum = 0;
    for (auto [v, m] : groups) {
      cum += m;
      tp = v;
      if (cum >= double(p.top_p) * z) break;
    }
  }
  double kept = 0;
  for (size_t j = 0; j < V; ++j) kept += l[j] >= tp ? w[j] : (w[j] = 0.0);
  for (auto& x : w) x /= kept;
  return w;
}

// A top_p between the cumulative masses of two consecutive logit groups (the frac-th group of the
// kept set, at least the second): fp32 rounding on the device cannot move the boundary.
float safe_top_p(const std::vector<float>& l, SampleParams p, double frac) {
  p.top_p = 1.f;
  const auto w = host_dist(l, p);
  std::map<float, double, std::greater<float>> groups;
  for (size_t j = 0; j < l.size(); ++j)
    if (w[j] > 0) groups[l[j]] += w[j];
  std::vector<double> cum;
  double c = 0;
  for (auto [v, m] : groups) cum.push_back(c += m);
  if (cum.size() < 2) return 1.f;
  const size_t g = std::clamp<size_t>(size_t(frac * double(cum.size())), 1, cum.size() - 1);
  return float((cum[g - 1] + cum[g]) / 2);
}

std::vector<int32_t> run_sampler(const std::vector<float>& logits, int R, int V,
                                 const std::vector<SampleParams>& ps) {
  DeviceBuffer<float> dl(logits);
  DeviceBuffer<SampleParams> dp(ps);
  DeviceBuffer<int32_t> out(static_cast<size_t>(R));
  out.poison();
  const size_t ws_bytes = cuda::sample_workspace_bytes(R, V);
  DeviceBuffer<uint8_t> ws(ws_bytes);
  cuda::sample_tokens(dl.get(), R, V, dp.get(), out.get(), ws.get(), ws_bytes, nullptr);
  return out.download();
}

TEST(Sampling, GreedyIsArgmaxWithLowestIdOnTies) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const int V = 151936, R = 9;
  std::vector<float> logits;
  std::vector<int32_t> want;
  for (int r = 0; r < R; ++r) {
    auto l = random_logits(rng, V, 3.f, r % 2 ? 0.5f : 0.f);
    const float top = *std::max_element(l.begin(), l.end()) + 1.f;
    if (r == 1 || r == 2) {  // a planted tie: two (or three) ids share the maximum
      const int a = int(rng() % V), b = int(rng() % V);
      l[size_t(a)] = l[size_t(b)] = top;
      if (r == 2) l[size_t(V - 1)] = top;
    }
    if (r == 3) std::fill(l.begin(), l.end(), -2.f);     // all equal: id 0
    if (r == 4) l[size_t(rng() % V)] = NAN, l[0] = NAN;  // NaN never wins
    if (r == 5) std::fill(l.begin(), l.end(), -INFINITY), l[size_t(V / 3)] = -1e30f;
    int best = -1;
    for (int j = 0; j < V; ++j)
      if (!std::isnan(l[size_t(j)]) && (best < 0 || l[size_t(j)] > l[size_t(best)])) best = j;
    want.push_back(best);
    logits.insert(logits.end(), l.begin(), l.end());
  }
  std::vector<SampleParams> ps(static_cast<size_t>(R));
  for (auto& p : ps) p.top_k = 5, p.top_p = 0.5f, p.u = 0.9f;  // ignored at temperature 0
  EXPECT_EQ(run_sampler(logits, R, V, ps), want);
}

TEST(Sampling, NeverPicksOutsideTopKOrNucleus) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  const int V = 128256, R = 96;
  std::vector<float> logits;
  std::vector<SampleParams> ps;
  std::vector<std::vector<double>> dists;
  for (int r = 0; r < R; ++r) {
    // Coarse steps make many ties at the top-k / top-p boundaries.
    auto l = random_logits(rng, V, 2.f + float(r % 3), r % 2 ? 0.25f : 0.f);
    SampleParams p;
    p.temperature = 0.3f + 1.5f * ud(rng);
    p.top_k = r % 4 == 3 ? 0 : 1 + int(rng() % 64);
    p.top_p = r % 3 == 0 ? 1.f : safe_top_p(l, p, ud(rng));
    p.u = r < 8 ? float(r) / 8 * 0.999f + 0.0009f : ud(rng);  // some u near 0 and near 1
    if (r == 5) p.u = std::nextafter(1.f, 0.f);
    dists.push_back(host_dist(l, p));
    ps.push_back(p);
    logits.insert(logits.end(), l.begin(), l.end());
  }
  const auto got = run_sampler(logits, R, V, ps);
  for (int r = 0; r < R; ++r) {
    ASSERT_GE(got[size_t(r)], 0) << "row " << r;
    ASSERT_LT(got[size_t(r)], V) << "row " << r;
    EXPECT_GT(dists[size_t(r)][size_t(got[size_t(r)])], 0.0)
        << "row " << r << ": token " << got[size_t(r)] << " is outside top_k "
        << ps[size_t(r)].top_k << " / top_p " << ps[size_t(r)].top_p;
  }
  EXPECT_EQ(run_sampler(logits, R, V, ps), got) << "not deterministic";
}

// R rows of the same logits with u_i = (i + 1/2) / R: an exact inverse CDF gives token j
// round(R·p_j) ± 1 rows (its CDF interval has length p_j). The device's fp32 weights and sums
// move the interval ends by ~1e-6 relative, i.e. R·1e-6 << 1 rows: the bound is 2 rows per token,
// and exactly 0 rows for any token outside the kept set.
void expect_distribution(const std::vector<float>& l, SampleParams p, int R) {
  SCOPED_TRACE(testing::Message() << "V " << l.size() << " T " << p.temperature << " top_k "
                                  << p.top_k << " top_p " << p.top_p);
  const int V = int(l.size());
  std::vector<float> logits;
  logits.reserve(size_t(R) * V);
  std::vector<SampleParams> ps(size_t(R), p);
  for (int i = 0; i < R; ++i) {
    logits.insert(logits.end(), l.begin(), l.end());
    ps[size_t(i)].u = float((i + 0.5) / R);
  }
  const auto got = run_sampler(logits, R, V, ps);
  const auto want = host_dist(l, p);
  std::vector<int> count(size_t(V), 0);
  for (int32_t t : got) {
    ASSERT_TRUE(t >= 0 && t < V) << t;
    ++count[size_t(t)];
  }
  size_t bad = 0, outside = 0, support = 0;
  double chi2 = 0;
  for (int j = 0; j < V; ++j) {
    const double e = R * want[size_t(j)];
    bad += std::fabs(count[size_t(j)] - e) > 2.0;
    outside += want[size_t(j)] == 0 && count[size_t(j)] > 0;
    support += want[size_t(j)] > 0;
    if (e > 0) chi2 += (count[size_t(j)] - e) * (count[size_t(j)] - e) / e;
  }
  EXPECT_EQ(outside, 0u);
  EXPECT_EQ(bad, 0u) << "tokens off their expected count by more than 2 rows (chi2 " << chi2
                     << ", support " << support << ")";
}

TEST(Sampling, DistributionMatchesHostForTemperatureTopKTopP) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const int R = 4096;
  const auto l = random_logits(rng, 1000, 2.f, 0.f);
  const auto lt = random_logits(rng, 1000, 2.f, 0.5f);  // with ties
  SampleParams p;
  p.temperature = 1.f;
  expect_distribution(l, p, R);
  p.temperature = 0.7f, p.top_k = 20;
  expect_distribution(l, p, R);
  expect_distribution(lt, p, R);  // ties at the 20th value: all kept
  p.temperature = 1.3f, p.top_k = 0, p.top_p = safe_top_p(l, p, 0.3);
  expect_distribution(l, p, R);
  p.temperature = 0.8f, p.top_k = 50, p.top_p = safe_top_p(lt, p, 0.5);
  expect_distribution(lt, p, R);
  // A large vocabulary with a few dominant tokens over noise.
  auto big = random_logits(rng, 131089, 1.f, 0.f);
  for (int i = 0; i < 12; ++i) big[size_t(rng() % big.size())] = 9.f + float(i) * 0.3f;
  p = SampleParams{};
  p.temperature = 1.f;
  expect_distribution(big, p, 512);
  p.top_p = safe_top_p(big, p, 0.0);
  expect_distribution(big, p, 512);
}

TEST(Sampling, LogprobsMatchHostLogSoftmax) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (auto [V, R, top_n] : {std::tuple{151936, 6, 20}, std::tuple{1000, 3, 5},
                             std::tuple{10, 2, 20}, std::tuple{77, 2, 0}}) {
    SCOPED_TRACE(testing::Message() << "V " << V << " top_n " << top_n);
    std::vector<float> logits;
    std::vector<int32_t> chosen;
    for (int r = 0; r < R; ++r) {
      auto l = random_logits(rng, V, 4.f, r % 2 ? 0.125f : 0.f);  // odd rows: many ties
      logits.insert(logits.end(), l.begin(), l.end());
      chosen.push_back(int32_t(rng() % V));
    }
    DeviceBuffer<float> dl(logits), clp(static_cast<size_t>(R)),
        tlp(size_t(R) * std::max(top_n, 1));
    DeviceBuffer<int32_t> dc(chosen), tid(size_t(R) * std::max(top_n, 1));
    clp.poison(), tlp.poison(), tid.poison();
    cuda::logprobs_topn(dl.get(), R, V, dc.get(), top_n, clp.get(), top_n ? tid.get() : nullptr,
                        top_n ? tlp.get() : nullptr, nullptr);
    const auto g_c = clp.download(), g_lp = tlp.download();
    const auto g_id = tid.download();
    for (int r = 0; r < R; ++r) {
      const float* l = logits.data() + size_t(r) * V;
      const double mx = *std::max_element(l, l + V);
      double s = 0;
      for (int j = 0; j < V; ++j) s += std::exp(double(l[j]) - mx);
      const double lse = mx + std::log(s);
      // Both sides compute x - lse in double and round to float: at most an fp32 ulp apart.
      const auto close = [](double got, double want) {
        return std::fabs(got - want) <= 0x1p-22 * std::max(1.0, std::fabs(want));
      };
      EXPECT_TRUE(close(g_c[size_t(r)], l[chosen[size_t(r)]] - lse))
          << "row " << r << ": " << g_c[size_t(r)] << " vs " << l[chosen[size_t(r)]] - lse;
      std::vector<int32_t> idx(static_cast<size_t>(V));
      std::iota(idx.begin(), idx.end(), 0);
      const int n = std::min(V, top_n);
      std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int32_t a, int32_t b) {
        return l[a] > l[b] || (l[a] == l[b] && a < b);
      });
      for (int t = 0; t < top_n; ++t) {
        const size_t o = size_t(r) * top_n + t;
        if (t < n) {
          EXPECT_EQ(g_id[o], idx[size_t(t)]) << "row " << r << " rank " << t;
          EXPECT_TRUE(close(g_lp[o], l[idx[size_t(t)]] - lse)) << "row " << r << " rank " << t;
        } else {  // fewer tokens than top_n
          EXPECT_EQ(g_id[o], -1);
          EXPECT_EQ(g_lp[o], -INFINITY);
        }
      }
    }
  }
}

TEST(Sampling, BadArgumentsThrow) {
  DeviceBuffer<float> f(64);
  DeviceBuffer<int32_t> i(64);
  EXPECT_THROW(cuda::logprobs_topn(f.get(), 1, 64, i.get(), 21, f.get(), i.get(), f.get(), nullptr),
               Error);
  EXPECT_THROW(cuda::logprobs_topn(f.get(), 1, 64, i.get(), 1, nullptr, i.get(), f.get(), nullptr),
               Error);
  EXPECT_THROW(cuda::sample_tokens(f.get(), 1, 0, nullptr, i.get(), nullptr, 0, nullptr), Error);
  EXPECT_THROW(cuda::sample_tokens(f.get(), 1, 64, nullptr, i.get(), nullptr, 0, nullptr), Error);
}

}  // namespace
}  // namespace nestedfp::gputest
