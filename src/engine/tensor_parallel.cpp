#include "engine/tensor_parallel.hpp"

#include <spdlog/spdlog.h>

#include "engine/model_runner.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::engine {

void check_tensor_parallel(const io::ModelConfig& c, int size) {
  if (size < 1) fail("--tensor-parallel-size must be at least 1, got {}", size);
  if (size == 1) return;
  auto why = [&](const char* field, int64_t v) {
    fail(
        "--tensor-parallel-size {}: {} = {} is not divisible by {}; choose a size that divides "
        "it",
        size, field, v, size);
  };
  if (c.num_heads % size) why("num_attention_heads", c.num_heads);
  if (c.intermediate_size % size) why("intermediate_size", c.intermediate_size);
  if (c.num_kv_heads % size && size % c.num_kv_heads)
    fail(
        "--tensor-parallel-size {}: num_key_value_heads = {} neither divides by it nor divides it "
        "(KV heads are split, or replicated when there are more ranks than KV heads)",
        size, c.num_kv_heads);
}

io::ModelConfig shard_config(const io::ModelConfig& c, TpShard s) {
  check_tensor_parallel(c, s.size);
  io::ModelConfig r = c;
  r.num_heads = c.num_heads / s.size;
  r.num_kv_heads = std::max(1, c.num_kv_heads / s.size);
  r.intermediate_size = c.intermediate_size / s.size;
  return r;
}

SplitKind split_kind(Slot s) {
  switch (s) {
    case Slot::Q:
    case Slot::K:
    case Slot::V:
    case Slot::Gate:
    case Slot::Up: return SplitKind::Rows;
    case Slot::O:
    case Slot::Down: return SplitKind::Cols;
    default: return SplitKind::Replicated;
  }
}

std::pair<int64_t, int64_t> shard_range(const io::ModelConfig& c, Slot s, TpShard t) {
  const int64_t hd = c.head_dim, nq = c.num_heads / t.size;
  const int64_t I = c.intermediate_size / t.size;
  switch (s) {
    case Slot::Q:
    case Slot::O: return {t.rank * nq * hd, nq * hd};
    case Slot::K:
    case Slot::V: {
      if (t.size <= c.num_kv_heads) {
        const int64_t n = c.num_kv_heads / t.size;
        return {t.rank * n * hd, n * hd};
      }
      // More ranks than KV heads: the head that this rank's query heads read (GQA groups are
      // contiguous query heads), replicated across size / num_kv_heads ranks.
      return {int64_t(t.rank / (t.size / c.num_kv_heads)) * hd, hd};
    }
    case Slot::Gate:
    case Slot::Up:
    case Slot::Down: return {t.rank * I, I};
    default: fail("internal: {} is not split across ranks", to_string(s));
  }
}

HostLinear slice_linear(const HostLinear& l, SplitKind kind, int64_t first, int64_t count) {
  const bool rows = kind == SplitKind::Rows;
  if (kind == SplitKind::Replicated) return l;
  if (first < 0 || count <= 0 || first + count > (rows ? l.rows : l.cols))
    fail("internal: slice [{}, {}) outside {} {} of {}", first, first + count,
         rows ? l.rows : l.cols, rows ? "rows" : "columns", l.name);
  if (l.fp8) fail("{}: FP8 baseline weights cannot be split across ranks", l.name);
  HostLinear o;
  o.name = l.name, o.plain_reason = l.plain_reason;
  o.rows = rows ? count : l.rows, o.cols = rows ? l.cols : count;
  // Copies [first, first + count) of every row (column slice) or rows [first, first + count).
  auto cut = [&](const auto& v) {
    using V = std::decay_t<decltype(v)>;
    if (rows) return V(v.begin() + first * l.cols, v.begin() + (first + count) * l.cols);
    V out;
    out.reserve(size_t(l.rows * count));
    for (int64_t r = 0; r < l.rows; ++r)
      out.insert(out.end(), v.begin() + r * l.cols + first, v.begin() + r * l.cols + first + count);
    return out;
  };
  if (l.nested) {
    format::NestedTensor t;
    t.rows = o.rows, t.cols = o.cols, t.mode = l.nested->mode;
    t.upper = cut(l.nested->upper), t.lower = cut(l.nested->lower);
    t.k = rows && !l.nested->k.empty() ? std::vector<int8_t>(l.nested->k.begin() + first,
                                                             l.nested->k.begin() + first + count)
                                       : l.nested->k;
    o.nested = std::move(t);
  } else {
    o.fp16 = cut(l.fp16);
  }
  if (!l.bias.empty()) {
    if (!rows) fail("{}: a row-parallel weight with a bias is not supported", l.name);
    o.bias.assign(l.bias.begin() + first, l.bias.begin() + first + count);
  }
  return o;
}

backend::Communicator& TpPlan::communicator() const {
  if (!comm)
    fail("internal: tensor-parallel rank {} of {} runs a step without a communicator", shard.rank,
         shard.size);
  return *comm;
}

void TpPlan::reduce(backend::Backend& be, backend::Buffer& y, int64_t n) const {
  communicator().all_reduce_sum(be, y, n, backend::ElemType::F16);
}

void TpPlan::reduce_f32(backend::Backend& be, backend::Buffer& y, int64_t n) const {
  communicator().all_reduce_sum(be, y, n, backend::ElemType::F32);
}

void TpPlan::share_scales(backend::Backend& be, backend::Buffer& scale, int64_t n) const {
  communicator().all_reduce_max(be, scale, n);
}

std::optional<HostLinear> shard_host_linear(const backend::Backend& be, TensorItem& t,
                                            const TpPlan& plan, bool nested,
                                            format::ScaleMode mode) {
  const SplitKind kind = split_kind(t.slot);
  const auto [first, count] = shard_range(plan.full, t.slot, plan.shard);
  if (t.random) {
    // Dummy weights: the shard's own random stream (statistically the same model, not the same
    // numbers as the unsplit dummy model).
    (kind == SplitKind::Rows ? t.rows : t.cols) = count;
    t.random->seed = t.random->seed * 0x9E3779B97F4A7C15ull + uint64_t(plan.shard.rank) + 1;
    return std::nullopt;
  }
  HostLinear full = make_linear(t.name, std::move(t.values), t.rows, t.cols, mode, nested);
  full.bias = std::move(t.bias);
  HostLinear part = slice_linear(full, kind, first, count);
  // The nested GEMMs of a GPU need K % 16 == 0 and N % 8 == 0; a shard that misses it runs plain.
  if (part.nested && be.is_gpu() && (part.cols % 16 || part.rows % 8)) {
    spdlog::warn("{}: the {}x{} shard misses the nested GEMMs' alignment; kept FP16", t.name,
                 part.rows, part.cols);
    part.fp16 = format::unscale_merge_tensor(*part.nested);
    part.nested.reset();
  }
  return part;
}

std::unique_ptr<backend::LinearWeight> shard_linear(backend::Backend& be, TensorItem& t,
                                                    const TpPlan& plan, bool nested,
                                                    format::ScaleMode mode) {
  std::optional<HostLinear> part = shard_host_linear(be, t, plan, nested, mode);
  return part ? upload_linear(be, *part) : nullptr;
}

}  // namespace nestedfp::engine
