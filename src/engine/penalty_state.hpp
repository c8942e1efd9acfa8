#pragma once
// A request's penalty inputs (penalties.hpp), kept current as its tokens are committed: each
// committed token updates one entry (amortized O(1)), so a long sequence is never recounted. The
// row it exposes is what SeqChunk::penalties points at for the request's next sampled token.
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "nestedfp/penalties.hpp"

namespace nestedfp::engine {

class PenaltyState {
 public:
  PenaltyState() = default;
  // `stop_ids`: the ids min_tokens masks (EOS unless ignore_eos, and stop_token_ids). The prompt is
  // recorded only when a penalty reads the history.
  PenaltyState(const PenaltyParams& p, std::span<const int32_t> prompt,
               std::span<const int32_t> stop_ids);
  // Whether sampling must see row(): some bias, mask or history-reading penalty.
  bool active() const { return active_; }
  const RowPenalties& row() const { return row_; }
  // After the `generated`-th output token (1-based) was committed.
  void commit(int32_t token, int generated);

 private:
  int32_t entry(int32_t token);  // the token's index in row_, added on first sight

  RowPenalties row_;
  bool active_ = false, history_ = false;
  int min_tokens_ = 0;
  std::vector<int32_t> bias_tokens_;  // the request's logit_bias, without the min_tokens mask
  std::vector<float> bias_values_;
  std::unordered_map<int32_t, int32_t> index_;  // token -> position in row_.tokens
};

}  // namespace nestedfp::engine
