#include "engine/model_runner.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "engine/checkpoint.hpp"
#include "engine/model_runner_impl.hpp"
#include "engine/op_names.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::engine {

using backend::Activation;
using backend::BufferPtr;
using backend::LinearWeight;
using backend::NormOut;

size_t ModelRunner::kv_bytes_per_block(const io::ModelConfig& c) {
  return size_t(c.num_layers) * 2 * c.num_kv_heads * kKvBlockSize * c.head_dim * 2;
}

ModelRunner::ModelRunner(std::unique_ptr<backend::Backend> be, io::ModelConfig config,
                         RunnerOptions opt)
    : be_(std::move(be)), config_(std::move(config)), opt_(opt), s_(std::make_unique<Scratch>()) {
  const auto& c = config_;
  if (c.hidden_act != "silu") fail("hidden_act '{}' is not supported (only silu)", c.hidden_act);
  max_len_ = opt.max_model_len > 0 ? opt.max_model_len : c.max_position_embeddings;
  if (max_len_ <= 0) fail("max_model_len must be positive");
  if (opt_.max_num_batched_tokens <= 0)
    fail("max_num_batched_tokens must be positive, got {}", opt_.max_num_batched_tokens);
  if (opt_.max_num_seqs <= 0) fail("max_num_seqs must be positive, got {}", opt_.max_num_seqs);
  if (!(opt_.gpu_memory_utilization > 0 && opt_.gpu_memory_utilization <= 1))
    fail("gpu_memory_utilization must be in (0, 1], got {}", opt_.gpu_memory_utilization);
  layers_.resize(size_t(c.num_layers));
  const char* no_fuse = std::getenv("NESTEDFP_NO_FUSE");
  fuse_ = opt_.fuse_projections && !(no_fuse && *no_fuse && std::string(no_fuse) != "0");
}

ModelRunner::~ModelRunner() = default;

void ModelRunner::set_communicator(backend::Communicator* comm) {
  if (!tp_) fail("internal: set_communicator on a runner that holds the whole model");
  if (comm && (comm->size() != tp_->shard.size || comm->rank() != tp_->shard.rank))
    fail("internal: communicator of rank {}/{} given to the runner of rank {}/{}", comm->rank(),
         comm->size(), tp_->shard.rank, tp_->shard.size);
  tp_->comm = comm;
}

