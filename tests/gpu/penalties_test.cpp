// apply_penalties / restore_penalized (penalties.cu) against the host rule (apply_penalties of
// nestedfp/penalties.hpp) on fresh random data: bit-identical penalized rows (both repetition
// branches, zero logits, -inf masks, tokens in both lists, lists longer than a block), rows
// outside the buffer or not sampled untouched, and the raw logits back after the restore.
#include "nestedfp/penalties.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "backend/cuda/ops.hpp"
#include "gpu_util.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::gputest {
namespace {

// `n` distinct token ids below V.
std::vector<int32_t> distinct(std::mt19937_64& rng, int V, size_t n) {
  std::vector<int32_t> all(static_cast<size_t>(V));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(n);
  return all;
}

bool same_bits(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * 4) == 0; }

TEST(Penalties, KernelEqualsHostRuleAndRestores) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int V = 32000, rows = 6, row_begin = 3;
  // Sampled rows of the step: logits rows 3, 5, 8 fall in the buffer [3, 9), row 9 and 1 do not;
  // buffer rows 1, 3, 4 are not sampled and must stay as they are.
  const std::vector<int32_t> step_rows = {3, 5, 9, 8, 1};
  const std::vector<size_t> pen_sizes = {700, 0, 50, 3000, 20}, bias_sizes = {40, 5, 0, 600, 3};
  std::normal_distribution<float> nd(0.f, 4.f);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  std::vector<float> logits(size_t(rows) * V);
  for (auto& x : logits) x = ud(rng) < 0.01f ? 0.f : nd(rng);  // exact zeros: the l > 0 branch

  std::vector<RowPenalties> pr(step_rows.size());
  cuda::PenaltyBatch b;
  std::vector<int32_t> pen_indptr{0}, bias_indptr{0}, pen_tokens, pen_counts, bias_tokens;
  std::vector<uint8_t> in_prompt;
  std::vector<float> factors, bias_values;
  for (size_t i = 0; i < pr.size(); ++i) {
    RowPenalties& p = pr[i];
    p.repetition = 0.5f + 1.5f * ud(rng), p.frequency = 4.f * ud(rng) - 2.f;
    p.presence = 4.f * ud(rng) - 2.f;
    p.tokens = distinct(rng, V, pen_sizes[i]);
    for (size_t j = 0; j < p.tokens.size(); ++j) {
      p.output_counts.push_back(ud(rng) < 0.4f ? 0 : int32_t(rng() % 9));
      p.in_prompt.push_back(ud(rng) < 0.5f);
    }
    // Bias on half seen tokens, half others; a few masks.
    std::vector<int32_t> bt = distinct(rng, V, bias_sizes[i]);
    for (size_t j = 0; j < bt.size() / 2 && j < p.tokens.size(); ++j) bt[j] = p.tokens[j];
    std::sort(bt.begin(), bt.end());
    bt.erase(std::unique(bt.begin(), bt.end()), bt.end());
    for (int32_t t : bt) {
      p.bias_tokens.push_back(t);
      p.bias_values.push_back(ud(rng) < 0.1f ? -INFINITY : 200.f * ud(rng) - 100.f);
    }
    std::vector<uint8_t> seen;
    check_penalties(p.view(), V, seen);
    factors.insert(factors.end(), {p.repetition, p.frequency, p.presence});
    pen_tokens.insert(pen_tokens.end(), p.tokens.begin(), p.tokens.end());
    pen_counts.insert(pen_counts.end(), p.output_counts.begin(), p.output_counts.end());
    in_prompt.insert(in_prompt.end(), p.in_prompt.begin(), p.in_prompt.end());
    bias_tokens.insert(bias_tokens.end(), p.bias_tokens.begin(), p.bias_tokens.end());
    bias_values.insert(bias_values.end(), p.bias_values.begin(), p.bias_values.end());
    pen_indptr.push_back(int32_t(pen_tokens.size()));
    bias_indptr.push_back(int32_t(bias_tokens.size()));
  }
  DeviceBuffer<float> d_logits(logits), d_factors(factors), d_bias_values(bias_values);
  DeviceBuffer<int32_t> d_rows(step_rows), d_pi(pen_indptr), d_pt(pen_tokens), d_pc(pen_counts),
      d_bi(bias_indptr), d_bt(bias_tokens);
  DeviceBuffer<uint8_t> d_flags(in_prompt);
  DeviceBuffer<float> d_saved(pen_tokens.size() + bias_tokens.size());
  d_saved.poison();
  b = {int(step_rows.size()),
       d_rows.get(),
       d_factors.get(),
       d_pi.get(),
       d_pt.get(),
       d_pc.get(),
       d_flags.get(),
       d_bi.get(),
       d_bt.get(),
       d_bias_values.get(),
       d_saved.get()};

  cuda::apply_penalties(d_logits.get(), V, row_begin, rows, b, nullptr);
  const std::vector<float> got = d_logits.download();
  std::vector<float> want = logits;
  for (size_t i = 0; i < step_rows.size(); ++i) {
    const int r = step_rows[i] - row_begin;
    if (r < 0 || r >= rows) continue;
    apply_penalties(std::span(want).subspan(size_t(r) * V, size_t(V)), pr[i].view());
  }
  for (int r = 0; r < rows; ++r)
    EXPECT_TRUE(same_bits(got.data() + size_t(r) * V, want.data() + size_t(r) * V, size_t(V)))
        << "buffer row " << r;
  EXPECT_FALSE(same_bits(got.data(), logits.data(), got.size()));  // something did change

  cuda::restore_penalized(d_logits.get(), V, row_begin, rows, b, nullptr);
  const std::vector<float> back = d_logits.download();
  EXPECT_TRUE(same_bits(back.data(), logits.data(), logits.size()));
}

TEST(Penalties, NoSampledRowsIsANoOpAndNullsAreRefused) {
  cuda::PenaltyBatch empty;
  DeviceBuffer<float> l(std::vector<float>{1.f, 2.f});
  cuda::apply_penalties(l.get(), 2, 0, 1, empty, nullptr);  // nothing to do, nothing read
  EXPECT_EQ(l.download(), (std::vector<float>{1.f, 2.f}));
  cuda::PenaltyBatch one;
  one.num_rows = 1;
  EXPECT_THROW(cuda::apply_penalties(l.get(), 2, 0, 1, one, nullptr), Error);
}

}  // namespace
}  // namespace nestedfp::gputest
