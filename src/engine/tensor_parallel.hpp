#pragma once
// Tensor parallelism of one model runner (docs/DESIGN.md §3.14): which slice of each weight a
// rank holds, and the all-reduce of the row-parallel outputs. Column-parallel q, k, v, gate, up
// (a rank holds whole heads / a block of intermediate rows); row-parallel o and down (the
// matching input columns, partial sums all-reduced); the embedding, norms and lm_head replicated.
// KV heads are replicated when there are more ranks than KV heads (each rank keeps the one its
// query heads read).
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>

#include "engine/checkpoint.hpp"
#include "engine/model_weights.hpp"
#include "nestedfp/backend.hpp"
#include "nestedfp/communicator.hpp"
#include "nestedfp/config.hpp"

namespace nestedfp::engine {

struct TpShard {
  int rank = 0, size = 1;
};

// Throws Error, naming the config field, when `c` cannot be split over `size` ranks: query heads
// and intermediate size must divide by it, and KV heads must divide by it or it by them.
void check_tensor_parallel(const io::ModelConfig& c, int size);
// The config one rank computes with: its query heads, KV heads and intermediate size.
io::ModelConfig shard_config(const io::ModelConfig& c, TpShard s);

enum class SplitKind { Replicated, Rows, Cols };
SplitKind split_kind(Slot s);
// The rank's [first, first + count) rows (SplitKind::Rows) or columns (Cols) of a weight of the
// full model `c`.
std::pair<int64_t, int64_t> shard_range(const io::ModelConfig& c, Slot s, TpShard t);

// The rank's slice of a host linear: nested planes (and fp16 values) sliced like the weight;
// per-row exponents k sliced with the rows, kept whole for a column slice (the full row's scale,
// so every shard scales as the unsplit weight does); biases sliced with the rows.
HostLinear slice_linear(const HostLinear& l, SplitKind kind, int64_t first, int64_t count);

// What a sharded runner keeps: the full model's config (tensors arrive at full size), its shard,
// and the communicator its row-parallel outputs are reduced over.
struct TpPlan {
  io::ModelConfig full;
  TpShard shard;
  backend::Communicator* comm = nullptr;
  // Sums a row-parallel output (fp16 [n]) over the ranks, in place.
  void reduce(backend::Backend& be, backend::Buffer& y, int64_t n) const;
  // The same on fp32 partial sums (one-GPU FP8 numerics: rounded to fp16 after the sum).
  void reduce_f32(backend::Backend& be, backend::Buffer& y, int64_t n) const;
  // The per-token FP8 scales of a row-parallel input (fp32 [n]): each rank's from its slice, in
  // place becomes the max over the ranks, the whole row's scale.
  void share_scales(backend::Backend& be, backend::Buffer& scale, int64_t n) const;
  backend::Communicator& communicator() const;  // Error when none was set
};

// The rank's share of a streamed linear weight `t` of slot Q..Down: random weights (dummy) are
// reshaped in place and get their own stream (returns null: the caller creates them as usual);
// real weights are nested on the host at full size (so eligibility and channel scales are those
// of the unsplit weight), sliced and uploaded.
// The same, kept on the host (the runner fuses column-parallel shards before uploading them);
// nullopt for random weights, reshaped as above.
std::optional<HostLinear> shard_host_linear(const backend::Backend& be, TensorItem& t,
                                            const TpPlan& plan, bool nested,
                                            format::ScaleMode mode);
std::unique_ptr<backend::LinearWeight> shard_linear(backend::Backend& be, TensorItem& t,
                                                    const TpPlan& plan, bool nested,
                                                    format::ScaleMode mode);

}  // namespace nestedfp::engine