void ModelRunner::finish_setup() {
  const auto& c = config_;
  backend::RopeSpec rs;
  rs.head_dim = c.head_dim, rs.theta = c.rope_theta, rs.scaling = c.rope_scaling.type;
  rs.factor = c.rope_scaling.factor, rs.low_freq_factor = c.rope_scaling.low_freq_factor;
  rs.high_freq_factor = c.rope_scaling.high_freq_factor;
  rs.original_max_position_embeddings = c.rope_scaling.original_max_position_embeddings;
  rope_ = be_->create_rope(rs);

  // Scratch for the largest step, before the KV cache takes what is left of the device.
  const int64_t T = opt_.max_num_batched_tokens, H = c.hidden_size, I = c.intermediate_size;
  const int64_t qd = int64_t(c.num_heads) * c.head_dim, kvd = int64_t(c.num_kv_heads) * c.head_dim;
  max_logit_rows_ = std::max(opt_.max_num_seqs, 64);
  const FusedLayers fl = fused_layers();
  spdlog::info("fused projections: q,k,v in {} of {} layers, gate,up in {}{}", fl.qkv,
               layers_.size(), fl.gate_up, fuse_ ? "" : " (off: NESTEDFP_NO_FUSE or the options)");
  auto f16 = [&](int64_t rows, int64_t n) { return be_->alloc(size_t(rows * n) * 2); };
  Scratch& s = *s_;
  s.h = f16(T, H), s.x = f16(T, H), s.q = f16(T, qd), s.k = f16(T, kvd), s.v = f16(T, kvd);
  s.attn = f16(T, qd), s.o = f16(T, H), s.act = f16(T, I);
  const bool fp8_rows = std::any_of(layers_.begin(), layers_.end(), [](const Layer& L) {
    return L.o->runs_fp8() || L.down->runs_fp8();
  });
  if (tp_ && opt_.tp_fp8_one_gpu_numerics && fp8_rows) s.o32 = be_->alloc(size_t(T * H) * 4);
  int64_t fused_cols = 0;
  bool apart = false;  // a layer runs gate and up as two GEMMs
  for (const Layer& L : layers_) {
    if (L.qkv) fused_cols = std::max(fused_cols, qd + 2 * kvd);
    if (L.gate_up) fused_cols = std::max(fused_cols, 2 * I);
    apart = apart || !L.gate_up;
  }
  if (fused_cols) s.fused = f16(T, fused_cols);
  if (apart) s.gate = f16(T, I), s.up = f16(T, I);
  s.q8 = be_->alloc(size_t(T * std::max({H, I, qd})));
  s.scale = be_->alloc(size_t(T) * 4);
  s.xl = f16(max_logit_rows_, H);
  s.logits = be_->alloc(size_t(max_logit_rows_) * size_t(c.vocab_size) * 4);
  const int64_t blocks_per_seq = (int64_t(max_len_) + kKvBlockSize - 1) / kKvBlockSize;
  be_->reserve_steps(T, opt_.max_num_seqs, int64_t(opt_.max_num_seqs) * blocks_per_seq,
                     max_logit_rows_);

  const size_t per_block = kv_bytes_per_block(c);
  const auto [free_b, total_b] = be_->memory_info();
  if (opt_.num_kv_blocks > 0) {
    num_blocks_ = opt_.num_kv_blocks;
  } else if (total_b > 0 && !opt_.kv_cache_bytes) {
    // A device budget: what gpu_memory_utilization leaves after weights and scratch.
    const double budget = double(total_b) * opt_.gpu_memory_utilization - double(total_b - free_b);
    if (budget < double(per_block))
      fail(
          "no GPU memory left for the KV cache: weights and scratch use {:.1f} GiB of {:.1f} GiB "
          "and "
          "--gpu-memory-utilization {} allows {:.1f} GiB; raise it, or lower "
          "--max-num-batched-tokens",
          double(total_b - free_b) / (1 << 30), double(total_b) / (1 << 30),
          opt_.gpu_memory_utilization, double(total_b) * opt_.gpu_memory_utilization / (1 << 30));
    num_blocks_ = int(std::min(budget / double(per_block), 1e9));
  } else {
    num_blocks_ =
        int((opt_.kv_cache_bytes ? opt_.kv_cache_bytes : (size_t(256) << 20)) / per_block);
  }
  if (num_blocks_ <= 0) fail("KV cache budget too small for one block ({} bytes)", per_block);
  // Decode steps replay CUDA graphs on device backends: one extra block (never given to the
  // engine) takes the KV writes of the pad sequences that fill a batch up to its graph size.
  const bool want_graphs = opt_.cuda_graphs && be_->is_gpu();
  if (want_graphs) pad_block_ = num_blocks_;
  kv_ = be_->create_kv_cache(
      {c.num_layers, num_blocks_ + (want_graphs ? 1 : 0), c.num_kv_heads, c.head_dim, c.num_heads});
  graphs_ = want_graphs && be_->supports_graphs();
  if (graphs_) {
    const int cap = std::min({opt_.max_num_seqs, opt_.max_num_batched_tokens, max_logit_rows_});
    for (int b = 1; b < cap; b *= 2) graph_buckets_.push_back(b);
    graph_buckets_.push_back(cap);
    spdlog::info(
        "decode steps of up to {} sequences replay CUDA graphs (captured on first use; "
        "--enforce-eager turns them off)",
        cap);
  }
  spdlog::info(
      "model runner on {}: KV cache of {} blocks = {} tokens ({:.2f} GiB); steps of up to {} "
      "tokens, {} sequences",
      be_->name(), num_blocks_, int64_t(num_blocks_) * kKvBlockSize,
      double(num_blocks_) * double(per_block) / (1 << 30), T, opt_.max_num_seqs);
}

