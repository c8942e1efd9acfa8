// The cpu reference backend: plain host memory, a small thread pool, and the kernels of
// kernels.hpp. Rounding to fp16 follows Hugging Face's fp16 Llama op by op (see backend.hpp).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numbers>

#include "backend/cpu/kernels.hpp"
#include "backend/cpu/thread_pool.hpp"
#include "nestedfp/backend.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/format.hpp"
#include "nestedfp/fp8_weight.hpp"
#include "nestedfp/half.hpp"

namespace nestedfp::backend {
namespace {

using cpu::ThreadPool;

class CpuBuffer final : public Buffer {
 public:
  explicit CpuBuffer(size_t n)
      : n_(n), p_(static_cast<uint8_t*>(std::aligned_alloc(64, round(n)))) {
    if (!p_) fail("cpu backend: out of memory allocating {} bytes", n);
  }
  ~CpuBuffer() override { std::free(p_); }
  size_t bytes() const override { return n_; }
  uint8_t* data() { return p_; }
  const uint8_t* data() const { return p_; }

 private:
  static size_t round(size_t n) { return std::max<size_t>(64, (n + 63) / 64 * 64); }
  size_t n_;
  uint8_t* p_;
};

template <typename T>
T* ptr(Buffer& b, size_t elems, const char* what) {
  if (b.bytes() < elems * sizeof(T))
    fail("cpu backend: buffer for {} too small ({} < {} bytes)", what, b.bytes(),
         elems * sizeof(T));
  return reinterpret_cast<T*>(static_cast<CpuBuffer&>(b).data());
}
template <typename T>
const T* ptr(const Buffer& b, size_t elems, const char* what) {
  if (b.bytes() < elems * sizeof(T))
    fail("cpu backend: buffer for {} too small ({} < {} bytes)", what, b.bytes(),
         elems * sizeof(T));
  return reinterpret_cast<const T*>(static_cast<const CpuBuffer&>(b).data());
}

class CpuLinear final : public LinearWeight {
 public:
  cpu::PackedWeight packed;
};

class CpuRope final : public Rope {
 public:
  std::vector<float> inv_freq;  // head_dim / 2
  int head_dim = 0;
};

class CpuKvCache final : public KvCache {
 public:
  // Per layer: [num_blocks][nkv][kKvBlockSize][head_dim] fp16, keys and values.
  std::vector<std::vector<uint16_t>> k, v;
  size_t offset(int32_t block, int h, int off) const {
    return ((size_t(block) * spec.num_kv_heads + h) * kKvBlockSize + off) * spec.head_dim;
  }
};

inline float silu(float x) { return x / (1.f + std::exp(-x)); }

// One sequence as the attention loop walks it: query rows [q_begin, q_begin + q_len) at positions
// start_pos ...; keys/values of [0, start_pos + q_len) at the blocks of block_table.
struct AttentionSeq {
  int32_t q_begin = 0, q_len = 0, start_pos = 0;
  std::span<const int32_t> block_table;
};

// The optional outputs of a fused norm/activation: fp16 rows and/or their E4M3 quantization.
class Outputs {
 public:
  Outputs(const NormOut& o, int64_t rows, int64_t cols) : cols_(cols) {
    if (!o.out && !o.q8) fail("cpu backend: a norm/activation without any output");
    if (o.out) out_ = ptr<uint16_t>(*o.out, size_t(rows * cols), "out");
    if (o.q8) {
      if (!o.scale) fail("cpu backend: quantized output without a scale buffer");
      q8_ = ptr<uint8_t>(*o.q8, size_t(rows * cols), "q8");
      scale_ = ptr<float>(*o.scale, size_t(rows), "scale");
    }
  }
  // compute(y) writes row r's fp16 values into y.
  template <typename F>
  void write_row(int64_t r, F&& compute) const {
    thread_local std::vector<uint16_t> tmp;
    uint16_t* y = out_ ? out_ + r * cols_ : (tmp.resize(size_t(cols_)), tmp.data());
    compute(y);
    if (q8_) cpu::quantize_row_fp16(y, cols_, q8_ + r * cols_, scale_ + r);
  }

