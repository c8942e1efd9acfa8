// ModelRunner: building the weights on the backend, from host weights or streamed from a
// checkpoint (quantized, nested or plain per tensor; tensor-parallel shards; fused q/k/v and
// gate/up groups, engine/fusion.hpp). The step itself is in model_runner.cpp.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>

#include "engine/checkpoint.hpp"
#include "engine/model_runner.hpp"
#include "engine/model_runner_impl.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::engine {

using backend::BufferPtr;
using backend::LinearWeight;

static BufferPtr upload_vec(backend::Backend& be, const std::vector<uint16_t>& v) {
  BufferPtr b = be.alloc(v.size() * 2);
  be.upload(*b, v.data(), v.size() * 2);
  return b;
}

std::unique_ptr<LinearWeight> upload_linear(backend::Backend& be, const HostLinear& l) {
  backend::LinearSpec s;
  s.out_features = l.rows, s.in_features = l.cols;
  if (l.nested)
    s.nested = &*l.nested;
  else if (l.fp8)
    s.fp8 = &*l.fp8;
  else
    s.fp16 = l.fp16.data();
  if (!l.bias.empty()) s.bias = l.bias.data();
  return be.create_linear(s);
}

ModelRunner::ModelRunner(std::unique_ptr<backend::Backend> be, const ModelWeights& w,
                         RunnerOptions opt)
    : ModelRunner(std::move(be), w.config, opt) {
  report_ = w.report;
  embed_ = upload_vec(*be_, w.embed);
  final_norm_ = upload_vec(*be_, w.final_norm);
  lm_head_ = upload_linear(*be_, w.lm_head);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const HostLayer& hl = w.layers[i];
    Layer& L = layers_[i];
    // Fused weights are concatenated on the host one layer at a time.
    auto group = [&](std::initializer_list<const HostLinear*> parts, const char* name,
                     std::unique_ptr<LinearWeight>& fused,
                     std::initializer_list<std::unique_ptr<LinearWeight>*> each) {
      const std::vector<const HostLinear*> p(parts);
      if (fuse_ && fuse_refusal(p).empty()) {
        fused = upload_linear(*be_, concat_linears(p, fmt::format("layers.{}.{}", i, name)));
      } else {
        auto it = p.begin();
        for (auto* dst : each) *dst = upload_linear(*be_, **it++);
      }
    };
    group({&hl.q, &hl.k, &hl.v}, "qkv", L.qkv, {&L.q, &L.k, &L.v});
    group({&hl.gate, &hl.up}, "gate_up", L.gate_up, {&L.gate, &L.up});
    L.o = upload_linear(*be_, hl.o), L.down = upload_linear(*be_, hl.down);
    L.input_norm = upload_vec(*be_, hl.input_norm), L.post_norm = upload_vec(*be_, hl.post_norm);
    if (config_.qk_norm)
      L.q_norm = upload_vec(*be_, hl.q_norm), L.k_norm = upload_vec(*be_, hl.k_norm);
  }
  finish_setup();
}

std::unique_ptr<ModelRunner> ModelRunner::load(std::unique_ptr<backend::Backend> be,
                                               const LoadOptions& lo, RunnerOptions opt) {
  io::ModelConfig c = io::load_config(lo.model_dir);
  if (!lo.nested && lo.storage != LinearStorage::Nested)
    fail("--weights fp16 and an FP8 baseline storage exclude each other");
  const bool sharded = lo.shard.size > 1;
  if (sharded && lo.storage != LinearStorage::Nested)
    fail("FP8 baseline storages (accuracy studies) run with --tensor-parallel-size 1 only");
  std::unique_ptr<ModelRunner> r(
      new ModelRunner(std::move(be), sharded ? shard_config(c, lo.shard) : c, opt));
  if (sharded) r->tp_ = std::make_unique<TpPlan>(TpPlan{c, lo.shard, nullptr});
  r->fusing_.resize(size_t(c.num_layers) * 2);
  const int total = c.num_layers * 9 + 3;
  int done = 0, last_pct = -1;
  auto visit = [&](TensorItem&& t) {
    r->take(std::move(t), lo);
    const int pct = ++done * 100 / total;
    if (pct / 10 != last_pct / 10) spdlog::info("loading weights on {}: {}%", r->be_->name(), pct);
    last_pct = pct;
  };
  ConversionTotals conv;
  if (lo.dummy)
    walk_dummy(c, lo.seed, visit);
  else
    walk_checkpoint(lo.model_dir, c, visit, &conv);
  for (const FuseCollector& g : r->fusing_)
    if (g.size()) fail("internal: the checkpoint walk left {} unfused", g.names().front());
  r->fusing_.clear();
  r->report_.bf16_overflow = conv.overflow, r->report_.bf16_inexact = conv.inexact,
  r->report_.bf16_underflow = conv.underflow;
  for (const auto& t : r->report_.plain_tensors) spdlog::info("kept plain FP16: {}", t);
  spdlog::info(
      "{} {}: {} layers, {} linear weights nested ({}), {} plain FP16, {} FP8; lm_head and "
      "embedding plain",
      lo.dummy ? "dummy weights for" : "loaded", lo.model_dir, c.num_layers, r->report_.nested,
      format::to_string(lo.scale_mode), r->report_.plain, r->report_.fp8);
  r->finish_setup();
  return r;
}

