#include "engine/checkpoint.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "nestedfp/error.hpp"
#include "nestedfp/safetensors.hpp"

namespace nestedfp::engine {

const char* to_string(Slot s) {
  switch (s) {
    case Slot::Embed: return "embed_tokens";
    case Slot::FinalNorm: return "norm";
    case Slot::LmHead: return "lm_head";
    case Slot::Q: return "q";
    case Slot::K: return "k";
    case Slot::V: return "v";
    case Slot::O: return "o";
    case Slot::Gate: return "gate";
    case Slot::Up: return "up";
    case Slot::Down: return "down";
    case Slot::InputNorm: return "input_layernorm";
    case Slot::PostNorm: return "post_attention_layernorm";
    case Slot::QNorm: return "q_norm";
    case Slot::KNorm: return "k_norm";
  }
  return "?";
}

namespace {

// The tensors of one checkpoint in walk order; `get` produces a tensor's values on demand so
// that a source never holds more than the tensor being visited (plus a fused parent).
struct Shapes {
  int64_t H, I, hd, qd, kvd, V;
  explicit Shapes(const io::ModelConfig& c)
      : H(c.hidden_size),
        I(c.intermediate_size),
        hd(c.head_dim),
        qd(int64_t(c.num_heads) * c.head_dim),
        kvd(int64_t(c.num_kv_heads) * c.head_dim),
        V(c.vocab_size) {}
};

std::vector<uint16_t> rows_of(const std::vector<uint16_t>& w, int64_t cols, int64_t r0, int64_t n) {
  return {w.begin() + r0 * cols, w.begin() + (r0 + n) * cols};
}

class FileSource {
 public:
  FileSource(const std::string& dir, ConversionTotals* totals)
      : store_(io::WeightStore::open_dir(dir)), totals_(totals) {}
  // The tensor as fp16 after checking its shape.
  std::vector<uint16_t> get(const std::string& name, std::vector<int64_t> shape) {
    const io::TensorView& t = store_.get(name);
    if (t.shape != shape)
      fail("{}: tensor '{}' has shape {}, expected {} from config.json", t.file, name,
           fmt::join(t.shape, "x"), fmt::join(shape, "x"));
    io::ConversionReport r;
    auto out = io::to_fp16(t, &r);
    if (r.overflow || r.inexact || r.underflow)
      spdlog::warn("{}: {} -> FP16: {} overflowed, {} inexact, {} underflowed to zero", name,
                   io::dtype_name(t.dtype), r.overflow, r.inexact, r.underflow);
    if (totals_)
      totals_->overflow += r.overflow, totals_->inexact += r.inexact,
          totals_->underflow += r.underflow;
    return out;
  }
  bool has(const std::string& name) const { return store_.find(name) != nullptr; }

 private:
  io::WeightStore store_;
  ConversionTotals* totals_;
};

TensorItem item(Slot slot, int layer, std::string name, int64_t rows, int64_t cols,
                std::vector<uint16_t> v) {
  TensorItem t;
  t.slot = slot, t.layer = layer, t.name = std::move(name), t.rows = rows, t.cols = cols,
  t.values = std::move(v);
  return t;
}

}  // namespace

void walk_checkpoint(const std::string& dir, const io::ModelConfig& c, const TensorVisitor& visit,
                     ConversionTotals* totals) {
  FileSource src(dir, totals);
  const Shapes s(c);
  std::vector<uint16_t> embed = src.get("model.embed_tokens.weight", {s.V, s.H});
  const bool tied = c.tie_word_embeddings && !src.has("lm_head.weight");
  visit(item(Slot::Embed, -1, "model.embed_tokens.weight", s.V, s.H,
             tied ? embed : std::move(embed)));
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    auto lin = [&](Slot slot, std::string name, std::vector<uint16_t> w, int64_t rows, int64_t cols,
                   const char* bias_name = nullptr) {
      TensorItem t = item(slot, i, std::move(name), rows, cols, std::move(w));
      if (bias_name && c.attention_bias) t.bias = src.get(p + bias_name, {rows});
      visit(std::move(t));
    };
    if (c.fused_qkv) {
      const auto w = src.get(p + "self_attn.qkv_proj.weight", {s.qd + 2 * s.kvd, s.H});
      lin(Slot::Q, p + "self_attn.qkv_proj.weight[q]", rows_of(w, s.H, 0, s.qd), s.qd, s.H,
          "self_attn.q_proj.bias");
      lin(Slot::K, p + "self_attn.qkv_proj.weight[k]", rows_of(w, s.H, s.qd, s.kvd), s.kvd, s.H,
          "self_attn.k_proj.bias");
      lin(Slot::V, p + "self_attn.qkv_proj.weight[v]", rows_of(w, s.H, s.qd + s.kvd, s.kvd), s.kvd,
          s.H, "self_attn.v_proj.bias");
    } else {
      for (auto [slot, n, rows] :
           {std::tuple{Slot::Q, "q", s.qd}, {Slot::K, "k", s.kvd}, {Slot::V, "v", s.kvd}}) {
        const std::string name = p + fmt::format("self_attn.{}_proj.weight", n);
        const std::string bias = fmt::format("self_attn.{}_proj.bias", n);
        lin(slot, name, src.get(name, {rows, s.H}), rows, s.H, bias.c_str());
      }
    }
    lin(Slot::O, p + "self_attn.o_proj.weight", src.get(p + "self_attn.o_proj.weight", {s.H, s.qd}),
        s.H, s.qd);
    if (c.fused_gate_up) {
      const auto w = src.get(p + "mlp.gate_up_proj.weight", {2 * s.I, s.H});
      lin(Slot::Gate, p + "mlp.gate_up_proj.weight[gate]", rows_of(w, s.H, 0, s.I), s.I, s.H);
      lin(Slot::Up, p + "mlp.gate_up_proj.weight[up]", rows_of(w, s.H, s.I, s.I), s.I, s.H);
    } else {
      lin(Slot::Gate, p + "mlp.gate_proj.weight", src.get(p + "mlp.gate_proj.weight", {s.I, s.H}),
          s.I, s.H);
      lin(Slot::Up, p + "mlp.up_proj.weight", src.get(p + "mlp.up_proj.weight", {s.I, s.H}), s.I,
          s.H);
    }
    lin(Slot::Down, p + "mlp.down_proj.weight", src.get(p + "mlp.down_proj.weight", {s.H, s.I}),
        s.H, s.I);
    auto vec = [&](Slot slot, const std::string& name, int64_t n) {
      visit(item(slot, i, p + name, 1, n, src.get(p + name, {n})));
    };
    vec(Slot::InputNorm, "input_layernorm.weight", s.H);
    vec(Slot::PostNorm, "post_attention_layernorm.weight", s.H);
    if (c.qk_norm) {
      vec(Slot::QNorm, "self_attn.q_norm.weight", s.hd);
      vec(Slot::KNorm, "self_attn.k_norm.weight", s.hd);
    }
  }
  visit(
      item(Slot::FinalNorm, -1, "model.norm.weight", 1, s.H, src.get("model.norm.weight", {s.H})));
  if (tied)
    visit(item(Slot::LmHead, -1, "lm_head.weight (tied)", s.V, s.H, std::move(embed)));
  else
    visit(
        item(Slot::LmHead, -1, "lm_head.weight", s.V, s.H, src.get("lm_head.weight", {s.V, s.H})));
}

