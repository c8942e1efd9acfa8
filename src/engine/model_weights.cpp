#include "engine/model_weights.hpp"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <random>

#include "engine/checkpoint.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"

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
                                 storage == LinearStorage::Fp8PerTensor
                                     ? format::Fp8Granularity::PerTensor
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

ModelWeights ModelWeights::load(const std::string& dir, format::ScaleMode mode,
                                LinearStorage storage) {
  ModelWeights m;
  m.config = io::load_config(dir);
  m.scale_mode = mode;
  m.storage = storage;
  const auto& c = m.config;
  m.layers.resize(size_t(c.num_layers));
  ConversionTotals conv;
  walk_checkpoint(
      dir, c,
      [&](TensorItem&& t) {
        HostLayer* L = t.layer >= 0 ? &m.layers[size_t(t.layer)] : nullptr;
        if (is_linear(t.slot)) {
          const bool nestable = t.slot != Slot::LmHead;
          HostLinear l = make_linear(t.name, std::move(t.values), t.rows, t.cols, mode, nestable,
                                     nestable ? storage : LinearStorage::Nested);
          l.bias = std::move(t.bias);
          if (nestable) count(m, l);
          switch (t.slot) {
            case Slot::Q: L->q = std::move(l); break;
            case Slot::K: L->k = std::move(l); break;
            case Slot::V: L->v = std::move(l); break;
            case Slot::O: L->o = std::move(l); break;
            case Slot::Gate: L->gate = std::move(l); break;
            case Slot::Up: L->up = std::move(l); break;
            case Slot::Down: L->down = std::move(l); break;
            default: m.lm_head = std::move(l); break;
          }
          return;
        }
        switch (t.slot) {
          case Slot::Embed: m.embed = std::move(t.values); break;
          case Slot::FinalNorm: m.final_norm = std::move(t.values); break;
          case Slot::InputNorm: L->input_norm = std::move(t.values); break;
          case Slot::PostNorm: L->post_norm = std::move(t.values); break;
          case Slot::QNorm: L->q_norm = std::move(t.values); break;
          case Slot::KNorm: L->k_norm = std::move(t.values); break;
          default: break;
        }
      },
      &conv);
  m.report.bf16_overflow = conv.overflow, m.report.bf16_inexact = conv.inexact,
  m.report.bf16_underflow = conv.underflow;
  for (const auto& t : m.report.plain_tensors) spdlog::info("kept plain FP16: {}", t);
  if (storage != LinearStorage::Nested) {
    spdlog::info(
        "loaded {}: {} layers, {} linear weights quantized to {} (baseline, no FP16 copy); lm_head "
        "and embedding FP16",
        dir, c.num_layers, m.report.fp8, to_string(storage));
  } else {
    spdlog::info(
        "loaded {}: {} layers, {} linear weights nested ({}), {} plain FP16; lm_head and embedding "
        "plain",
        dir, c.num_layers, m.report.nested, format::to_string(mode), m.report.plain);
  }
  if (m.report.bf16_overflow || m.report.bf16_inexact)
    spdlog::warn("BF16 -> FP16 conversion: {} values overflowed, {} lost bits ({} became zero)",
                 m.report.bf16_overflow, m.report.bf16_inexact, m.report.bf16_underflow);
  return m;
}

ModelWeights ModelWeights::random(const io::ModelConfig& c, format::ScaleMode mode, uint64_t seed,
                                  float sd) {
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
    if (c.attention_bias)
      L.q.bias = randv(qd, 0, 0.1f), L.k.bias = randv(kvd, 0, 0.1f), L.v.bias = randv(kvd, 0, 0.1f);
    L.gate = lin("gate", I, H), L.up = lin("up", I, H), L.down = lin("down", H, I);
    L.input_norm = randv(H, 1.f, 0.1f), L.post_norm = randv(H, 1.f, 0.1f);
    if (c.qk_norm) L.q_norm = randv(hd, 1.f, 0.1f), L.k_norm = randv(hd, 1.f, 0.1f);
    m.layers.push_back(std::move(L));
  }
  m.lm_head =
      make_linear("lm_head", c.tie_word_embeddings ? m.embed : randv(c.vocab_size * H, 0.f, sd),
                  c.vocab_size, H, mode, false);
  return m;
}

}  // namespace nestedfp::engine