RunnerMemory ModelRunner::memory() const {
  RunnerMemory m;
  auto bytes = [](const BufferPtr& b) { return b ? b->bytes() : size_t(0); };
  for (const Layer& L : layers_) {
    for (const auto* w : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.qkv, &L.gate_up})
      if (*w)
        ((*w)->format == backend::WeightFormat::FP16 ? m.plain_linears : m.nested_linears) +=
            (*w)->bytes;
    m.norms += bytes(L.input_norm) + bytes(L.post_norm) + bytes(L.q_norm) + bytes(L.k_norm);
  }
  m.norms += bytes(final_norm_);
  m.embedding = bytes(embed_);
  m.lm_head = lm_head_ ? lm_head_->bytes : 0;
  m.kv_blocks = num_blocks_ + (pad_block_ >= 0 ? 1 : 0);
  m.kv_cache = size_t(m.kv_blocks) * kv_bytes_per_block(config_);
  const Scratch& s = *s_;
  for (const BufferPtr* b : {&s.h, &s.x, &s.q, &s.k, &s.v, &s.attn, &s.o, &s.gate, &s.up, &s.fused,
                             &s.act, &s.q8, &s.scale, &s.xl, &s.logits, &s.o32})
    m.scratch += bytes(*b);
  m.backend = be_->workspace_memory();
  return m;
}

ModelRunner::FusedLayers ModelRunner::fused_layers() const {
  FusedLayers f;
  for (const Layer& L : layers_) f.qkv += L.qkv != nullptr, f.gate_up += L.gate_up != nullptr;
  return f;
}

void ModelRunner::validate(const StepInput& in) const {
  int64_t tokens = 0;
  for (const SeqChunk& s : in.seqs) {
    tokens += int64_t(s.tokens.size());
    const int64_t end = int64_t(s.start_pos) + int64_t(s.tokens.size());
    if (s.start_pos < 0) fail("sequence {}: negative start_pos {}", s.seq_id, s.start_pos);
    if (end > max_len_)
      fail("sequence {}: {} tokens exceed max_model_len {}", s.seq_id, end, max_len_);
    if (int64_t(s.block_table.size()) * kKvBlockSize < end)
      fail("sequence {}: block table of {} blocks cannot hold {} tokens", s.seq_id,
           s.block_table.size(), end);
    for (int32_t b : s.block_table)
      if (b < 0 || b >= num_blocks_)
        fail("sequence {}: block id {} outside [0, {})", s.seq_id, b, num_blocks_);
    for (int32_t t : s.tokens)
      if (t < 0 || t >= config_.vocab_size)
        fail("sequence {}: token id {} outside [0, {})", s.seq_id, t, config_.vocab_size);
    if (s.sample) s.sampling.validate();
    if (s.sample && s.penalties) try {
        check_penalties(s.penalties->view(), config_.vocab_size, seen_);
      } catch (const Error& e) {
        fail("sequence {}: {}", s.seq_id, e.what());
      }
    if (s.sample_all && (s.sampling.temperature != 0.f || s.penalties || s.top_logprobs >= 0))
      fail(
          "sequence {}: sample_all (speculative verification) samples greedily, without "
          "penalties or logprobs",
          s.seq_id);
    if (s.top_logprobs > kMaxLogprobs)
      fail("sequence {}: {} top logprobs asked, at most {}", s.seq_id, s.top_logprobs,
           kMaxLogprobs);
  }
  if (tokens > opt_.max_num_batched_tokens)
    fail("a step of {} tokens exceeds max_num_batched_tokens {}", tokens,
         opt_.max_num_batched_tokens);
  if (int(in.seqs.size()) > opt_.max_num_seqs)
    fail("a step of {} sequences exceeds max_num_seqs {}", in.seqs.size(), opt_.max_num_seqs);
}