 private:
  int64_t cols_;
  uint16_t* out_ = nullptr;
  uint8_t* q8_ = nullptr;
  float* scale_ = nullptr;
};

// fp16(mean + std * N(0, 1)) with value i a pure function of (seed, i) (splitmix64 + Box-Muller).
void random_fp16(uint16_t* out, int64_t n, const RandomFill& r) {
  auto mix = [](uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t a = mix(r.seed ^ mix(uint64_t(i))), b = mix(a);
    const double u1 = (double(a >> 11) + 1.0) * 0x1.0p-53, u2 = double(b >> 11) * 0x1.0p-53;
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    out[i] = float_to_fp16(float(r.mean + r.std * z));
  }
}

// A raw fp16 weight stored as the spec asks: nested (plain when a row cannot be), an FP8
// baseline, or plain.
cpu::PackedWeight pack_raw(const uint16_t* w, const LinearSpec& s) {
  const int64_t N = s.out_features, K = s.in_features;
  switch (s.storage) {
    case RawStorage::Plain: return cpu::pack_plain(w, N, K);
    case RawStorage::Fp8PerTensor:
    case RawStorage::Fp8PerChannel: {
      const auto g = s.storage == RawStorage::Fp8PerTensor ? format::Fp8Granularity::PerTensor
                                                           : format::Fp8Granularity::PerChannel;
      const format::Fp8Tensor t = format::quantize_fp8(w, N, K, g);
      return cpu::pack_fp8(t.q.data(), t.scale.data(), N, K);
    }
    case RawStorage::Nested: break;
  }
  const auto mode = s.channel_scale ? format::ScaleMode::Channel : format::ScaleMode::None;
  if (!format::check(w, N, K, mode).ok) return cpu::pack_plain(w, N, K);
  const format::NestedTensor t = format::split_tensor(w, N, K, mode);
  return cpu::pack_nested(t.upper.data(), t.lower.data(), t.k.empty() ? nullptr : t.k.data(), N, K);
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads) {}
  std::string name() const override {
    return fmt::format("cpu ({} threads, {})", pool_.size(), cpu::to_string(cpu::active_isa()));
  }

  BufferPtr alloc(size_t bytes) override { return std::make_unique<CpuBuffer>(bytes); }
  void upload(Buffer& dst, const void* src, size_t bytes, size_t off) override {
    std::memcpy(ptr<uint8_t>(dst, off + bytes, "upload") + off, src, bytes);
  }
  void download(void* dst, const Buffer& src, size_t bytes, size_t off) override {
    std::memcpy(dst, ptr<uint8_t>(src, off + bytes, "download") + off, bytes);
  }

  std::unique_ptr<LinearWeight> create_linear(const LinearSpec& s) override {
    auto w = std::make_unique<CpuLinear>();
    w->out_features = s.out_features, w->in_features = s.in_features;
    if (s.nested) {
      const auto& t = *s.nested;
      if (t.rows != s.out_features || t.cols != s.in_features)
        fail("create_linear: nested tensor is {}x{}, expected {}x{}", t.rows, t.cols,
             s.out_features, s.in_features);
      w->packed = cpu::pack_nested(t.upper.data(), t.lower.data(),
                                   t.k.empty() ? nullptr : t.k.data(), t.rows, t.cols);
    } else if (s.fp8) {
      const auto& t = *s.fp8;
      if (t.rows != s.out_features || t.cols != s.in_features)
        fail("create_linear: fp8 tensor is {}x{}, expected {}x{}", t.rows, t.cols, s.out_features,
             s.in_features);
      w->packed = cpu::pack_fp8(t.q.data(), t.scale.data(), t.rows, t.cols);
    } else if (s.fp16) {
      w->packed = cpu::pack_plain(s.fp16, s.out_features, s.in_features);
    } else if (s.raw16 || s.random) {
      std::vector<uint16_t> gen;
      const uint16_t* raw = s.raw16;
      if (!raw) {
        gen.resize(size_t(s.out_features * s.in_features));
        random_fp16(gen.data(), int64_t(gen.size()), *s.random);
        raw = gen.data();
      }
      w->packed = pack_raw(raw, s);
    } else {
      fail("create_linear: no weights given (nested, fp8, fp16, raw fp16 or random)");
    }
    w->format = w->packed.format;
    if (s.bias) {
      w->has_bias = true;
      w->packed.bias.resize(size_t(s.out_features));
      for (int64_t i = 0; i < s.out_features; ++i) w->packed.bias[i] = fp16_to_float(s.bias[i]);
    }
    const auto& p = w->packed;
    w->bytes = p.upper.size() + p.lower.size() + p.f16.size() * 2 + p.col_scale.size() * 4 +
               p.bias.size() * 4;
    return w;
  }

