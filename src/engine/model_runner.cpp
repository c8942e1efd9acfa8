#include "engine/model_runner.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "nestedfp/error.hpp"

namespace nestedfp::engine {

using backend::Activation;
using backend::BufferPtr;
using backend::LinearWeight;

struct ModelRunner::Layer {
  std::unique_ptr<LinearWeight> q, k, v, o, gate, up, down;
  BufferPtr input_norm, post_norm, q_norm, k_norm;
};

struct ModelRunner::Scratch {
  int64_t tokens = 0;
  BufferPtr h, x, q, k, v, attn, o, gate, up, act, q8, scale, xl;
};

static BufferPtr upload_vec(backend::Backend& be, const std::vector<uint16_t>& v) {
  BufferPtr b = be.alloc(v.size() * 2);
  be.upload(*b, v.data(), v.size() * 2);
  return b;
}

std::unique_ptr<LinearWeight> upload_linear(backend::Backend& be, const HostLinear& l) {
  backend::LinearSpec s;
  s.out_features = l.rows, s.in_features = l.cols;
  if (l.nested) s.nested = &*l.nested;
  else if (l.fp8) s.fp8 = &*l.fp8;
  else s.fp16 = l.fp16.data();
  if (!l.bias.empty()) s.bias = l.bias.data();
  return be.create_linear(s);
}

size_t ModelRunner::kv_bytes_per_block(const io::ModelConfig& c) {
  return size_t(c.num_layers) * 2 * c.num_kv_heads * kKvBlockSize * c.head_dim * 2;
}

ModelRunner::ModelRunner(std::unique_ptr<backend::Backend> be, const ModelWeights& w, RunnerOptions opt)
    : be_(std::move(be)), config_(w.config), s_(std::make_unique<Scratch>()) {
  const auto& c = config_;
  if (c.hidden_act != "silu") fail("hidden_act '{}' is not supported (only silu)", c.hidden_act);
  fp8_acts_ = opt.fp8_activations;
  max_len_ = opt.max_model_len > 0 ? opt.max_model_len : c.max_position_embeddings;
  if (max_len_ <= 0) fail("max_model_len must be positive");
  num_blocks_ = opt.num_kv_blocks > 0
                    ? opt.num_kv_blocks
                    : int((opt.kv_cache_bytes ? opt.kv_cache_bytes : (size_t(256) << 20)) / kv_bytes_per_block(c));
  if (num_blocks_ <= 0) fail("KV cache budget too small for one block ({} bytes)", kv_bytes_per_block(c));

  embed_ = upload_vec(*be_, w.embed);
  final_norm_ = upload_vec(*be_, w.final_norm);
  lm_head_ = upload_linear(*be_, w.lm_head);
  for (const HostLayer& hl : w.layers) {
    Layer L;
    L.q = upload_linear(*be_, hl.q), L.k = upload_linear(*be_, hl.k), L.v = upload_linear(*be_, hl.v);
    L.o = upload_linear(*be_, hl.o), L.gate = upload_linear(*be_, hl.gate);
    L.up = upload_linear(*be_, hl.up), L.down = upload_linear(*be_, hl.down);
    L.input_norm = upload_vec(*be_, hl.input_norm), L.post_norm = upload_vec(*be_, hl.post_norm);
    if (c.qk_norm) L.q_norm = upload_vec(*be_, hl.q_norm), L.k_norm = upload_vec(*be_, hl.k_norm);
    layers_.push_back(std::move(L));
  }
  backend::RopeSpec rs;
  rs.head_dim = c.head_dim, rs.theta = c.rope_theta, rs.scaling = c.rope_scaling.type;
  rs.factor = c.rope_scaling.factor, rs.low_freq_factor = c.rope_scaling.low_freq_factor;
  rs.high_freq_factor = c.rope_scaling.high_freq_factor;
  rs.original_max_position_embeddings = c.rope_scaling.original_max_position_embeddings;
  rope_ = be_->create_rope(rs);
  kv_ = be_->create_kv_cache({c.num_layers, num_blocks_, c.num_kv_heads, c.head_dim});
  spdlog::debug("model runner on {}: {} KV blocks ({} MiB)", be_->name(), num_blocks_,
                num_blocks_ * kv_bytes_per_block(c) >> 20);
}

ModelRunner::~ModelRunner() = default;

void ModelRunner::ensure_scratch(int64_t T) {
  if (T <= s_->tokens) return;
  const auto& c = config_;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t qd = int64_t(c.num_heads) * c.head_dim, kvd = int64_t(c.num_kv_heads) * c.head_dim;
  auto f16 = [&](int64_t n) { return be_->alloc(size_t(T * n) * 2); };
  s_->h = f16(H), s_->x = f16(H), s_->xl = f16(H), s_->q = f16(qd), s_->k = f16(kvd), s_->v = f16(kvd);
  s_->attn = f16(qd), s_->o = f16(H), s_->gate = f16(I), s_->up = f16(I), s_->act = f16(I);
  s_->q8 = be_->alloc(size_t(T * std::max({H, I, qd})));
  s_->scale = be_->alloc(size_t(T) * 4);
  s_->tokens = T;
}

void ModelRunner::validate(const StepInput& in) const {
  for (const SeqChunk& s : in.seqs) {
    const int64_t end = int64_t(s.start_pos) + int64_t(s.tokens.size());
    if (s.start_pos < 0) fail("sequence {}: negative start_pos {}", s.seq_id, s.start_pos);
    if (end > max_len_) fail("sequence {}: {} tokens exceed max_model_len {}", s.seq_id, end, max_len_);
    if (int64_t(s.block_table.size()) * kKvBlockSize < end)
      fail("sequence {}: block table of {} blocks cannot hold {} tokens", s.seq_id, s.block_table.size(), end);
    for (int32_t b : s.block_table)
      if (b < 0 || b >= num_blocks_) fail("sequence {}: block id {} outside [0, {})", s.seq_id, b, num_blocks_);
    for (int32_t t : s.tokens)
      if (t < 0 || t >= config_.vocab_size) fail("sequence {}: token id {} outside [0, {})", s.seq_id, t, config_.vocab_size);
  }
}

StepOutput ModelRunner::execute(const StepInput& in) {
  validate(in);
  const auto& c = config_;
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int nq = c.num_heads, nkv = c.num_kv_heads;
  const bool fp8 = in.precision == Precision::FP8;

  // Flatten the step: ids, positions, cache slots, attention ranges, rows that need logits.
  std::vector<int32_t> ids, pos, slots, logit_rows;
  std::vector<backend::AttentionSeq> aseqs;
  for (const SeqChunk& s : in.seqs) {
    const int32_t q0 = int32_t(ids.size()), n = int32_t(s.tokens.size());
    for (int32_t i = 0; i < n; ++i) {
      const int32_t p = s.start_pos + i;
      ids.push_back(s.tokens[i]);
      pos.push_back(p);
      slots.push_back(s.block_table[p / kKvBlockSize] * kKvBlockSize + p % kKvBlockSize);
    }
    if (n > 0) aseqs.push_back({q0, n, s.start_pos, s.block_table});
    if (s.need_all_logits) {
      for (int32_t i = 0; i < n; ++i) logit_rows.push_back(q0 + i);
    } else if (s.need_logits && n > 0) {
      logit_rows.push_back(q0 + n - 1);
    }
  }
  const int64_t T = int64_t(ids.size());
  StepOutput out;
  out.logits.resize(in.seqs.size());
  if (T == 0) return out;
  ensure_scratch(T);
  auto& be = *be_;
  Scratch& s = *s_;
  const float eps = float(c.rms_norm_eps);

  // Normalises (or just takes) `src` into the activation form the consumers need: fp16 when any
  // consumer runs FP16, E4M3 when any runs FP8 (fused into the norm when only FP8 is needed).
  auto prepare = [&](const backend::Buffer* norm_w, backend::Buffer& src, int64_t cols,
                     std::initializer_list<const LinearWeight*> consumers) -> Activation {
    bool need16 = !fp8, need8 = false;
    for (const LinearWeight* w : consumers) (fp8 && fp8_acts_ && w->runs_fp8() ? need8 : need16) = true;
    Activation a;
    backend::Buffer* x16 = &src;
    if (norm_w && !need16) {
      be.rmsnorm_quant(src, *norm_w, T, cols, eps, *s.q8, *s.scale);
    } else {
      if (norm_w) be.rmsnorm(src, *norm_w, T, cols, eps, *(x16 = s.x.get()));
      if (need8) be.quantize(*x16, T, cols, *s.q8, *s.scale);
    }
    if (need16) a.f16 = x16;
    if (need8) a.q8 = s.q8.get(), a.scale = s.scale.get();
    return a;
  };

  be.embedding(*embed_, c.vocab_size, H, ids, *s.h);
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& L = layers_[li];
    auto linear = [&](const char* name, const LinearWeight& w, const Activation& a, backend::Buffer& y) {
      if (tap_) tap_(int(li), name, a, T);
      be.linear(in.precision, w, a, T, y);
    };
    Activation a = prepare(L.input_norm.get(), *s.h, H, {L.q.get(), L.k.get(), L.v.get()});
    linear("q", *L.q, a, *s.q);
    linear("k", *L.k, a, *s.k);
    linear("v", *L.v, a, *s.v);
    if (c.qk_norm) {
      be.rmsnorm(*s.q, *L.q_norm, T * nq, hd, eps, *s.q);
      be.rmsnorm(*s.k, *L.k_norm, T * nkv, hd, eps, *s.k);
    }
    be.rope(*rope_, *s.q, *s.k, pos, nq, nkv, int(hd));
    be.write_kv(*kv_, int(li), *s.k, *s.v, slots);
    be.attention(*kv_, int(li), *s.q, aseqs, nq, 1.f / std::sqrt(float(hd)), *s.attn);
    a = prepare(nullptr, *s.attn, int64_t(nq) * hd, {L.o.get()});
    linear("o", *L.o, a, *s.o);
    be.add(*s.h, *s.o, T * H);

    a = prepare(L.post_norm.get(), *s.h, H, {L.gate.get(), L.up.get()});
    linear("gate", *L.gate, a, *s.gate);
    linear("up", *L.up, a, *s.up);
    if (fp8 && fp8_acts_ && L.down->runs_fp8()) {
      be.silu_mul_quant(*s.gate, *s.up, T, I, *s.q8, *s.scale);
      a = Activation{nullptr, s.q8.get(), s.scale.get()};
    } else {
      be.silu_mul(*s.gate, *s.up, T, I, *s.act);
      a = Activation{s.act.get()};
    }
    linear("down", *L.down, a, *s.o);
    be.add(*s.h, *s.o, T * H);
  }

  if (logit_rows.empty()) return out;
  const int64_t R = int64_t(logit_rows.size()), V = c.vocab_size;
  be.gather_rows(*s.h, H, logit_rows, *s.xl);
  be.rmsnorm(*s.xl, *final_norm_, R, H, eps, *s.xl);
  std::vector<float> all(size_t(R * V));
  be.logits(*lm_head_, *s.xl, R, all.data());
  be.synchronize();
  int64_t r = 0;
  for (size_t i = 0; i < in.seqs.size(); ++i) {
    const SeqChunk& sq = in.seqs[i];
    const int64_t rows = sq.tokens.empty() ? 0 : sq.need_all_logits ? int64_t(sq.tokens.size()) : sq.need_logits ? 1 : 0;
    out.logits[i].assign(all.begin() + r * V, all.begin() + (r + rows) * V);
    r += rows;
  }
  return out;
}

}  // namespace nestedfp::engine