void ModelRunner::build_layout(const StepInput& in) {
  backend::StepLayout& L = layout_;
  for (auto* v : {&L.ids, &L.positions, &L.slots, &L.q_indptr, &L.kv_indptr, &L.kv_indices,
                  &L.kv_last_page_len, &L.logit_rows, &L.sample_rows, &L.top_logprobs})
    v->clear();
  L.sampling.clear(), L.uniforms.clear(), host_rows_.clear(), sample_owner_.clear();
  for (auto* v :
       {&L.penalty_indptr, &L.penalty_tokens, &L.penalty_counts, &L.bias_indptr, &L.bias_tokens})
    v->clear();
  L.penalty_factors.clear(), L.penalty_in_prompt.clear(), L.bias_values.clear();
  L.penalty_indptr.push_back(0), L.bias_indptr.push_back(0);
  L.max_q_len = L.max_kv_len = 0;
  L.graph = false;
  L.q_indptr.push_back(0), L.kv_indptr.push_back(0);
  for (size_t si = 0; si < in.seqs.size(); ++si) {
    const SeqChunk& s = in.seqs[si];
    const int32_t q0 = int32_t(L.ids.size()), n = int32_t(s.tokens.size());
    if (n == 0) continue;
    const int32_t ctx = s.start_pos + n;
    for (int32_t i = 0; i < n; ++i) {
      const int32_t p = s.start_pos + i;
      L.ids.push_back(s.tokens[size_t(i)]);
      L.positions.push_back(p);
      L.slots.push_back(s.block_table[size_t(p / kKvBlockSize)] * kKvBlockSize + p % kKvBlockSize);
    }
    const int32_t nb = (ctx + kKvBlockSize - 1) / kKvBlockSize;
    L.kv_indices.insert(L.kv_indices.end(), s.block_table.begin(), s.block_table.begin() + nb);
    L.q_indptr.push_back(q0 + n);
    L.kv_indptr.push_back(int32_t(L.kv_indices.size()));
    L.kv_last_page_len.push_back((ctx - 1) % kKvBlockSize + 1);
    L.max_q_len = std::max(L.max_q_len, int(n)), L.max_kv_len = std::max(L.max_kv_len, int(ctx));
    const bool all_rows = s.need_all_logits || (s.sample && s.sample_all);
    const int32_t first = all_rows ? 0 : (s.need_logits || s.sample) ? n - 1 : n;
    for (int32_t i = first; i < n; ++i) {
      L.logit_rows.push_back(q0 + i);
      host_rows_.push_back(s.need_all_logits || (s.need_logits && i == n - 1) ? int32_t(si) : -1);
      // A verify chunk samples every row greedily (validate() refused penalties and logprobs).
      if (s.sample && s.sample_all && i + 1 < n) {
        L.sample_rows.push_back(int32_t(L.logit_rows.size()) - 1);
        L.sampling.push_back(s.sampling), L.uniforms.push_back(0.0), L.top_logprobs.push_back(-1);
        L.penalty_factors.push_back({1.f, 0.f, 0.f});
        L.penalty_indptr.push_back(int32_t(L.penalty_tokens.size()));
        L.bias_indptr.push_back(int32_t(L.bias_tokens.size()));
        sample_owner_.push_back({int32_t(si), i});
      }
    }
    if (s.sample) {
      sample_owner_.push_back({int32_t(si), n - 1});
      L.sample_rows.push_back(int32_t(L.logit_rows.size()) - 1);
      L.sampling.push_back(s.sampling);
      L.uniforms.push_back(s.uniform);
      L.top_logprobs.push_back(s.top_logprobs);
      if (const RowPenalties* p = s.penalties) {
        auto append = [](auto& dst, const auto& src) {
          dst.insert(dst.end(), src.begin(), src.end());
        };
        append(L.penalty_tokens, p->tokens), append(L.penalty_counts, p->output_counts);
        append(L.penalty_in_prompt, p->in_prompt);
        append(L.bias_tokens, p->bias_tokens), append(L.bias_values, p->bias_values);
        L.penalty_factors.push_back({p->repetition, p->frequency, p->presence});
      } else {
        L.penalty_factors.push_back({1.f, 0.f, 0.f});
      }
      L.penalty_indptr.push_back(int32_t(L.penalty_tokens.size()));
      L.bias_indptr.push_back(int32_t(L.bias_tokens.size()));
    }
  }
}

