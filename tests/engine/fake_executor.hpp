#pragma once
// A deterministic stand-in for a model: "KV" cells hold (token, position, hash of the prefix), the
// logits of a position are a hash of the whole prefix read back through the block table. Wrong
// block tables, lost KV after preemption or a cross-talk between sequences of a step change the
// logits (or trip a check), so tests comparing runs catch them. FP8 steps perturb the logits
// slightly.
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "nestedfp/engine.hpp"
#include "nestedfp/step.hpp"

namespace nestedfp::fake {

inline uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  h *= 0xff51afd7ed558ccdull;
  return h ^ (h >> 33);
}

class FakeExecutor : public ModelExecutor {
 public:
  struct StepRecord {
    Precision precision;
    int tokens = 0;
    std::vector<int64_t> seq_ids;
    std::vector<int> chunk_sizes;
  };

  FakeExecutor(int vocab, int blocks, int max_len)
      : vocab_(vocab), blocks_(blocks), max_len_(max_len) {
    cells_.assign(static_cast<size_t>(blocks) * kKvBlockSize, Cell{});
  }

  // Logits of the next token after a prefix whose hash is h.
  static void logits_for(uint64_t h, int vocab, Precision p, float* out) {
    for (int v = 0; v < vocab; ++v) {
      uint64_t x = mix(h, static_cast<uint64_t>(v) + 1);
      float l = static_cast<float>(x % 10000) / 1000.0f - 5.0f;  // [-5, 5)
      if (p == Precision::FP8) l += static_cast<float>((x >> 20) % 7) * 0.05f;
      out[v] = l;
    }
  }
  static uint64_t prefix_hash(const std::vector<int32_t>& tokens, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; ++i) h = mix(h, static_cast<uint64_t>(tokens[i]) * 1000003ull + i);
    return h;
  }

  StepOutput execute(const StepInput& in) override {
    if (hook) hook(in);
    std::lock_guard lk(mu_);
    StepRecord rec{in.precision, 0, {}, {}};
    std::map<int32_t, int64_t> writer;  // block -> the sequence writing it this step
    StepOutput out;
    for (const auto& s : in.seqs) {
      rec.tokens += static_cast<int>(s.tokens.size());
      rec.seq_ids.push_back(s.seq_id);
      rec.chunk_sizes.push_back(static_cast<int>(s.tokens.size()));
      const int end = s.start_pos + static_cast<int>(s.tokens.size());
      if (end > max_len_) throw std::runtime_error("fake: position past max_model_len");
      if (static_cast<int>(s.block_table.size()) * kKvBlockSize < end)
        throw std::runtime_error("fake: block table too short");
      // Every cached position must hold this sequence's KV (checked by position and chaining).
      uint64_t h = 1469598103934665603ull;
      for (int p = 0; p < s.start_pos; ++p) {
        const Cell& c = cell(s.block_table, p);
        if (c.pos != p || c.prev != h)
          throw std::runtime_error("fake: cached KV does not belong to this sequence");
        h = c.hash;
      }
      std::vector<float> logits, last_row(static_cast<size_t>(vocab_));
      std::vector<int32_t> row_tokens;  // sample_all: the greedy token after every position
      for (size_t i = 0; i < s.tokens.size(); ++i) {
        int p = s.start_pos + static_cast<int>(i);
        int32_t blk = s.block_table[static_cast<size_t>(p / kKvBlockSize)];
        auto [it, fresh] = writer.emplace(blk, s.seq_id);
        if (!fresh && it->second != s.seq_id)
          throw std::runtime_error("fake: two sequences write one block");
        Cell& c = cell(s.block_table, p);
        c.pos = p;
        c.prev = h;
        h = mix(h, static_cast<uint64_t>(s.tokens[i]) * 1000003ull + static_cast<uint64_t>(p));
        c.hash = h;
        bool last = i + 1 == s.tokens.size();
        if (s.need_all_logits || (last && s.need_logits)) {
          size_t off = logits.size();
          logits.resize(off + static_cast<size_t>(vocab_));
          logits_for(h, vocab_, in.precision, logits.data() + off);
        }
        if (last || s.sample_all) logits_for(h, vocab_, in.precision, last_row.data());
        if (s.sample && s.sample_all) row_tokens.push_back(argmax(last_row));
      }
      out.logits.push_back(std::move(logits));
      out.row_tokens.push_back(std::move(row_tokens));
      // Sampling as a real executor does it (on its "device"), with the engine's uniform draw.
      SampledToken t;
      if (s.sample && !s.tokens.empty())
        t = s.penalties ? sample_row(last_row, s.penalties->view(), s.sampling, s.uniform,
                                     s.top_logprobs, penalized_, cand_)
                        : sample_row(last_row, s.sampling, s.uniform, s.top_logprobs, cand_);
      out.tokens.push_back(t.token);
      out.logprobs.push_back(std::move(t.logprobs));
    }
    steps.push_back(rec);
    return out;
  }
  // Like a GPU when `overlap`: launch() returns before the step runs and collect() runs it, so
  // the engine does the previous step's output work in between (deferred by one step). Set from
  // NESTEDFP_TEST_OVERLAP=1: ctest runs the engine suite both ways.
  bool overlap = [] {
    const char* v = std::getenv("NESTEDFP_TEST_OVERLAP");
    return v && std::string(v) == "1";
  }();
  void launch(const StepInput& in) override {
    if (!overlap) return ModelExecutor::launch(in);
    if (pending_) throw std::runtime_error("fake: launch while a step is in flight");
    pending_ = &in;
  }
  StepOutput collect() override {
    if (!overlap) return ModelExecutor::collect();
    if (!pending_) throw std::runtime_error("fake: collect without a launched step");
    const StepInput* in = std::exchange(pending_, nullptr);
    return execute(*in);
  }
  bool overlaps_host() const override { return overlap; }
  int num_kv_blocks() const override { return blocks_; }
  int vocab_size() const override { return vocab_; }
  int max_model_len() const override { return max_len_; }
  int max_step_tokens() const override { return 1 << 30; }

  std::vector<StepRecord> steps;
  std::function<void(const StepInput&)> hook;  // runs at the start of execute (outside the lock)

 private:
  struct Cell {
    int pos = -1;
    uint64_t prev = 0, hash = 0;
  };
  Cell& cell(const std::vector<int32_t>& table, int p) {
    int32_t b = table[static_cast<size_t>(p / kKvBlockSize)];
    if (b < 0 || b >= blocks_) throw std::runtime_error("fake: block id out of range");
    return cells_[static_cast<size_t>(b) * kKvBlockSize + static_cast<size_t>(p % kKvBlockSize)];
  }
  int vocab_, blocks_, max_len_;
  const StepInput* pending_ = nullptr;
  std::vector<Cell> cells_;
  std::vector<std::pair<float, int32_t>> cand_;
  std::vector<float> penalized_;
  std::mutex mu_;
};