  std::unique_ptr<Rope> create_rope(const RopeSpec& s) override {
    auto r = std::make_unique<CpuRope>();
    r->inv_freq = rope_inv_freq(s);
    r->head_dim = s.head_dim;
    return r;
  }

  std::unique_ptr<KvCache> create_kv_cache(const KvCacheSpec& s) override {
    auto c = std::make_unique<CpuKvCache>();
    c->spec = s;
    const size_t per_layer = size_t(s.num_blocks) * s.num_kv_heads * kKvBlockSize * s.head_dim;
    c->k.assign(size_t(s.num_layers), std::vector<uint16_t>(per_layer));
    c->v.assign(size_t(s.num_layers), std::vector<uint16_t>(per_layer));
    return c;
  }

  void fill_random(Buffer& dst, int64_t n, const RandomFill& r) override {
    random_fp16(ptr<uint16_t>(dst, size_t(n), "fill_random"), n, r);
  }

  void reserve_steps(int64_t, int, int64_t, int) override {}
  void begin_step(const StepLayout& layout) override {
    step_ = &layout;
    // The CSR arrays as the attention loop walks them.
    attn_seqs_.clear();
    for (int i = 0; i < layout.num_seqs(); ++i) {
      const int32_t q0 = layout.q_indptr[size_t(i)], qn = layout.q_indptr[size_t(i) + 1] - q0;
      const int32_t b0 = layout.kv_indptr[size_t(i)], nb = layout.kv_indptr[size_t(i) + 1] - b0;
      const int32_t ctx = (nb - 1) * kKvBlockSize + layout.kv_last_page_len[size_t(i)];
      attn_seqs_.push_back(
          {q0, qn, ctx - qn, std::span<const int32_t>(layout.kv_indices.data() + b0, size_t(nb))});
    }
  }