void ModelRunner::forward(Precision precision) {
  const auto& c = config_;
  const int64_t T = layout_.tokens(), H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int nq = c.num_heads, nkv = c.num_kv_heads;
  const bool fp8 = precision == Precision::FP8, fp8_acts = fp8 && opt_.fp8_activations;
  auto& be = *be_;
  Scratch& s = *s_;
  const float eps = float(c.rms_norm_eps);

  // Per-token E4M3 of a row-parallel linear's input (this rank's columns of each row): with
  // one-GPU numerics the slices take the whole row's scale, so the ranks quantize as one GPU does.
  const bool share = tp_ && opt_.tp_fp8_one_gpu_numerics;
  auto quantize_row_parallel = [&](const backend::Buffer& src, int64_t cols) {
    if (!share) return be.quantize(src, T, cols, *s.q8, *s.scale);
    be.token_scales(src, T, cols, *s.scale);
    tp_->share_scales(be, *s.scale, T);
    be.quantize_scaled(src, T, cols, *s.scale, *s.q8);
  };

  // The activation form the consumers need: fp16 when any consumer runs FP16, E4M3 when any
  // runs FP8. With a norm, `pending` (a branch output not yet added) is added into the residual
  // stream h by the norm itself (fused residual add).
  backend::Buffer* pending = nullptr;
  auto prepare = [&](const backend::Buffer* norm_w, backend::Buffer& src, int64_t cols,
                     std::initializer_list<const LinearWeight*> consumers) -> Activation {
    bool need16 = !fp8, need8 = false;
    for (const LinearWeight* w : consumers) (fp8_acts && w->runs_fp8() ? need8 : need16) = true;
    NormOut o{need16 ? s.x.get() : nullptr, need8 ? s.q8.get() : nullptr,
              need8 ? s.scale.get() : nullptr};
    Activation a;
    if (norm_w) {
      be.profile_mark(op::kRmsnorm);
      if (pending)
        be.rmsnorm(*pending, &src, *norm_w, T, cols, eps, o);
      else
        be.rmsnorm(src, nullptr, *norm_w, T, cols, eps, o);
      pending = nullptr;
      a.f16 = o.out;
    } else {
      if (need8) be.profile_mark(op::kQuantize), quantize_row_parallel(src, cols);
      a.f16 = need16 ? &src : nullptr;
    }
    if (need8) a.q8 = s.q8.get(), a.scale = s.scale.get();
    return a;
  };

  be.profile_mark(op::kEmbedding);
  be.embedding(*embed_, c.vocab_size, H, *s.h);
  for (size_t li = 0; li < layers_.size(); ++li) {
    const Layer& L = layers_[li];
    // `taps`: the logical linears this GEMM computes (a fused one reports each part).
    auto linear = [&](const char* mark, std::initializer_list<const char*> taps,
                      const LinearWeight& w, const Activation& a, backend::Buffer& y) {
      if (tap_)
        for (const char* name : taps) tap_(int(li), name, a, T);
      be.profile_mark(mark);
      be.linear(precision, w, a, T, y);
    };
    // o and down (row-parallel under tensor parallelism): the ranks' partial outputs summed into
    // s.o, in fp32 before one rounding when the step runs the weight in FP8 and `share`.
    auto row_parallel = [&](const char* mark, const char* name, const LinearWeight& w,
                            const Activation& a) {
      if (!(share && fp8 && w.runs_fp8())) {
        linear(mark, {name}, w, a, *s.o);
        if (tp_) tp_->reduce(be, *s.o, T * H);
        return;
      }
      if (tap_) tap_(int(li), name, a, T);
      be.profile_mark(mark);
      be.linear_acc(w, a, T, *s.o32);
      tp_->reduce_f32(be, *s.o32, T * H);
      be.finish_acc(w, a, T, *s.o32, *s.o);
    };
    Activation a;
    if (L.qkv) {
      a = prepare(L.input_norm.get(), *s.h, H, {L.qkv.get()});
      linear(op::kQkv, {"q", "k", "v"}, *L.qkv, a, *s.fused);
      be.profile_mark(op::kQkvSplit);
      const backend::ColumnPart parts[] = {{s.q.get(), int64_t(nq) * hd},
                                           {s.k.get(), int64_t(nkv) * hd},
                                           {s.v.get(), int64_t(nkv) * hd}};
      be.split_columns(*s.fused, T, parts);
    } else {
      a = prepare(L.input_norm.get(), *s.h, H, {L.q.get(), L.k.get(), L.v.get()});
      linear(op::kQkv, {"q"}, *L.q, a, *s.q);
      linear(op::kQkv, {"k"}, *L.k, a, *s.k);
      linear(op::kQkv, {"v"}, *L.v, a, *s.v);
    }
    if (c.qk_norm) {
      be.profile_mark(op::kRmsnorm);
      be.rmsnorm(*s.q, nullptr, *L.q_norm, T * nq, hd, eps, NormOut{s.q.get()});
      be.rmsnorm(*s.k, nullptr, *L.k_norm, T * nkv, hd, eps, NormOut{s.k.get()});
    }
    be.profile_mark(op::kRopeKv);
    be.rope(*rope_, *s.q, *s.k, nq, nkv, int(hd));
    be.write_kv(*kv_, int(li), *s.k, *s.v);
    be.profile_mark(op::kAttention);
    be.attention(*kv_, int(li), *s.q, nq, 1.f / std::sqrt(float(hd)), *s.attn);
    a = prepare(nullptr, *s.attn, int64_t(nq) * hd, {L.o.get()});
    row_parallel(op::kO, "o", *L.o, a);
    pending = s.o.get();

    if (L.gate_up) {
      a = prepare(L.post_norm.get(), *s.h, H, {L.gate_up.get()});
      linear(op::kGateUp, {"gate", "up"}, *L.gate_up, a, *s.fused);
    } else {
      a = prepare(L.post_norm.get(), *s.h, H, {L.gate.get(), L.up.get()});
      linear(op::kGateUp, {"gate"}, *L.gate, a, *s.gate);
      linear(op::kGateUp, {"up"}, *L.up, a, *s.up);
    }
    be.profile_mark(op::kSiluMul);
    const bool act8 = fp8_acts && L.down->runs_fp8();
    // Shared scales need the whole row's max first: SiLU·mul to fp16, then quantize.
    const bool fuse8 = act8 && !share;
    const NormOut act = fuse8 ? NormOut{nullptr, s.q8.get(), s.scale.get()} : NormOut{s.act.get()};
    if (L.gate_up)
      be.silu_mul_fused(*s.fused, T, I, act);
    else
      be.silu_mul(*s.gate, *s.up, T, I, act);
    if (act8 && share) be.profile_mark(op::kQuantize), quantize_row_parallel(*s.act, I);
    a = act8 ? Activation{nullptr, s.q8.get(), s.scale.get()} : Activation{s.act.get()};
    row_parallel(op::kDown, "down", *L.down, a);
    pending = s.o.get();
  }
  be.profile_mark(op::kFinalNorm);
  if (pending) be.add(*s.h, *pending, T * H);
}

