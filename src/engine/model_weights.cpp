#include "engine/model_weights.hpp"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <random>

#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"
#include "nestedfp/safetensors.hpp"

namespace nestedfp::engine {

const char* to_string(LinearStorage s) {
  switch (s) {
    case LinearStorage::Fp8PerTensor: return "fp8-per-tensor";
    case LinearStorage::Fp8PerChannel: return "fp8-per-channel";
    case LinearStorage::Nested: break;
  }
  return "nested";
}

HostLinear make_linear(std::string name, std::vector<uint16_t> w, int64_t rows, int64_t cols,
                       format::ScaleMode mode, bool allow_nesting, LinearStorage storage) {
  HostLinear l;
  l.name = std::move(name), l.rows = rows, l.cols = cols;
  if (!allow_nesting) {
    l.plain_reason = "never nested";
    l.fp16 = std::move(w);
    return l;
  }
  if (storage != LinearStorage::Nested) {
    l.fp8 = format::quantize_fp8(w.data(), rows, cols,
                                 storage == LinearStorage::Fp8PerTensor ? format::Fp8Granularity::PerTensor
                                                                        : format::Fp8Granularity::PerChannel);
    return l;
  }
  const format::Eligibility e = format::check(w.data(), rows, cols, mode);
  if (e.ok) {
    l.nested = format::split_tensor(w.data(), rows, cols, mode);
  } else {
    l.plain_reason = e.reason.empty() ? "not representable" : e.reason;
    l.fp16 = std::move(w);
  }
  return l;
}

namespace {

class Loader {
 public:
  Loader(const std::string& dir, ModelWeights& m) : store_(io::WeightStore::open_dir(dir)), m_(m) {}

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
    m_.report.bf16_overflow += r.overflow;
    m_.report.bf16_inexact += r.inexact;
    m_.report.bf16_underflow += r.underflow;
    return out;
  }
  bool has(const std::string& name) const { return store_.find(name) != nullptr; }

 private:
  io::WeightStore store_;
  ModelWeights& m_;
};

std::vector<uint16_t> rows_of(const std::vector<uint16_t>& w, int64_t cols, int64_t r0, int64_t n) {
  return {w.begin() + r0 * cols, w.begin() + (r0 + n) * cols};
}

void count(ModelWeights& m, const HostLinear& l) {
  if (l.nested) {
    ++m.report.nested;
  } else if (l.fp8) {
    ++m.report.fp8;
  } else {
    ++m.report.plain;
    m.report.plain_tensors.push_back(l.name + ": " + l.plain_reason);
  }
}

}  // namespace