void ModelRunner::take(TensorItem&& t, const LoadOptions& lo) {
  auto vec = [&]() -> BufferPtr {
    BufferPtr b = be_->alloc(size_t(t.rows * t.cols) * 2);
    if (t.random)
      be_->fill_random(*b, t.rows * t.cols, *t.random);
    else
      be_->upload(*b, t.values.data(), t.values.size() * 2);
    return b;
  };
  if (!is_linear(t.slot)) {
    Layer* L = t.layer >= 0 ? &layers_[size_t(t.layer)] : nullptr;
    switch (t.slot) {
      case Slot::Embed: embed_ = vec(); break;
      case Slot::FinalNorm: final_norm_ = vec(); break;
      case Slot::InputNorm: L->input_norm = vec(); break;
      case Slot::PostNorm: L->post_norm = vec(); break;
      case Slot::QNorm: L->q_norm = vec(); break;
      case Slot::KNorm: L->k_norm = vec(); break;
      default: break;
    }
    return;
  }
  backend::LinearSpec s;
  const bool nestable = t.slot != Slot::LmHead;
  s.storage = !nestable || !lo.nested                      ? backend::RawStorage::Plain
              : lo.storage == LinearStorage::Fp8PerTensor  ? backend::RawStorage::Fp8PerTensor
              : lo.storage == LinearStorage::Fp8PerChannel ? backend::RawStorage::Fp8PerChannel
                                                           : backend::RawStorage::Nested;
  s.channel_scale = lo.scale_mode == format::ScaleMode::Channel;
  if (const Fusion f = fusion_of(t.slot);
      fuse_ && f != Fusion::None && lo.storage == LinearStorage::Nested) {
    const int layer = t.layer;
    FuseCollector& g = fusing_[size_t(layer) * 2 + (f == Fusion::GateUp)];
    // The fused rows are the parts in arrival order, and split_columns / take_fused read them as
    // [q; k; v] and [gate; up]: a walk in another order (say a file's) must not swap them silently.
    const Slot order[] = {Slot::Q, Slot::K, Slot::V, Slot::Gate, Slot::Up};
    if (t.slot != order[(f == Fusion::GateUp ? 3 : 0) + g.size()])
      fail("internal: {} arrived out of order for its fused group (after {} parts)", t.name,
           g.size());
    std::optional<HostLinear> shard;
    if (tp_) shard = shard_host_linear(*be_, t, *tp_, lo.nested, lo.scale_mode);
    const auto& c = config_;
    if (shard)
      g.add(std::move(*shard));
    else
      g.add(std::move(t), f == Fusion::GateUp
                              ? 2 * int64_t(c.intermediate_size)
                              : int64_t(c.num_heads + 2 * c.num_kv_heads) * c.head_dim);
    if (g.size() == fusion_parts(f)) take_fused(g, f, layer, s, lo.nested);
    return;
  }
  s.out_features = t.rows, s.in_features = t.cols;
  s.raw16 = t.values.empty() ? nullptr : t.values.data();
  s.random = t.random ? &*t.random : nullptr;
  std::vector<uint16_t> zero_bias;
  if (!t.bias.empty())
    s.bias = t.bias.data();
  else if (t.random_bias)
    s.bias = (zero_bias.assign(size_t(t.rows), 0), zero_bias.data());
  std::unique_ptr<LinearWeight> w;
  if (tp_ && split_kind(t.slot) != SplitKind::Replicated) {  // this rank's shard only
    w = shard_linear(*be_, t, *tp_, lo.nested, lo.scale_mode);
    if (!w) {  // dummy weights, reshaped to the shard: created below like any random tensor
      s.out_features = t.rows, s.in_features = t.cols;
      if (t.random_bias) s.bias = (zero_bias.assign(size_t(t.rows), 0), zero_bias.data());
    }
  }
  if (!w) w = be_->create_linear(s);
  if (nestable) count(*w, t.name, lo.nested);
  place(t.slot, t.layer, std::move(w));
}

void ModelRunner::count(const LinearWeight& w, const std::string& name, bool nested_load) {
  if (w.format == backend::WeightFormat::Nested)
    ++report_.nested;
  else if (w.format == backend::WeightFormat::FP8)
    ++report_.fp8;
  else {
    ++report_.plain;
    report_.plain_tensors.push_back(name +
                                    (nested_load ? ": not representable" : ": --weights fp16"));
  }
}

// The load report counts a fused weight once per part, under the parts' names.
void ModelRunner::take_fused(FuseCollector& g, Fusion f, int layer, const backend::LinearSpec& spec,
                             bool nested_load) {
  FusedWeights fw = g.finish(*be_, spec);
  const std::vector<std::string>& names = g.names();
  Layer& L = layers_[size_t(layer)];
  if (fw.fused) {
    for (const std::string& n : names) count(*fw.fused, n, nested_load);
    (f == Fusion::Qkv ? L.qkv : L.gate_up) = std::move(fw.fused);
  } else {
    const Slot qkv[] = {Slot::Q, Slot::K, Slot::V}, gate_up[] = {Slot::Gate, Slot::Up};
    for (size_t i = 0; i < fw.parts.size(); ++i) {
      count(*fw.parts[i], names[i], nested_load);
      place(f == Fusion::Qkv ? qkv[i] : gate_up[i], layer, std::move(fw.parts[i]));
    }
  }
  g = FuseCollector{};
}

void ModelRunner::place(Slot slot, int layer, std::unique_ptr<LinearWeight> w) {
  if (slot == Slot::LmHead) {
    lm_head_ = std::move(w);
    return;
  }
  Layer& L = layers_[size_t(layer)];
  switch (slot) {
    case Slot::Q: L.q = std::move(w); break;
    case Slot::K: L.k = std::move(w); break;
    case Slot::V: L.v = std::move(w); break;
    case Slot::O: L.o = std::move(w); break;
    case Slot::Gate: L.gate = std::move(w); break;
    case Slot::Up: L.up = std::move(w); break;
    default: L.down = std::move(w); break;
  }
}

}  // namespace nestedfp::engine