// Logits in groups of max_logit_rows_ rows: the final norm, lm_head, device sampling of the
// sampled rows, and a download of the rows a sequence wants on the host.
bool ModelRunner::logits_and_samples(const StepInput& in, StepOutput& out, bool may_defer) {
  const auto& c = config_;
  const int64_t R = int64_t(layout_.logit_rows.size()), V = c.vocab_size, H = c.hidden_size;
  auto& be = *be_;
  Scratch& s = *s_;
  size_t next_sample = 0;
  for (int64_t g0 = 0; g0 < R; g0 += max_logit_rows_) {
    const int64_t gn = std::min<int64_t>(max_logit_rows_, R - g0);
    be.profile_mark(op::kFinalNorm);
    be.gather_logit_rows(*s.h, H, g0, gn, *s.xl);
    be.rmsnorm(*s.xl, nullptr, *final_norm_, gn, H, float(c.rms_norm_eps), NormOut{s.xl.get()});
    be.profile_mark(op::kLmHead);
    be.logits(*lm_head_, *s.xl, gn, *s.logits);
    be.profile_mark(op::kSampling);
    // The last group, when no logits of it go to the host: its samples are read in collect().
    if (may_defer && g0 + gn == R &&
        std::all_of(host_rows_.begin() + g0, host_rows_.begin() + R,
                    [](int32_t i) { return i < 0; })) {
      be.sample_enqueue(*s.logits, V, g0, gn);
      collect_begin_ = g0, collect_rows_ = gn, collect_owner_ = next_sample;
      return true;
    }
    std::vector<SampledToken> sampled = be.sample(*s.logits, V, g0, gn);
    for (auto& t : sampled) {  // in sample_rows order
      if (next_sample == sample_owner_.size()) fail("internal: more sampled rows than asked for");
      store_sample(in, sample_owner_[next_sample++], std::move(t), out);
    }
    for (int64_t r = 0, r1; r < gn; r = r1) {  // one download per run of a sequence's rows
      const int32_t si = host_rows_[size_t(g0 + r)];
      for (r1 = r + 1; r1 < gn && host_rows_[size_t(g0 + r1)] == si;) ++r1;
      if (si < 0) continue;
      be.profile_mark(op::kLogitsToHost);
      auto& dst = out.logits[size_t(si)];
      const size_t off = dst.size();
      dst.resize(off + size_t((r1 - r) * V));
      be.download(dst.data() + off, *s.logits, size_t((r1 - r) * V) * 4, size_t(r * V) * 4);
    }
  }
  return false;
}