ModelWeights ModelWeights::load(const std::string& dir, format::ScaleMode mode, LinearStorage storage) {
  ModelWeights m;
  m.config = io::load_config(dir);
  m.scale_mode = mode;
  m.storage = storage;
  const auto& c = m.config;
  Loader ld(dir, m);
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int64_t qd = int64_t(c.num_heads) * hd, kvd = int64_t(c.num_kv_heads) * hd;
  m.embed = ld.get("model.embed_tokens.weight", {c.vocab_size, H});
  m.final_norm = ld.get("model.norm.weight", {H});
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    HostLayer L;
    auto lin = [&](const std::string& name, std::vector<uint16_t> w, int64_t rows, int64_t cols) {
      HostLinear l = make_linear(name, std::move(w), rows, cols, mode, true, storage);
      count(m, l);
      return l;
    };
    if (c.fused_qkv) {
      const auto w = ld.get(p + "self_attn.qkv_proj.weight", {qd + 2 * kvd, H});
      L.q = lin(p + "self_attn.qkv_proj.weight[q]", rows_of(w, H, 0, qd), qd, H);
      L.k = lin(p + "self_attn.qkv_proj.weight[k]", rows_of(w, H, qd, kvd), kvd, H);
      L.v = lin(p + "self_attn.qkv_proj.weight[v]", rows_of(w, H, qd + kvd, kvd), kvd, H);
    } else {
      L.q = lin(p + "self_attn.q_proj.weight", ld.get(p + "self_attn.q_proj.weight", {qd, H}), qd, H);
      L.k = lin(p + "self_attn.k_proj.weight", ld.get(p + "self_attn.k_proj.weight", {kvd, H}), kvd, H);
      L.v = lin(p + "self_attn.v_proj.weight", ld.get(p + "self_attn.v_proj.weight", {kvd, H}), kvd, H);
    }
    if (c.attention_bias) {
      L.q.bias = ld.get(p + "self_attn.q_proj.bias", {qd});
      L.k.bias = ld.get(p + "self_attn.k_proj.bias", {kvd});
      L.v.bias = ld.get(p + "self_attn.v_proj.bias", {kvd});
    }
    L.o = lin(p + "self_attn.o_proj.weight", ld.get(p + "self_attn.o_proj.weight", {H, qd}), H, qd);
    if (c.fused_gate_up) {
      const auto w = ld.get(p + "mlp.gate_up_proj.weight", {2 * I, H});
      L.gate = lin(p + "mlp.gate_up_proj.weight[gate]", rows_of(w, H, 0, I), I, H);
      L.up = lin(p + "mlp.gate_up_proj.weight[up]", rows_of(w, H, I, I), I, H);
    } else {
      L.gate = lin(p + "mlp.gate_proj.weight", ld.get(p + "mlp.gate_proj.weight", {I, H}), I, H);
      L.up = lin(p + "mlp.up_proj.weight", ld.get(p + "mlp.up_proj.weight", {I, H}), I, H);
    }
    L.down = lin(p + "mlp.down_proj.weight", ld.get(p + "mlp.down_proj.weight", {H, I}), H, I);
    L.input_norm = ld.get(p + "input_layernorm.weight", {H});
    L.post_norm = ld.get(p + "post_attention_layernorm.weight", {H});
    if (c.qk_norm) {
      L.q_norm = ld.get(p + "self_attn.q_norm.weight", {hd});
      L.k_norm = ld.get(p + "self_attn.k_norm.weight", {hd});
    }
    m.layers.push_back(std::move(L));
  }
  if (c.tie_word_embeddings && !ld.has("lm_head.weight")) {
    m.lm_head = make_linear("lm_head.weight (tied)", m.embed, c.vocab_size, H, mode, false);
  } else {
    m.lm_head = make_linear("lm_head.weight", ld.get("lm_head.weight", {c.vocab_size, H}),
                            c.vocab_size, H, mode, false);
  }
  for (const auto& t : m.report.plain_tensors) spdlog::info("kept plain FP16: {}", t);
  if (storage != LinearStorage::Nested) {
    spdlog::info("loaded {}: {} layers, {} linear weights quantized to {} (baseline, no FP16 copy); lm_head and embedding FP16",
                 dir, c.num_layers, m.report.fp8, to_string(storage));
  } else {
    spdlog::info("loaded {}: {} layers, {} linear weights nested ({}), {} plain FP16; lm_head and embedding plain",
                 dir, c.num_layers, m.report.nested, format::to_string(mode), m.report.plain);
  }
  if (m.report.bf16_overflow || m.report.bf16_inexact)
    spdlog::warn("BF16 -> FP16 conversion: {} values overflowed, {} lost bits ({} became zero)",
                 m.report.bf16_overflow, m.report.bf16_inexact, m.report.bf16_underflow);
  return m;
}

ModelWeights ModelWeights::random(const io::ModelConfig& c, format::ScaleMode mode, uint64_t seed, float sd) {
  ModelWeights m;
  m.config = c;
  m.scale_mode = mode;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, sd);
  auto randv = [&](int64_t n, float mean, float s) {
    std::vector<uint16_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = float_to_fp16(mean + s * nd(rng) / sd);
    return v;
  };
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int64_t qd = int64_t(c.num_heads) * hd, kvd = int64_t(c.num_kv_heads) * hd;
  auto lin = [&](const std::string& name, int64_t rows, int64_t cols) {
    HostLinear l = make_linear(name, randv(rows * cols, 0.f, sd), rows, cols, mode);
    count(m, l);
    return l;
  };
  m.embed = randv(c.vocab_size * H, 0.f, 1.f);
  m.final_norm = randv(H, 1.f, 0.1f);
  for (int i = 0; i < c.num_layers; ++i) {
    HostLayer L;
    L.q = lin("q", qd, H), L.k = lin("k", kvd, H), L.v = lin("v", kvd, H), L.o = lin("o", H, qd);
    if (c.attention_bias) L.q.bias = randv(qd, 0, 0.1f), L.k.bias = randv(kvd, 0, 0.1f), L.v.bias = randv(kvd, 0, 0.1f);
    L.gate = lin("gate", I, H), L.up = lin("up", I, H), L.down = lin("down", H, I);
    L.input_norm = randv(H, 1.f, 0.1f), L.post_norm = randv(H, 1.f, 0.1f);
    if (c.qk_norm) L.q_norm = randv(hd, 1.f, 0.1f), L.k_norm = randv(hd, 1.f, 0.1f);
    m.layers.push_back(std::move(L));
  }
  m.lm_head = make_linear("lm_head", c.tie_word_embeddings ? m.embed : randv(c.vocab_size * H, 0.f, sd),
                          c.vocab_size, H, mode, false);
  return m;
}

}  // namespace nestedfp::engine
