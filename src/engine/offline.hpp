#pragma once
// Offline drivers over a ModelExecutor without the scheduler: one sequence at a time (CLI
// generate, perplexity, tests). The sequence uses blocks 0, 1, 2, ... of the cache.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "nestedfp/step.hpp"

namespace nestedfp::engine {

class SingleSequence {
 public:
  explicit SingleSequence(ModelExecutor& ex, int64_t seq_id = 0) : ex_(ex), id_(seq_id) {}
  // Appends tokens (as one step, or in chunks of at most `chunk` tokens) and returns the logits
  // of the last one, or of every one when all_logits ([n, vocab] row-major).
  std::vector<float> feed(std::span<const int32_t> tokens, Precision p, bool all_logits = false,
                          int chunk = 0);
  int32_t length() const { return len_; }
  void reset() { len_ = 0; }

 private:
  ModelExecutor& ex_;
  int64_t id_;
  int32_t len_ = 0;
};

// Mean negative log-likelihood of ids[1:] given their prefixes, fed as one fresh sequence.
double chunk_mean_nll(ModelExecutor& ex, std::span<const int32_t> ids, Precision p);

struct PerplexityResult {
  double ppl = 0, mean_nll = 0, seconds = 0;
  int64_t tokens = 0;  // scored targets
  int chunks = 0;
  std::vector<double> chunk_nll;
};
// The REFERENCE.json protocol: chunk i = ids[L*i, L*i + L), fed alone, L - 1 scored targets.
// max_chunks <= 0: every full chunk. progress(done, total) after each chunk.
PerplexityResult perplexity(ModelExecutor& ex, std::span<const int32_t> ids, Precision p,
                            int max_chunks = 0, int chunk_len = 512,
                            const std::function<void(int, int)>& progress = {});

// The whole content of a text file; gzip-compressed when the name ends in .gz. Throws Error.
std::string read_text_file(const std::string& path);

}  // namespace nestedfp::engine