// The graph batch size for a step that can replay a CUDA graph, or 0: decode only (one sampled
// token per sequence), no logits to the host, no logprobs, no penalties, no activation tap.
int ModelRunner::graph_batch(const StepInput& in) const {
  if (!graphs_ || graphs_paused_ || tap_ || be_->profiling())
    return 0;  // profiled steps mark every op: eager
  int S = 0;
  for (const SeqChunk& s : in.seqs) {
    if (s.tokens.empty()) continue;
    // Penalty lists change size every step: those steps run eagerly (the cuda backend keeps them
    // outside the graphs' fixed addresses).
    if (s.tokens.size() != 1 || !s.sample || s.need_logits || s.need_all_logits ||
        s.top_logprobs >= 0 || s.penalties)
      return 0;
    ++S;
  }
  for (int b : graph_buckets_)
    if (b >= S && S > 0) return b;
  return 0;
}

// Pads the layout of a decode step to B sequences: each pad is one greedy token at position 0 of
// the reserved pad block, so the padded step has the launch shape of the captured graph.
void ModelRunner::pad_layout(int B) {
  backend::StepLayout& L = layout_;
  while (L.num_seqs() < B) {
    const int32_t row = int32_t(L.ids.size());
    L.ids.push_back(0), L.positions.push_back(0), L.slots.push_back(pad_block_ * kKvBlockSize);
    L.q_indptr.push_back(row + 1);
    L.kv_indices.push_back(pad_block_);
    L.kv_indptr.push_back(int32_t(L.kv_indices.size()));
    L.kv_last_page_len.push_back(1);
    L.logit_rows.push_back(row), host_rows_.push_back(-1);
    L.sample_rows.push_back(int32_t(L.logit_rows.size()) - 1);
    SamplingParams greedy;
    greedy.temperature = 0.f;
    L.sampling.push_back(greedy), L.uniforms.push_back(0.0), L.top_logprobs.push_back(-1);
    L.penalty_factors.push_back({1.f, 0.f, 0.f});
    L.penalty_indptr.push_back(L.penalty_indptr.back());
    L.bias_indptr.push_back(L.bias_indptr.back());
  }
  L.max_q_len = 1, L.max_kv_len = std::max(L.max_kv_len, 1);
  L.graph = true;
}

