#include "engine/fusion.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <numeric>

#include "engine/model_runner.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::engine {

Fusion fusion_of(Slot s) {
  switch (s) {
    case Slot::Q:
    case Slot::K:
    case Slot::V: return Fusion::Qkv;
    case Slot::Gate:
    case Slot::Up: return Fusion::GateUp;
    default: return Fusion::None;
  }
}

const char* to_string(Fusion f) {
  return f == Fusion::Qkv ? "qkv" : f == Fusion::GateUp ? "gate_up" : "none";
}

int fusion_parts(Fusion f) { return f == Fusion::Qkv ? 3 : f == Fusion::GateUp ? 2 : 1; }

std::string fuse_refusal(std::span<const HostLinear* const> parts) {
  if (parts.empty()) return "no parts";
  const HostLinear& a = *parts[0];
  for (const HostLinear* p : parts) {
    if (p->fp8) return p->name + " is an FP8 baseline weight";
    if (p->nested.has_value() != a.nested.has_value())
      return fmt::format("{} is {}, {} is {}", a.name, a.nested ? "nested" : "plain", p->name,
                         p->nested ? "nested" : "plain");
    if (p->nested && p->nested->mode != a.nested->mode)
      return fmt::format("{} and {} have different scale modes", a.name, p->name);
    if (p->cols != a.cols)
      return fmt::format("{} has {} columns, {} {}", a.name, a.cols, p->name, p->cols);
    if (p->bias.empty() != a.bias.empty())
      return fmt::format("{} and {} do not both have a bias", a.name, p->name);
    if (p->rows % 8) return fmt::format("{} has {} rows (not a multiple of 8)", p->name, p->rows);
  }
  return {};
}

HostLinear concat_linears(std::span<const HostLinear* const> parts, std::string name) {
  if (const std::string why = fuse_refusal(parts); !why.empty())
    fail("internal: cannot fuse {}: {}", name, why);
  HostLinear o;
  o.name = std::move(name), o.cols = parts[0]->cols;
  const bool nested = parts[0]->nested.has_value();
  bool any_k = false;
  for (const HostLinear* p : parts) {
    o.rows += p->rows;
    any_k = any_k || (nested && !p->nested->k.empty());
  }
  auto append = [](auto& dst, const auto& src) { dst.insert(dst.end(), src.begin(), src.end()); };
  if (nested) {
    format::NestedTensor t;
    t.rows = o.rows, t.cols = o.cols, t.mode = parts[0]->nested->mode;
    t.upper.reserve(size_t(o.rows * o.cols)), t.lower.reserve(size_t(o.rows * o.cols));
    for (const HostLinear* p : parts) {
      append(t.upper, p->nested->upper), append(t.lower, p->nested->lower);
      // An empty k means all zero (--nested-scale none).
      if (any_k) {
        if (p->nested->k.empty())
          t.k.resize(t.k.size() + size_t(p->rows), 0);
        else
          append(t.k, p->nested->k);
      }
    }
    o.nested = std::move(t);
  } else {
    o.fp16.reserve(size_t(o.rows * o.cols));
    for (const HostLinear* p : parts) append(o.fp16, p->fp16);
  }
  for (const HostLinear* p : parts) append(o.bias, p->bias);
  return o;
}

void FuseCollector::add(TensorItem&& t, int64_t reserve_rows) {
  if (!host_.empty() || (t.random.has_value() != !random_.empty() && size() > 0))
    fail("internal: {} mixes raw, random and host parts", t.name);
  if (cols_ >= 0 && t.cols != cols_)
    fail("internal: {} has {} columns, its fused siblings {}", t.name, t.cols, cols_);
  cols_ = t.cols;
  names_.push_back(t.name), rows_.push_back(t.rows);
  if (t.random) {
    random_.push_back(*t.random);
  } else {
    if (values_.empty()) values_.reserve(size_t(std::max(reserve_rows, t.rows) * t.cols));
    values_.insert(values_.end(), t.values.begin(), t.values.end());
    std::vector<uint16_t>().swap(t.values);  // the part is in the buffer now: free it
  }
  if (!t.bias.empty() || t.random_bias) {
    bias_at_.push_back(int64_t(bias_.size()));
    if (t.bias.empty())
      bias_.resize(bias_.size() + size_t(t.rows), 0);  // dummy biases are zero
    else
      bias_.insert(bias_.end(), t.bias.begin(), t.bias.end());
  } else {
    bias_at_.push_back(-1);
  }
}

void FuseCollector::add(HostLinear&& shard) {
  if (!random_.empty() || !values_.empty())
    fail("internal: {} mixes raw, random and host parts", shard.name);
  names_.push_back(shard.name), rows_.push_back(shard.rows);
  host_.push_back(std::move(shard));
}

FusedWeights FuseCollector::finish(backend::Backend& be, const backend::LinearSpec& base) const {
  FusedWeights out;
  const std::string name = fmt::format("{}", fmt::join(names_, " + "));
  if (!host_.empty()) {
    std::vector<const HostLinear*> p;
    for (const HostLinear& h : host_) p.push_back(&h);
    if (fuse_refusal(p).empty())
      out.fused = upload_linear(be, concat_linears(p, name));
    else
      for (const HostLinear& h : host_) out.parts.push_back(upload_linear(be, h));
    return out;
  }
  if (base.storage != backend::RawStorage::Nested && base.storage != backend::RawStorage::Plain)
    fail("internal: {}: FP8 baseline storages are not fused", name);
  const bool random = !random_.empty();
  // One part's spec (part < 0: the fused weight's).
  auto spec = [&](int part) {
    backend::LinearSpec s = base;
    s.in_features = cols_;
    const int64_t row0 =
        part < 0 ? 0 : std::accumulate(rows_.begin(), rows_.begin() + part, int64_t(0));
    s.out_features =
        part < 0 ? std::accumulate(rows_.begin(), rows_.end(), int64_t(0)) : rows_[size_t(part)];
    s.raw16 = random ? nullptr : values_.data() + row0 * cols_;
    s.random = random ? &random_[size_t(std::max(part, 0))] : nullptr;
    const int64_t b = bias_at_[size_t(std::max(part, 0))];
    s.bias = b < 0 ? nullptr : bias_.data() + b;
    return s;
  };
  const auto no_bias = std::count(bias_at_.begin(), bias_at_.end(), -1);
  bool alike = no_bias == 0 || no_bias == size();
  for (int64_t r : rows_) alike = alike && r % 8 == 0;
  if (alike) {
    out.fused = be.create_linear(spec(-1));
    // Nested storage that stayed plain: a part's row cannot be nested. Unfused, only that part
    // would be plain, so each part is created on its own.
    if (base.storage == backend::RawStorage::Plain ||
        out.fused->format == backend::WeightFormat::Nested)
      return out;
    out.fused.reset();
  }
  for (int i = 0; i < size(); ++i) out.parts.push_back(be.create_linear(spec(i)));
  return out;
}

}  // namespace nestedfp::engine