void walk_dummy(const io::ModelConfig& c, uint64_t seed, const TensorVisitor& visit) {
  const Shapes s(c);
  const float sd = float(c.initializer_range);
  uint64_t n = 0;  // tensor counter: every tensor gets its own stream
  auto rnd = [&](Slot slot, int layer, std::string name, int64_t rows, int64_t cols, float mean,
                 float std) {
    TensorItem t;
    t.slot = slot, t.layer = layer, t.name = std::move(name), t.rows = rows, t.cols = cols;
    t.random = backend::RandomFill{mean, std, seed * 0x9E3779B97F4A7C15ull + ++n};
    if (c.attention_bias && (slot == Slot::Q || slot == Slot::K || slot == Slot::V))
      t.random_bias = backend::RandomFill{0.f, 0.f, 0};
    visit(std::move(t));
  };
  rnd(Slot::Embed, -1, "embed_tokens (dummy)", s.V, s.H, 0.f, sd);
  const uint64_t embed_stream = n;
  for (int i = 0; i < c.num_layers; ++i) {
    rnd(Slot::Q, i, "q (dummy)", s.qd, s.H, 0.f, sd);
    rnd(Slot::K, i, "k (dummy)", s.kvd, s.H, 0.f, sd);
    rnd(Slot::V, i, "v (dummy)", s.kvd, s.H, 0.f, sd);
    rnd(Slot::O, i, "o (dummy)", s.H, s.qd, 0.f, sd);
    rnd(Slot::Gate, i, "gate (dummy)", s.I, s.H, 0.f, sd);
    rnd(Slot::Up, i, "up (dummy)", s.I, s.H, 0.f, sd);
    rnd(Slot::Down, i, "down (dummy)", s.H, s.I, 0.f, sd);
    rnd(Slot::InputNorm, i, "input_layernorm (dummy)", 1, s.H, 1.f, 0.f);
    rnd(Slot::PostNorm, i, "post_attention_layernorm (dummy)", 1, s.H, 1.f, 0.f);
    if (c.qk_norm) {
      rnd(Slot::QNorm, i, "q_norm (dummy)", 1, s.hd, 1.f, 0.f);
      rnd(Slot::KNorm, i, "k_norm (dummy)", 1, s.hd, 1.f, 0.f);
    }
  }
  rnd(Slot::FinalNorm, -1, "norm (dummy)", 1, s.H, 1.f, 0.f);
  if (c.tie_word_embeddings) {  // the embedding's values again
    TensorItem t;
    t.slot = Slot::LmHead, t.name = "lm_head (dummy, tied)", t.rows = s.V, t.cols = s.H;
    t.random = backend::RandomFill{0.f, sd, seed * 0x9E3779B97F4A7C15ull + embed_stream};
    visit(std::move(t));
  } else {
    rnd(Slot::LmHead, -1, "lm_head (dummy)", s.V, s.H, 0.f, sd);
  }
}

}  // namespace nestedfp::engine