// A decode step through the CUDA graph of its (batch bucket, precision): replayed when captured,
// else run eagerly (which also warms every kernel configuration up) and captured for next time.
bool ModelRunner::run_graph(const StepInput& in, int B, StepOutput& out) {
  auto& be = *be_;
  Scratch& s = *s_;
  const auto& c = config_;
  pad_layout(B);
  be.begin_step(layout_);
  const int64_t key = int64_t(B) * 2 + (in.precision == Precision::FP8 ? 1 : 0);
  auto enqueue = [&] {
    forward(in.precision);
    be.gather_logit_rows(*s.h, c.hidden_size, 0, B, *s.xl);
    be.rmsnorm(*s.xl, nullptr, *final_norm_, B, c.hidden_size, float(c.rms_norm_eps),
               NormOut{s.xl.get()});
    be.logits(*lm_head_, *s.xl, B, *s.logits);
    be.sample_enqueue(*s.logits, c.vocab_size, 0, B);
  };
  if (be.graph_replay(key)) {
    ++graph_replays_;
    collect_begin_ = 0, collect_rows_ = B, collect_owner_ = 0;
    return true;
  }
  enqueue();
  std::vector<SampledToken> sampled = be.sample_collect(0, B);
  be.graph_capture_begin();
  enqueue();
  be.graph_capture_end(key);
  spdlog::debug("captured the decode graph of batch {} ({})", B, to_string(in.precision));
  for (size_t k = 0; k < sample_owner_.size(); ++k)
    store_sample(in, sample_owner_[k], std::move(sampled.at(k)), out);
  return false;
}

void ModelRunner::store_sample(const StepInput& in, SampleOwner o, SampledToken&& t,
                               StepOutput& out) const {
  const SeqChunk& s = in.seqs[size_t(o.seq)];
  if (s.sample_all) {
    auto& rows = out.row_tokens[size_t(o.seq)];
    rows.resize(s.tokens.size(), -1);
    rows[size_t(o.row)] = t.token;
  }
  if (o.row + 1 == int32_t(s.tokens.size())) {
    out.tokens[size_t(o.seq)] = t.token;
    out.logprobs[size_t(o.seq)] = std::move(t.logprobs);
  }
}

StepOutput ModelRunner::execute(const StepInput& in) {
  launch(in);
  return collect();
}

void ModelRunner::launch(const StepInput& in) {
  if (in_flight_) fail("internal: ModelRunner::launch while a step is in flight");
  be_->profile_mark(op::kSetup);
  validate(in);
  build_layout(in);
  out_ = StepOutput{};
  out_.logits.resize(in.seqs.size());
  out_.tokens.assign(in.seqs.size(), -1);
  out_.logprobs.resize(in.seqs.size());
  out_.row_tokens.resize(in.seqs.size());
  collect_rows_ = -1;
  in_flight_ = &in;
  if (layout_.tokens() == 0) return;
  try {
    if (const int B = graph_batch(in); B > 0) {
      run_graph(in, B, out_);
      return;
    }
    be_->begin_step(layout_);
    forward(in.precision);
    if (logits_and_samples(in, out_, true)) return;
    be_->synchronize();
    be_->profile_mark(nullptr);
  } catch (...) {
    in_flight_ = nullptr;
    throw;
  }
}

StepOutput ModelRunner::collect() {
  if (!in_flight_) fail("internal: ModelRunner::collect without a launched step");
  const StepInput& in = *in_flight_;
  in_flight_ = nullptr;
  if (collect_rows_ >= 0) {
    std::vector<SampledToken> sampled = be_->sample_collect(collect_begin_, collect_rows_);
    // The queued rows are the step's sample rows from collect_owner_ on (a graph's pad rows
    // come after them).
    for (size_t k = collect_owner_; k < sample_owner_.size(); ++k)
      store_sample(in, sample_owner_[k], std::move(sampled.at(k - collect_owner_)), out_);
    collect_rows_ = -1;
    be_->profile_mark(nullptr);
  }
  return std::move(out_);
}

}  // namespace nestedfp::engine
