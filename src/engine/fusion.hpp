#pragma once
// Fused projections (docs/DESIGN.md §3.4): a layer's q, k, v run as one linear `qkv`
// [qd + 2 kvd, H] and its gate, up as one `gate_up` [2I, H], their rows concatenated in that
// order (under tensor parallelism: each rank's shards, [q_r; k_r; v_r]). Nesting is per row, so
// the concatenation of nested parts is the nested form of the concatenated weight, bit for bit,
// and each output element is the dot product its part's own GEMM computes. Parts are fused only
// when they are stored alike: all nested or all plain FP16, the same K, biases on all or none,
// and every part's rows a multiple of 8 (the GPU GEMMs' N alignment: such a part would be plain
// on its own while the fused weight could be nested). FP8 baseline storages (accuracy studies)
// are never fused: a per-tensor scale is the part's own.
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/checkpoint.hpp"
#include "engine/model_weights.hpp"
#include "nestedfp/backend.hpp"

namespace nestedfp::engine {

enum class Fusion { None, Qkv, GateUp };
Fusion fusion_of(Slot s);  // Q, K, V: Qkv; Gate, Up: GateUp; else None
const char* to_string(Fusion f);
int fusion_parts(Fusion f);  // 3 | 2

// Why host parts (in row order) cannot run as one linear; empty when they can.
std::string fuse_refusal(std::span<const HostLinear* const> parts);
// The parts' rows concatenated: nested planes with their row exponents, or plain fp16; biases.
HostLinear concat_linears(std::span<const HostLinear* const> parts, std::string name);

// The weights of one fused group: the fused linear, or one per part (in row order).
struct FusedWeights {
  std::unique_ptr<backend::LinearWeight> fused;
  std::vector<std::unique_ptr<backend::LinearWeight>> parts;
};

// One layer's qkv or gate_up while its parts stream in (checkpoint walk order). Real values are
// appended to one host buffer as they arrive (the fused weight is never a second copy of its
// parts); random fills (dummy weights) and tensor-parallel shards nested on the host are kept as
// they come.
class FuseCollector {
 public:
  // A part as raw fp16 values or a random fill; `reserve_rows` sizes the buffer on the first.
  void add(TensorItem&& t, int64_t reserve_rows);
  // A part already nested (or kept plain) on the host: a tensor-parallel shard.
  void add(HostLinear&& shard);
  int size() const { return int(names_.size()); }
  const std::vector<std::string>& names() const { return names_; }
  // The weights on `be`. Raw parts are created with spec's storage (Nested or Plain) and
  // channel_scale: one fused linear when it comes out as the parts would (a Nested storage that
  // stays plain means a part cannot be nested: then each part on its own, as unfused). Dummy
  // parts fuse into one random fill (the first part's stream: statistically the same weights,
  // not the same numbers as unfused). Host parts are fused when fuse_refusal allows.
  FusedWeights finish(backend::Backend& be, const backend::LinearSpec& spec) const;

 private:
  std::vector<std::string> names_;
  std::vector<int64_t> rows_;
  int64_t cols_ = -1;
  std::vector<uint16_t> values_, bias_;      // real parts, rows appended; biases likewise
  std::vector<int64_t> bias_at_;             // per part: its bias in bias_, or -1 (none)
  std::vector<backend::RandomFill> random_;  // dummy parts
  std::vector<HostLinear> host_;             // tensor-parallel shards
};

}  // namespace nestedfp::engine