  void embedding(const Buffer& table, int64_t vocab, int64_t hidden, Buffer& out) override {
    const auto& ids = step().ids;
    const uint16_t* t = ptr<uint16_t>(table, size_t(vocab * hidden), "embedding table");
    uint16_t* o = ptr<uint16_t>(out, ids.size() * hidden, "embedding out");
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= vocab) fail("token id {} out of range [0, {})", ids[i], vocab);
      std::memcpy(o + i * hidden, t + int64_t(ids[i]) * hidden, size_t(hidden) * 2);
    }
  }

  // HF LlamaRMSNorm in fp16: fp32 statistics, cast the normalised value, multiply by the weight.
  static void rmsnorm_row(const uint16_t* x, const uint16_t* w, int64_t n, float eps,
                          uint16_t* out) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double v = fp16_to_float(x[i]);
      ss += v * v;
    }
    const float r = 1.f / std::sqrt(float(ss / double(n)) + eps);
    for (int64_t i = 0; i < n; ++i)
      out[i] = float_to_fp16(fp16_to_float(w[i]) *
                             fp16_to_float(float_to_fp16(fp16_to_float(x[i]) * r)));
  }

  void rmsnorm(const Buffer& x, Buffer* residual, const Buffer& w, int64_t rows, int64_t cols,
               float eps, const NormOut& o) override {
    const size_t n = size_t(rows * cols);
    const uint16_t* xp = ptr<uint16_t>(x, n, "rmsnorm x");
    const uint16_t* wp = ptr<uint16_t>(w, size_t(cols), "rmsnorm weight");
    uint16_t* rp = residual ? ptr<uint16_t>(*residual, n, "rmsnorm residual") : nullptr;
    Outputs out(o, rows, cols);
    pool_.parallel_for(rows, [&](int64_t r, int) {
      const uint16_t* src = xp + r * cols;
      if (rp) {  // fused residual add: residual = fp16(x + residual), normalise that
        uint16_t* res = rp + r * cols;
        for (int64_t i = 0; i < cols; ++i)
          res[i] = float_to_fp16(fp16_to_float(src[i]) + fp16_to_float(res[i]));
        src = res;
      }
      out.write_row(r, [&](uint16_t* y) { rmsnorm_row(src, wp, cols, eps, y); });
    });
  }

  void quantize(const Buffer& x, int64_t rows, int64_t cols, Buffer& q8, Buffer& scale) override {
    const uint16_t* xp = ptr<uint16_t>(x, size_t(rows * cols), "quantize x");
    uint8_t* qp = ptr<uint8_t>(q8, size_t(rows * cols), "q8");
    float* sp = ptr<float>(scale, size_t(rows), "scale");
    pool_.parallel_for(rows, [&](int64_t r, int) {
      cpu::quantize_row_fp16(xp + r * cols, cols, qp + r * cols, sp + r);
    });
  }
  void token_scales(const Buffer& x, int64_t rows, int64_t cols, Buffer& scale) override {
    const uint16_t* xp = ptr<uint16_t>(x, size_t(rows * cols), "token_scales x");
    float* sp = ptr<float>(scale, size_t(rows), "scale");
    pool_.parallel_for(rows,
                       [&](int64_t r, int) { sp[r] = cpu::token_scale_fp16(xp + r * cols, cols); });
  }
  void quantize_scaled(const Buffer& x, int64_t rows, int64_t cols, const Buffer& scale,
                       Buffer& q8) override {
    const uint16_t* xp = ptr<uint16_t>(x, size_t(rows * cols), "quantize_scaled x");
    const float* sp = ptr<float>(scale, size_t(rows), "scale");
    uint8_t* qp = ptr<uint8_t>(q8, size_t(rows * cols), "q8");
    pool_.parallel_for(rows, [&](int64_t r, int) {
      cpu::quantize_row_fp16_scaled(xp + r * cols, cols, sp[r], qp + r * cols);
    });
  }

  void linear(Precision precision, const LinearWeight& lw, const Activation& x, int64_t M,
              Buffer& out) override {
    const auto& w = static_cast<const CpuLinear&>(lw).packed;
    gemm_into(precision, lw, x, M, ptr<uint16_t>(out, size_t(M * w.N), "linear out"), nullptr);
  }
  void linear_acc(const LinearWeight& lw, const Activation& x, int64_t M, Buffer& acc) override {
    const auto& w = row_parallel_fp8(lw, "linear_acc");
    gemm_into(Precision::FP8, lw, x, M, nullptr, ptr<float>(acc, size_t(M * w.N), "linear acc"));
  }
  void finish_acc(const LinearWeight& lw, const Activation& x, int64_t M, const Buffer& acc,
                  Buffer& out) override {
    const auto& w = row_parallel_fp8(lw, "finish_acc");
    const float* rs = x.q8 ? ptr<float>(*x.scale, size_t(M), "linear scale") : nullptr;
    cpu::finish_gemm(pool_, ptr<float>(acc, size_t(M * w.N), "finish_acc acc"), M, w, rs,
                     ptr<uint16_t>(out, size_t(M * w.N), "finish_acc out"));
  }
  static const cpu::PackedWeight& row_parallel_fp8(const LinearWeight& lw, const char* what) {
    if (!lw.runs_fp8()) fail("{}: an FP16 weight (only FP8 steps sum accumulators)", what);
    const auto& w = static_cast<const CpuLinear&>(lw).packed;
    if (!w.bias.empty()) fail("{}: a weight with a bias (row-parallel weights have none)", what);
    return w;
  }

  // linear's GEMM into fp16 y, or unrounded into fp32 y32.
  void gemm_into(Precision precision, const LinearWeight& lw, const Activation& x, int64_t M,
                 uint16_t* y, float* y32) {
    const auto& w = static_cast<const CpuLinear&>(lw).packed;
    const int64_t K = w.K;
    act_.resize(size_t(M * K));
    const bool fp8 = precision == Precision::FP8 && lw.runs_fp8();
    if (fp8 && !x.q8 && x.f16) {  // weights-only FP8 (accuracy studies)
      const uint16_t* a = ptr<uint16_t>(*x.f16, size_t(M * K), "linear x");
      pool_.parallel_for(
          M, [&](int64_t m, int) { cpu::fp16_to_f32(a + m * K, act_.data() + m * K, K); });
      cpu::gemm(pool_, act_.data(), M, w, true, nullptr, y, y32);
    } else if (fp8) {
      if (!x.q8 || !x.scale)
        fail("linear: FP8 on a {} weight needs quantized activations", to_string(lw.format));
      const uint8_t* q = ptr<uint8_t>(*x.q8, size_t(M * K), "linear q8");
      const float* lut = cpu::e4m3_values();
      for (int64_t i = 0; i < M * K; ++i) act_[i] = lut[q[i]];
      cpu::gemm(pool_, act_.data(), M, w, true, ptr<float>(*x.scale, size_t(M), "linear scale"), y,
                y32);
    } else {  // FP16 (FP8 baseline weights: weights-only, gemm decodes their E4M3 bytes)
      if (!x.f16) fail("linear: an FP16 linear needs fp16 activations");
      const uint16_t* a = ptr<uint16_t>(*x.f16, size_t(M * K), "linear x");
      pool_.parallel_for(
          M, [&](int64_t m, int) { cpu::fp16_to_f32(a + m * K, act_.data() + m * K, K); });
      cpu::gemm(pool_, act_.data(), M, w, false, nullptr, y, y32);
    }
  }

  void rope(const Rope& r, Buffer& q, Buffer& k, int nq, int nkv, int hd) override {
    const auto& positions = step().positions;
    const auto& rp = static_cast<const CpuRope&>(r);
    if (hd != rp.head_dim) fail("rope: head_dim {} != {}", hd, rp.head_dim);
    const int64_t M = int64_t(positions.size());
    uint16_t* qp = ptr<uint16_t>(q, size_t(M * nq * hd), "rope q");
    uint16_t* kp = ptr<uint16_t>(k, size_t(M * nkv * hd), "rope k");
    const int half = hd / 2;
    pool_.parallel_for(M, [&](int64_t m, int) {
      thread_local std::vector<float> cs;
      cs.resize(size_t(hd));
      for (int i = 0; i < half; ++i) {
        const float f = rp.inv_freq[i] * float(positions[m]);  // fp32 product, as in HF
        cs[i] = fp16_to_float(float_to_fp16(float(std::cos(double(f)))));
        cs[half + i] = fp16_to_float(float_to_fp16(float(std::sin(double(f)))));
      }
      auto rot = [&](uint16_t* x) {
        for (int i = 0; i < half; ++i) {
          const float x1 = fp16_to_float(x[i]), x2 = fp16_to_float(x[i + half]);
          const float c = cs[i], s = cs[half + i];
          const auto r16 = [](float v) { return fp16_to_float(float_to_fp16(v)); };
          x[i] = float_to_fp16(r16(x1 * c) + r16(-x2 * s));
          x[i + half] = float_to_fp16(r16(x2 * c) + r16(x1 * s));
        }
      };
      for (int h = 0; h < nq; ++h) rot(qp + (m * nq + h) * hd);
      for (int h = 0; h < nkv; ++h) rot(kp + (m * nkv + h) * hd);
    });
  }

  void write_kv(KvCache& cache, int layer, const Buffer& k, const Buffer& v) override {
    const auto& slots = step().slots;
    auto& c = static_cast<CpuKvCache&>(cache);
    const auto& s = c.spec;
    if (layer < 0 || layer >= s.num_layers) fail("write_kv: layer {} out of range", layer);
    const size_t row = size_t(s.num_kv_heads) * s.head_dim;
    const uint16_t* kp = ptr<uint16_t>(k, slots.size() * row, "write_kv k");
    const uint16_t* vp = ptr<uint16_t>(v, slots.size() * row, "write_kv v");
    for (size_t m = 0; m < slots.size(); ++m) {
      const int32_t block = slots[m] / kKvBlockSize, off = slots[m] % kKvBlockSize;
      if (slots[m] < 0 || block >= s.num_blocks)
        fail("write_kv: slot {} outside the cache", slots[m]);
      for (int h = 0; h < s.num_kv_heads; ++h) {
        std::memcpy(&c.k[layer][c.offset(block, h, off)], kp + m * row + size_t(h) * s.head_dim,
                    size_t(s.head_dim) * 2);
        std::memcpy(&c.v[layer][c.offset(block, h, off)], vp + m * row + size_t(h) * s.head_dim,
                    size_t(s.head_dim) * 2);
      }
    }
  }

  void attention(const KvCache& cache, int layer, const Buffer& q, int nq, float softmax_scale,
                 Buffer& out) override {
    const std::vector<AttentionSeq>& seqs = attn_seqs_;
    const auto& c = static_cast<const CpuKvCache&>(cache);
    const auto& s = c.spec;
    const int hd = s.head_dim, nkv = s.num_kv_heads;
    if (nq % nkv) fail("attention: {} query heads not a multiple of {} kv heads", nq, nkv);
    const int group = nq / nkv;
    int64_t M = 0;
    for (const auto& sq : seqs) {
      M = std::max<int64_t>(M, sq.q_begin + sq.q_len);
      const int64_t ctx = int64_t(sq.start_pos) + sq.q_len;
      if (int64_t(sq.block_table.size()) * kKvBlockSize < ctx)
        fail("attention: block table of {} blocks cannot hold {} tokens", sq.block_table.size(),
             ctx);
      for (int64_t b = 0; b < (ctx + kKvBlockSize - 1) / kKvBlockSize; ++b)
        if (sq.block_table[b] < 0 || sq.block_table[b] >= s.num_blocks)
          fail("attention: block id {} outside the cache ({} blocks)", sq.block_table[b],
               s.num_blocks);
    }
    const uint16_t* qp = ptr<uint16_t>(q, size_t(M * nq * hd), "attention q");
    uint16_t* op = ptr<uint16_t>(out, size_t(M * nq * hd), "attention out");
    const auto& kc = c.k[layer];
    const auto& vc = c.v[layer];

    // Tasks: (sequence, kv head, block of 64 queries). Each gathers its keys/values to fp32.
    constexpr int kQb = 64;
    struct Task {
      int seq, kvh, q0;
    };
    std::vector<Task> tasks;
    for (int i = 0; i < int(seqs.size()); ++i)
      for (int h = 0; h < nkv; ++h)
        for (int q0 = 0; q0 < seqs[i].q_len; q0 += kQb) tasks.push_back({i, h, q0});
    pool_.parallel_for(int64_t(tasks.size()), [&](int64_t ti, int) {
      const Task t = tasks[size_t(ti)];
      const AttentionSeq& sq = seqs[size_t(t.seq)];
      const int q1 = std::min(sq.q_len, t.q0 + kQb);
      const int64_t ctx = int64_t(sq.start_pos) + q1;  // causal: later keys are never needed
      thread_local std::vector<float> K, V, qf, sc, acc;
      K.resize(size_t(ctx * hd)), V.resize(size_t(ctx * hd)), qf.resize(size_t(hd)),
          sc.resize(size_t(ctx)), acc.resize(size_t(hd));
      for (int64_t j = 0; j < ctx; ++j) {
        const size_t o = c.offset(sq.block_table[j / kKvBlockSize], t.kvh, int(j % kKvBlockSize));
        cpu::fp16_to_f32(&kc[o], &K[size_t(j * hd)], hd);
        cpu::fp16_to_f32(&vc[o], &V[size_t(j * hd)], hd);
      }
      for (int i = t.q0; i < q1; ++i) {
        const int64_t n = int64_t(sq.start_pos) + i + 1;
        const int64_t row = sq.q_begin + i;
        for (int g = 0; g < group; ++g) {
          const int h = t.kvh * group + g;
          cpu::fp16_to_f32(qp + (row * nq + h) * hd, qf.data(), hd);
          float mx = -INFINITY;
          for (int64_t j = 0; j < n; ++j) {
            sc[j] = cpu::dot_f32(qf.data(), &K[size_t(j * hd)], hd) * softmax_scale;
            mx = std::max(mx, sc[j]);
          }
          float sum = 0.f;
          for (int64_t j = 0; j < n; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
          std::fill(acc.begin(), acc.end(), 0.f);
          for (int64_t j = 0; j < n; ++j) cpu::axpy_f32(sc[j], &V[size_t(j * hd)], acc.data(), hd);
          const float inv = 1.f / sum;
          uint16_t* o = op + (row * nq + h) * hd;
          for (int d = 0; d < hd; ++d) o[d] = float_to_fp16(acc[d] * inv);
        }
      }
    });
  }

  void silu_mul(const Buffer& gate, const Buffer& up, int64_t rows, int64_t cols,
                const NormOut& o) override {
    const size_t n = size_t(rows * cols);
    const uint16_t* g = ptr<uint16_t>(gate, n, "silu gate");
    const uint16_t* u = ptr<uint16_t>(up, n, "silu up");
    Outputs out(o, rows, cols);
    pool_.parallel_for(rows, [&](int64_t r, int) {
      out.write_row(r, [&](uint16_t* y) { silu_mul_row(g + r * cols, u + r * cols, cols, y); });
    });
  }

  void silu_mul_fused(const Buffer& gate_up, int64_t rows, int64_t cols,
                      const NormOut& o) override {
    const uint16_t* g = ptr<uint16_t>(gate_up, size_t(rows * cols * 2), "silu gate_up");
    Outputs out(o, rows, cols);
    pool_.parallel_for(rows, [&](int64_t r, int) {
      const uint16_t* row = g + r * cols * 2;
      out.write_row(r, [&](uint16_t* y) { silu_mul_row(row, row + cols, cols, y); });
    });
  }

  void split_columns(const Buffer& x, int64_t rows, std::span<const ColumnPart> parts) override {
    int64_t width = 0;
    for (const ColumnPart& p : parts) {
      if (!p.dst || p.cols <= 0) fail("split_columns: a part without a buffer or columns");
      width += p.cols;
    }
    const uint16_t* src = ptr<uint16_t>(x, size_t(rows * width), "split_columns x");
    std::vector<uint16_t*> dst;
    for (const ColumnPart& p : parts) {
      dst.push_back(ptr<uint16_t>(*p.dst, size_t(rows * p.cols), "split_columns part"));
      if (static_cast<const void*>(dst.back()) == static_cast<const void*>(src))
        fail("split_columns: a part is the source buffer");
    }
    pool_.parallel_for(rows, [&](int64_t r, int) {
      const uint16_t* row = src + r * width;
      for (size_t i = 0; i < parts.size(); row += parts[i].cols, ++i)
        std::memcpy(dst[i] + r * parts[i].cols, row, size_t(parts[i].cols) * 2);
    });
  }

  static void silu_mul_row(const uint16_t* g, const uint16_t* u, int64_t n, uint16_t* o) {
    for (int64_t i = 0; i < n; ++i)
      o[i] = float_to_fp16(fp16_to_float(float_to_fp16(silu(fp16_to_float(g[i])))) *
                           fp16_to_float(u[i]));
  }

  void add(Buffer& x, const Buffer& y, int64_t n) override {
    uint16_t* xp = ptr<uint16_t>(x, size_t(n), "add x");
    const uint16_t* yp = ptr<uint16_t>(y, size_t(n), "add y");
    for (int64_t i = 0; i < n; ++i)
      xp[i] = float_to_fp16(fp16_to_float(xp[i]) + fp16_to_float(yp[i]));
  }

  void gather_logit_rows(const Buffer& src, int64_t cols, int64_t row_begin, int64_t rows,
                         Buffer& dst) override {
    const auto& lr = step().logit_rows;
    if (row_begin < 0 || row_begin + rows > int64_t(lr.size()))
      fail("gather_logit_rows: rows outside the step");
    const size_t src_rows = src.bytes() / (size_t(cols) * 2);
    const uint16_t* s = ptr<uint16_t>(src, 0, "gather src");
    uint16_t* d = ptr<uint16_t>(dst, size_t(rows * cols), "gather dst");
    for (int64_t i = 0; i < rows; ++i) {
      const int32_t r = lr[size_t(row_begin + i)];
      if (r < 0 || size_t(r) >= src_rows) fail("gather_logit_rows: row {} out of range", r);
      std::memmove(d + i * cols, s + int64_t(r) * cols, size_t(cols) * 2);
    }
  }

  // fp16 lm_head output widened to float, as an fp16 Hugging Face model returns its logits.
  void logits(const LinearWeight& lm_head, const Buffer& x, int64_t M, Buffer& out) override {
    const int64_t N = lm_head.out_features;
    if (!out_buf_ || out_buf_->bytes() < size_t(M * N) * 2) out_buf_ = alloc(size_t(M * N) * 2);
    linear(Precision::FP16, lm_head, Activation{&x}, M, *out_buf_);
    const uint16_t* y = ptr<uint16_t>(*out_buf_, size_t(M * N), "logits");
    float* o = ptr<float>(out, size_t(M * N), "logits out");
    pool_.parallel_for(M, [&](int64_t m, int) { cpu::fp16_to_f32(y + m * N, o + m * N, N); });
  }

  void sample_enqueue(const Buffer& logits, int64_t vocab, int64_t row_begin,
                      int64_t rows) override {
    const StepLayout& L = step();
    const float* lp = ptr<float>(logits, size_t(rows * vocab), "sample logits");
    std::vector<SampledToken>& res = pending_;
    res.clear();
    for (size_t i = 0; i < L.sample_rows.size(); ++i) {
      const int64_t r = L.sample_rows[i] - row_begin;
      if (r < 0 || r >= rows) continue;
      // Penalties apply to a copy of the row: the logits buffer stays raw (log-probs, downloads).
      res.push_back(sample_row(std::span<const float>(lp + r * vocab, size_t(vocab)),
                               L.penalties(i), L.sampling[i], L.uniforms[i], L.top_logprobs[i],
                               penalized_, cand_));
    }
  }
  std::vector<SampledToken> sample_collect(int64_t, int64_t) override {
    return std::move(pending_);
  }

 protected:
  // Every op has finished when it returns, so the host clock times the ops themselves.
  void start_profile() override { marks_.clear(); }
  void record_mark(const char* op) override { marks_.push_back({op, Clock::now()}); }
  std::vector<OpTime> finish_profile() override {
    std::vector<std::pair<const char*, double>> seg;
    for (size_t i = 0; i + 1 < marks_.size(); ++i)
      seg.push_back({marks_[i].first, std::chrono::duration<double, std::milli>(
                                          marks_[i + 1].second - marks_[i].second)
                                          .count()});
    marks_.clear();
    return sum_segments(seg);
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::vector<std::pair<const char*, Clock::time_point>> marks_;
  const StepLayout& step() const {
    if (!step_) fail("cpu backend: an op that reads the step layout ran before begin_step");
    return *step_;
  }

  ThreadPool pool_;
  std::vector<float> act_;
  BufferPtr out_buf_;
  const StepLayout* step_ = nullptr;
  std::vector<AttentionSeq> attn_seqs_;
  std::vector<std::pair<float, int32_t>> cand_;
  std::vector<float> penalized_;
  std::vector<SampledToken> pending_;  // computed by sample_enqueue (the host is the device)
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  return std::make_unique<CpuBackend>(threads);
}

}  // namespace nestedfp::backend
