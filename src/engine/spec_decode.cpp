#include "engine/spec_decode.hpp"

#include <chrono>
#include <span>

#include "nestedfp/error.hpp"
#include "nestedfp/speculative.hpp"

namespace nestedfp::engine {

std::vector<DraftStep> run_drafts(ModelExecutor& exec, StepInput& verify,
                                  std::vector<SpecSeq>& seqs) {
  int kmax = 0;
  for (auto& s : seqs) {
    kmax = std::max(kmax, s.k);
    s.drafts.clear(), s.q.clear(), s.emitted.clear(), s.accepted = 0;
  }
  std::vector<DraftStep> steps;
  for (int j = 0; j < kmax; ++j) {
    StepInput in;
    in.precision = Precision::FP8;
    std::vector<SpecSeq*> who;
    for (auto& s : seqs) {
      if (s.k <= j) continue;
      const SeqChunk& base = verify.seqs[s.index];
      SeqChunk c;
      c.seq_id = base.seq_id;
      c.tokens = {j == 0 ? base.tokens.back() : s.drafts.back()};
      c.start_pos = base.start_pos + j;  // this draft step writes (FP8) KV of that position
      c.block_table = base.block_table;
      // Greedy drafts are ordinary decode tokens (CUDA graphs replay them); sampled ones need
      // the draft distribution on the host for the rejection rule.
      c.sample = s.greedy();
      c.sampling = s.sampling;
      c.need_logits = !s.greedy();
      in.seqs.push_back(std::move(c));
      who.push_back(&s);
    }
    const auto t0 = std::chrono::steady_clock::now();
    StepOutput out = exec.execute(in);
    steps.push_back({int(who.size()),
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()});
    if (out.tokens.size() != who.size() || out.logits.size() != who.size())
      fail("executor returned results for {}/{} of {} draft sequences", out.tokens.size(),
           out.logits.size(), who.size());
    for (size_t i = 0; i < who.size(); ++i) {
      SpecSeq& s = *who[i];
      if (s.greedy()) {
        s.drafts.push_back(out.tokens[i]);
        continue;
      }
      std::vector<double> q = sampling_probs(out.logits[i], s.sampling);
      const double u = j == 0 ? s.first_uniform : s.sampler->next_uniform();
      s.drafts.push_back(sample_probs(q, u));
      s.q.push_back(std::move(q));
    }
  }
  for (auto& s : seqs) {
    SeqChunk& c = verify.seqs[s.index];
    c.tokens.insert(c.tokens.end(), s.drafts.begin(), s.drafts.end());
    c.need_logits = false;
    if (s.greedy()) {
      c.sample = c.sample_all = true;
    } else {
      c.sample = false;
      c.need_all_logits = true;
    }
  }
  return steps;
}

void accept_drafts(const StepInput& verify, const StepOutput& out, int vocab,
                   std::vector<SpecSeq>& seqs) {
  for (auto& s : seqs) {
    const size_t k = s.drafts.size();
    s.emitted.clear();
    s.accepted = 0;
    if (s.greedy()) {
      const auto& rows = out.row_tokens.at(s.index);
      if (rows.size() != k + 1)
        fail("executor returned {} verify tokens for sequence {}, expected {}", rows.size(),
             verify.seqs[s.index].seq_id, k + 1);
      // Row i holds FP16's greedy token after [.., d_i]: keep drafts while they match it.
      size_t i = 0;
      while (i < k && rows[i] == s.drafts[i]) s.emitted.push_back(s.drafts[i++]);
      s.accepted = int(i);
      s.emitted.push_back(rows[i]);
      continue;
    }
    const auto& logits = out.logits.at(s.index);
    const size_t V = size_t(vocab);
    auto row = [&](size_t i) { return std::span<const float>(logits).subspan(i * V, V); };
    size_t i = 0;
    for (; i < k; ++i) {
      const std::vector<double> p = sampling_probs(row(i), s.sampling);
      const double ua = s.sampler->next_uniform();
      // A resampling draw is taken only on rejection; the generator advances deterministically.
      const double ur = ua * s.q[i][size_t(s.drafts[i])] < p[size_t(s.drafts[i])]
                            ? 0.0
                            : s.sampler->next_uniform();
      const RuleResult r = speculative_accept(p, s.q[i], s.drafts[i], ua, ur);
      s.emitted.push_back(r.token);
      if (!r.accepted) break;
    }
    s.accepted = int(std::min(i, k));
    if (i == k)  // every draft accepted: the bonus token from FP16's last row
      s.emitted.push_back(
          sample_probs(sampling_probs(row(k), s.sampling), s.sampler->next_uniform()));
  }
}

}  // namespace nestedfp::engine