// Token v reads as a letter (a..z), then two letters for larger ids: stop strings can span tokens.
class LetterDecoder : public TextDecoder {
 public:
  static std::string piece(int32_t v) {
    std::string s(1, static_cast<char>('a' + v % 26));
    if (v >= 26) s += static_cast<char>('a' + (v / 26) % 26);
    return s;
  }
  std::string push(int32_t id) override { return piece(id); }
  std::string finish() override { return {}; }
};

inline TextDecoderFactory letter_decoder() {
  return [] { return std::make_unique<LetterDecoder>(); };
}

// Drains a stream to its final event, merging everything.
inline RequestEvent drain(RequestStream& s, Engine* stepper = nullptr, int max_steps = 100000) {
  RequestEvent all;
  for (int i = 0; i < max_steps; ++i) {
    if (stepper) stepper->step();
    auto ev = s.next(std::chrono::milliseconds(stepper ? 0 : 10000));
    if (!ev) {
      if (!stepper) throw std::runtime_error("drain: timed out");
      continue;
    }
    all.token_ids.insert(all.token_ids.end(), ev->token_ids.begin(), ev->token_ids.end());
    for (auto& l : ev->logprobs) all.logprobs.push_back(l);
    all.text += ev->text;
    if (!ev->prompt_logprobs.empty()) all.prompt_logprobs = ev->prompt_logprobs;
    all.prompt_tokens = ev->prompt_tokens;
    all.completion_tokens = ev->completion_tokens;
    if (ev->finish != FinishReason::None) {
      all.finish = ev->finish;
      all.error = ev->error;
      return all;
    }
  }
  throw std::runtime_error("drain: request did not finish");
}

}  // namespace nestedfp::fake
