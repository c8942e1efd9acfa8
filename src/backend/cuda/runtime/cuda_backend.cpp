// The cuda backend (docs/DESIGN.md §3.3): the Backend interface over the Hopper kernels of
// kernels.hpp / ops.hpp, FlashInfer attention and cuBLAS. One stream; every op enqueues on it.
// The step layout arrives once per step as one host-to-device copy of a pinned blob whose
// sections sit at fixed offsets (reserve_steps), so device pointers never move between steps.
#include <cuda_runtime.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>

#include "backend/cuda/attention_flashinfer.hpp"
#include "backend/cuda/gemm_variant_sets.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"
#include "nestedfp/backend.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/format.hpp"

namespace nestedfp::backend {
namespace {

class CudaBuffer final : public Buffer {
 public:
  explicit CudaBuffer(size_t n) : n_(n) {
    const cudaError_t e = cudaMalloc(&p_, std::max<size_t>(n, 16));
    if (e != cudaSuccess) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      fail(
          "cuda backend: out of GPU memory allocating {:.1f} MiB ({:.1f} MiB free of {:.1f} MiB); "
          "lower "
          "--gpu-memory-utilization, --max-num-batched-tokens or --max-num-seqs, or use a smaller "
          "model",
          double(n) / (1 << 20), double(free_b) / (1 << 20), double(total_b) / (1 << 20));
    }
  }
  ~CudaBuffer() override { cudaFree(p_); }
  size_t bytes() const override { return n_; }
  void* data() const { return p_; }

 private:
  size_t n_;
  void* p_ = nullptr;
};

template <typename T = void>
T* dptr(const Buffer& b, size_t bytes, const char* what) {
  if (b.bytes() < bytes)
    fail("cuda backend: buffer for {} too small ({} < {} bytes)", what, b.bytes(), bytes);
  return static_cast<T*>(static_cast<const CudaBuffer&>(b).data());
}
const __half* h16(const Buffer& b, int64_t n, const char* what) {
  return dptr<const __half>(b, size_t(n) * 2, what);
}
__half* h16(Buffer& b, int64_t n, const char* what) { return dptr<__half>(b, size_t(n) * 2, what); }

class CudaLinear final : public LinearWeight {
 public:
  BufferPtr upper, lower, k, fp16, bias;
  // The kernel table's choices for this shape, resolved at load time (heuristic without one).
  ShapeDispatch pick16, pick8;
  cuda::NestedWeight nested() const {
    return {dptr<const uint8_t>(*upper, 0, "upper"), dptr<const uint8_t>(*lower, 0, "lower"),
            dptr<const int8_t>(*k, 0, "k"), int(out_features), int(in_features)};
  }
};

class CudaRope final : public Rope {
 public:
  BufferPtr inv_freq;
  int head_dim = 0;
};

class CudaKvCache final : public KvCache {
 public:
  std::vector<BufferPtr> k, v;  // per layer [num_blocks, nkv, 16, head_dim]
  cuda::PagedKv layer(int l) const {
    return {dptr<__half>(*k[size_t(l)], 0, "k cache"), dptr<__half>(*v[size_t(l)], 0, "v cache"),
            spec.num_blocks, spec.num_kv_heads, spec.head_dim};
  }
};

// Fixed sections of the per-step blob (int32 units), sized by reserve_steps.
struct BlobLayout {
  size_t ids, pos, slots, logit_rows, params, q_indptr, kv_indptr, kv_last, kv_indices, end;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int gpu, const std::string& kernel_table) : gpu_(gpu) {
    NFP_CUDA_CHECK(cudaSetDevice(gpu));
    const cuda::DeviceInfo d = cuda::device_info();
    name_ =
        fmt::format("cuda (GPU {}: {}, {} SMs, CUDA runtime {})", gpu, d.name, d.sms, d.runtime);
    dispatch_ = cuda::make_kernel_dispatch(kernel_table, d.name);  // may throw: before the stream
    NFP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (host_blob_) cudaFreeHost(host_blob_);
    if (host_pen_) cudaFreeHost(host_pen_);
    if (host_out_) cudaFreeHost(host_out_);
    cudaStreamDestroy(stream_);
  }
  std::string name() const override { return name_; }
  bool is_gpu() const override { return true; }
  int device_ordinal() const override { return gpu_; }
  void bind_thread() override { NFP_CUDA_CHECK(cudaSetDevice(gpu_)); }
  cudaStream_t stream() const { return stream_; }

  // ---- memory -------------------------------------------------------------------------------
  BufferPtr alloc(size_t bytes) override { return std::make_unique<CudaBuffer>(bytes); }
  void upload(Buffer& dst, const void* src, size_t bytes, size_t off = 0) override {
    auto* d = dptr<uint8_t>(dst, off + bytes, "upload");
    NFP_CUDA_CHECK(cudaMemcpyAsync(d + off, src, bytes, cudaMemcpyHostToDevice, stream_));
    NFP_CUDA_CHECK(cudaStreamSynchronize(stream_));  // src may be freed when this returns
  }
  void download(void* dst, const Buffer& src, size_t bytes, size_t off = 0) override {
    const auto* s = dptr<const uint8_t>(src, off + bytes, "download");
    NFP_CUDA_CHECK(cudaMemcpyAsync(dst, s + off, bytes, cudaMemcpyDeviceToHost, stream_));
    NFP_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void fill_random(Buffer& dst, int64_t n, const RandomFill& r) override {
    __half* p = h16(dst, n, "fill_random");
    if (r.std == 0.f)
      cuda::fill_constant(p, n, r.mean, stream_);
    else if (r.mean == 0.f)
      cuda::fill_normal(p, n, r.std, r.seed, stream_);
    else
      fail("cuda backend: random fill with both a mean and a std is not supported");
  }
  std::pair<size_t, size_t> memory_info() const override {
    size_t free_b = 0, total_b = 0;
    NFP_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return {free_b, total_b};
  }

  std::unique_ptr<LinearWeight> create_linear(const LinearSpec& s) override;

  std::unique_ptr<Rope> create_rope(const RopeSpec& s) override {
    auto r = std::make_unique<CudaRope>();
    const std::vector<float> f = rope_inv_freq(s);
    r->head_dim = s.head_dim;
    r->inv_freq = alloc(f.size() * 4);
    upload(*r->inv_freq, f.data(), f.size() * 4);
    return r;
  }

  std::unique_ptr<KvCache> create_kv_cache(const KvCacheSpec& s) override {
    auto c = std::make_unique<CudaKvCache>();
    c->spec = s;
    const size_t per_layer = size_t(s.num_blocks) * s.num_kv_heads * kKvBlockSize * s.head_dim * 2;
    for (int l = 0; l < s.num_layers; ++l)
      c->k.push_back(alloc(per_layer)), c->v.push_back(alloc(per_layer));
    const int nq = s.num_q_heads > 0 ? s.num_q_heads : s.num_kv_heads;
    if (cuda::FlashInferAttention::supports(nq, s.num_kv_heads, s.head_dim)) {
      // Graph plans for decode batches up to max_seqs (the runner's largest graph bucket).
      fi_ = std::make_unique<cuda::FlashInferAttention>(nq, s.num_kv_heads, s.head_dim,
                                                        int(max_tokens_), max_seqs_, max_seqs_);
      spdlog::info("cuda backend: FlashInfer FA2 paged attention (head_dim {}, {} q / {} kv heads)",
                   s.head_dim, nq, s.num_kv_heads);
    } else {
      spdlog::warn(
          "cuda backend: FlashInfer has no kernel for head_dim {} ({} q / {} kv heads); using the "
          "reference "
          "attention kernel (slow)",
          s.head_dim, nq, s.num_kv_heads);
    }
    return c;
  }

  // ---- the step -----------------------------------------------------------------------------
  void reserve_steps(int64_t max_tokens, int max_seqs, int64_t max_blocks, int max_rows) override {
    max_tokens_ = max_tokens, max_seqs_ = max_seqs, max_rows_ = max_rows;
    static_assert(sizeof(cuda::SampleParams) % 4 == 0);
    const size_t T = size_t(max_tokens), S = size_t(max_seqs),
                 R = size_t(std::max<int64_t>(max_rows, max_tokens));
    BlobLayout& b = blob_;
    b.ids = 0, b.pos = b.ids + T, b.slots = b.pos + T, b.logit_rows = b.slots + T,
    b.params = b.logit_rows + R;
    b.q_indptr = b.params + R * (sizeof(cuda::SampleParams) / 4);
    b.kv_indptr = b.q_indptr + S + 1, b.kv_last = b.kv_indptr + S + 1, b.kv_indices = b.kv_last + S;
    b.end = b.kv_indices + size_t(max_blocks);
    NFP_CUDA_CHECK(cudaMallocHost(&host_blob_, b.end * 4));
    dev_blob_ = alloc(b.end * 4);
    const size_t out_bytes = size_t(max_rows) * (4 + 4 + cuda::kMaxTopLogprobs * 8);
    NFP_CUDA_CHECK(cudaMallocHost(&host_out_, out_bytes));
    dev_out_ = alloc(out_bytes);
    staging_.reset();  // loading is over: no FP16 copy of a nested weight stays on the GPU
  }

  void begin_step(const StepLayout& L) override;

  // ---- ops ----------------------------------------------------------------------------------
  void embedding(const Buffer& table, int64_t vocab, int64_t hidden, Buffer& out) override {
    cuda::embedding(h16(table, vocab * hidden, "embedding table"), hidden, blob<int32_t>(blob_.ids),
                    int(T_), h16(out, T_ * hidden, "embedding out"), stream_);
  }
  void rmsnorm(const Buffer& x, Buffer* residual, const Buffer& w, int64_t rows, int64_t cols,
               float eps, const NormOut& o) override {
    const int64_t n = rows * cols;
    cuda::rmsnorm(h16(x, n, "rmsnorm x"), cols, h16(w, cols, "rmsnorm weight"), eps, int(rows),
                  int(cols), o.out ? h16(*o.out, n, "rmsnorm out") : nullptr,
                  o.q8 ? dptr<uint8_t>(*o.q8, size_t(n), "q8") : nullptr,
                  o.q8 ? dptr<float>(*o.scale, size_t(rows) * 4, "scale") : nullptr, stream_,
                  residual ? h16(*residual, n, "residual") : nullptr);
  }
  void quantize(const Buffer& x, int64_t rows, int64_t cols, Buffer& q8, Buffer& scale) override {
    cuda::quantize_e4m3_per_token(h16(x, rows * cols, "quantize x"), cols, int(rows), int(cols),
                                  dptr<uint8_t>(q8, size_t(rows * cols), "q8"),
                                  dptr<float>(scale, size_t(rows) * 4, "scale"), stream_);
  }
  void token_scales(const Buffer& x, int64_t rows, int64_t cols, Buffer& scale) override {
    cuda::token_scales_e4m3(h16(x, rows * cols, "token_scales x"), cols, int(rows), int(cols),
                            dptr<float>(scale, size_t(rows) * 4, "scale"), stream_);
  }
  void quantize_scaled(const Buffer& x, int64_t rows, int64_t cols, const Buffer& scale,
                       Buffer& q8) override {
    cuda::quantize_e4m3_scaled(h16(x, rows * cols, "quantize_scaled x"), cols, int(rows), int(cols),
                               dptr<const float>(scale, size_t(rows) * 4, "scale"),
                               dptr<uint8_t>(q8, size_t(rows * cols), "q8"), stream_);
  }
  void linear(Precision precision, const LinearWeight& lw, const Activation& x, int64_t M,
              Buffer& out) override;
  void linear_acc(const LinearWeight& lw, const Activation& x, int64_t M, Buffer& acc) override;
  void finish_acc(const LinearWeight& lw, const Activation& x, int64_t M, const Buffer& acc,
                  Buffer& out) override;
  void rope(const Rope& r, Buffer& q, Buffer& k, int nq, int nkv, int hd) override {
    const auto& rp = static_cast<const CudaRope&>(r);
    if (hd != rp.head_dim) fail("rope: head_dim {} != {}", hd, rp.head_dim);
    cuda::rope_inplace(h16(q, T_ * nq * hd, "rope q"), h16(k, T_ * nkv * hd, "rope k"),
                       blob<int32_t>(blob_.pos), dptr<float>(*rp.inv_freq, 0, "inv_freq"), int(T_),
                       nq, nkv, hd, stream_);
  }
  void write_kv(KvCache& cache, int layer, const Buffer& k, const Buffer& v) override {
    const auto& c = static_cast<CudaKvCache&>(cache);
    const int64_t n = T_ * c.spec.num_kv_heads * c.spec.head_dim;
    cuda::write_kv(c.layer(layer), h16(k, n, "write_kv k"), h16(v, n, "write_kv v"),
                   blob<int32_t>(blob_.slots), int(T_), stream_);
  }
  void attention(const KvCache& cache, int layer, const Buffer& q, int nq, float scale,
                 Buffer& out) override {
    const auto& c = static_cast<const CudaKvCache&>(cache);
    const int64_t n = T_ * nq * c.spec.head_dim;
    if (fi_)
      fi_->run(c.layer(layer), h16(q, n, "attention q"), batch_, scale,
               h16(out, n, "attention out"), stream_);
    else
      cuda::attention_reference(c.layer(layer), h16(q, n, "attention q"), batch_, nq, scale,
                                h16(out, n, "attention out"), stream_);
  }
  void silu_mul(const Buffer& gate, const Buffer& up, int64_t rows, int64_t cols,
                const NormOut& o) override {
    const int64_t n = rows * cols;
    cuda::silu_mul(h16(gate, n, "silu gate"), h16(up, n, "silu up"), cols, int(rows), int(cols),
                   o.out ? h16(*o.out, n, "silu out") : nullptr,
                   o.q8 ? dptr<uint8_t>(*o.q8, size_t(n), "q8") : nullptr,
                   o.q8 ? dptr<float>(*o.scale, size_t(rows) * 4, "scale") : nullptr, stream_);
  }
  void silu_mul_fused(const Buffer& gate_up, int64_t rows, int64_t cols,
                      const NormOut& o) override {
    const int64_t n = rows * cols;
    const __half* g = h16(gate_up, 2 * n, "silu gate_up");
    cuda::silu_mul(g, g + cols, 2 * cols, int(rows), int(cols),
                   o.out ? h16(*o.out, n, "silu out") : nullptr,
                   o.q8 ? dptr<uint8_t>(*o.q8, size_t(n), "q8") : nullptr,
                   o.q8 ? dptr<float>(*o.scale, size_t(rows) * 4, "scale") : nullptr, stream_);
  }
  void split_columns(const Buffer& x, int64_t rows, std::span<const ColumnPart> parts) override {
    if (parts.empty() || parts.size() > size_t(cuda::kMaxColumnParts))
      fail("split_columns: {} parts (1 to {})", parts.size(), cuda::kMaxColumnParts);
    __half* dst[cuda::kMaxColumnParts] = {};
    int64_t widths[cuda::kMaxColumnParts] = {}, width = 0;
    for (size_t i = 0; i < parts.size(); ++i) {
      if (!parts[i].dst) fail("split_columns: part {} has no buffer", i);
      dst[i] = h16(*parts[i].dst, rows * parts[i].cols, "split_columns part");
      widths[i] = parts[i].cols, width += parts[i].cols;
    }
    cuda::split_columns(h16(x, rows * width, "split_columns x"), int(rows), int(parts.size()), dst,
                        widths, stream_);
  }
  void add(Buffer& x, const Buffer& y, int64_t n) override {
    cuda::add_inplace(h16(x, n, "add x"), h16(y, n, "add y"), n, stream_);
  }
  void gather_logit_rows(const Buffer& src, int64_t cols, int64_t row_begin, int64_t rows,
                         Buffer& dst) override {
    if (row_begin < 0 || row_begin + rows > R_) fail("gather_logit_rows: rows outside the step");
    cuda::gather_rows(h16(src, 0, "gather src"), cols, blob<int32_t>(blob_.logit_rows) + row_begin,
                      int(rows), h16(dst, rows * cols, "gather dst"), stream_);
  }
  void logits(const LinearWeight& lm, const Buffer& x, int64_t M, Buffer& out) override {
    const auto& w = static_cast<const CudaLinear&>(lm);
    if (!w.fp16) fail("cuda backend: the lm_head must be a plain FP16 weight");
    cuda::cublas_fp16_gemm_f32out(
        h16(*w.fp16, w.out_features * w.in_features, "lm_head"), int(w.out_features),
        int(w.in_features), h16(x, M * w.in_features, "logits x"),
        dptr<float>(out, size_t(M * w.out_features) * 4, "logits out"), int(M), stream_);
  }
  void sample_enqueue(const Buffer& logits, int64_t vocab, int64_t row_begin,
                      int64_t rows) override;
  std::vector<SampledToken> sample_collect(int64_t row_begin, int64_t rows) override;
  // Graphs need FlashInfer's graph-mode plan (the reference kernel's grid depends on lengths).
  bool supports_graphs() const override { return fi_ != nullptr; }
  void graph_capture_begin() override;
  void graph_capture_end(int64_t key) override;
  bool graph_replay(int64_t key) override;
  void synchronize() override { NFP_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  std::vector<MemoryItem> workspace_memory() const override;

 protected:
  void start_profile() override;
  void record_mark(const char* op) override;
  std::vector<OpTime> finish_profile() override;

 private:
  template <typename T>
  T* blob(size_t offset) const {
    return reinterpret_cast<T*>(dptr<int32_t>(*dev_blob_, 0, "step blob") + offset);
  }
  void upload_penalties(const StepLayout& L);

  int gpu_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<KernelDispatch> dispatch_;  // --kernel-table, resolved per weight shape
  BufferPtr staging_;  // fp16 of one weight while loading (split on the GPU into the planes)
  int64_t max_tokens_ = 0, T_ = 0, R_ = 0;
  int max_seqs_ = 0, max_rows_ = 0;
  BlobLayout blob_{};
  int32_t* host_blob_ = nullptr;
  BufferPtr dev_blob_, dev_out_;
  uint8_t* host_out_ = nullptr;
  cuda::AttnBatch batch_{};
  std::unique_ptr<cuda::FlashInferAttention> fi_;
  const StepLayout* step_ = nullptr;
  void scan_sample_rows(int64_t row_begin, int64_t rows);
  int pending_top_ = -1;  // of the sample rows being sampled (scan_sample_rows)
  bool pending_any_ = false;
  std::map<int64_t, cudaGraphExec_t> graphs_;
  bool capturing_ = false;
  // Profiling (Backend::profile_mark): events created once, in the first profile_begin.
  std::vector<cudaEvent_t> events_;
  std::vector<const char*> event_ops_;  // op of each recorded event
  bool profile_overflow_ = false;
  // The sampled rows' penalty lists (penalties.hpp): their own pinned/device pair, laid out per
  // step and grown on demand, apart from the step blob so that its addresses (which graphs
  // replay) never move. Steps with penalties never run as graphs (ModelRunner::graph_batch).
  int32_t* host_pen_ = nullptr;
  BufferPtr dev_pen_;
  size_t pen_room_ = 0;             // int32 units of both
  cuda::PenaltyBatch penalties_{};  // this step's; num_rows 0 when no row has any
};

std::unique_ptr<LinearWeight> CudaBackend::create_linear(const LinearSpec& s) {
  auto w = std::make_unique<CudaLinear>();
  const int64_t N = s.out_features, K = s.in_features, n = N * K;
  w->out_features = N, w->in_features = K;
  if (s.fp8 || s.storage == RawStorage::Fp8PerTensor || s.storage == RawStorage::Fp8PerChannel)
    fail(
        "cuda backend: FP8 baseline weights (fp8-per-tensor/-channel) run on the cpu backend only "
        "(--device cpu)");
  if (s.nested) {
    const auto& t = *s.nested;
    if (t.rows != N || t.cols != K)
      fail("create_linear: nested tensor is {}x{}, expected {}x{}", t.rows, t.cols, N, K);
    w->upper = alloc(size_t(n)), w->lower = alloc(size_t(n));
    upload(*w->upper, t.upper.data(), size_t(n));
    upload(*w->lower, t.lower.data(), size_t(n));
    // The FP8 GEMM's epilogue always reads k (all zero for --nested-scale none).
    w->k = alloc(size_t(N));
    if (!t.k.empty())
      upload(*w->k, t.k.data(), size_t(N));
    else
      NFP_CUDA_CHECK(cudaMemsetAsync(dptr<void>(*w->k, size_t(N), "k"), 0, size_t(N), stream_));
    w->format = WeightFormat::Nested;
  } else if (s.fp16 || ((s.raw16 || s.random) && s.storage == RawStorage::Plain)) {
    w->fp16 = alloc(size_t(n) * 2);
    if (s.fp16 || s.raw16)
      upload(*w->fp16, s.fp16 ? s.fp16 : s.raw16, size_t(n) * 2);
    else
      fill_random(*w->fp16, n, *s.random);
    w->format = WeightFormat::FP16;
  } else if (s.raw16 || s.random) {
    // Stream the fp16 values into the staging buffer and split them there.
    if (!staging_ || staging_->bytes() < size_t(n) * 2)
      staging_.reset(), staging_ = alloc(size_t(n) * 2);
    if (s.raw16)
      upload(*staging_, s.raw16, size_t(n) * 2);
    else
      fill_random(*staging_, n, *s.random);
    if (K % 16 || N % 8) {
      spdlog::warn(
          "cuda backend: a {}x{} weight does not meet the nested GEMMs' alignment (K % 16, N % 8); "
          "kept FP16",
          N, K);
    } else {
      // k is kept even without channel scales (all zero): the FP8 GEMM's epilogue reads it.
      w->upper = alloc(size_t(n)), w->lower = alloc(size_t(n)), w->k = alloc(size_t(N));
      int8_t* kd = dptr<int8_t>(*w->k, size_t(N), "k");
      const cuda::SplitStatus st =
          cuda::split_weight(h16(*staging_, n, "staging"), int(N), int(K), s.channel_scale,
                             dptr<uint8_t>(*w->upper, size_t(n), "upper"),
                             dptr<uint8_t>(*w->lower, size_t(n), "lower"), kd, stream_);
      if (st.ok) {
        w->format = WeightFormat::Nested;
      } else {
        w->upper.reset(), w->lower.reset(), w->k.reset();
      }
    }
    if (w->format !=
        WeightFormat::Nested) {  // not representable: plain FP16, copied off the staging buffer
      w->fp16 = alloc(size_t(n) * 2);
      NFP_CUDA_CHECK(cudaMemcpyAsync(dptr<void>(*w->fp16, 0, "fp16"),
                                     dptr<void>(*staging_, 0, "staging"), size_t(n) * 2,
                                     cudaMemcpyDeviceToDevice, stream_));
      w->format = WeightFormat::FP16;
    }
    NFP_CUDA_CHECK(cudaStreamSynchronize(stream_));
  } else {
    fail("create_linear: no weights given (nested, fp16, raw fp16 or random)");
  }
  if (w->format == WeightFormat::Nested) {
    w->pick16 = dispatch_->resolve(GemmFamily::Nfp16, int(N), int(K));
    w->pick8 = dispatch_->resolve(GemmFamily::Nfp8, int(N), int(K));
  }
  if (s.bias) {
    w->has_bias = true;
    w->bias = alloc(size_t(N) * 2);
    upload(*w->bias, s.bias, size_t(N) * 2);
  }
  for (const BufferPtr* b : {&w->upper, &w->lower, &w->k, &w->fp16, &w->bias})
    if (*b) w->bytes += (*b)->bytes();
  return w;
}

void CudaBackend::linear(Precision precision, const LinearWeight& lw, const Activation& x,
                         int64_t M, Buffer& out) {
  const auto& w = static_cast<const CudaLinear&>(lw);
  const int64_t N = w.out_features, K = w.in_features;
  __half* y = h16(out, M * N, "linear out");
  if (M == 0) return;
  if (w.format == WeightFormat::Nested && precision == Precision::FP8) {
    if (!x.q8 || !x.scale)
      fail(
          "cuda backend: FP8 linear needs per-token quantized activations (weights-only FP8 runs "
          "on the cpu backend)");
    // The same M picks the same variant when a graph is captured and when it is replayed.
    const cuda::GemmConfig cfg{w.pick8.variant(int(M))};
    cuda::nested_fp8_gemm(w.nested(), dptr<const uint8_t>(*x.q8, size_t(M * K), "linear q8"),
                          dptr<const float>(*x.scale, size_t(M) * 4, "linear scale"), y, int(M),
                          stream_, &cfg);
  } else {
    if (!x.f16) fail("cuda backend: an FP16 linear needs fp16 activations");
    const __half* a = h16(*x.f16, M * K, "linear x");
    if (w.format == WeightFormat::Nested) {
      const cuda::GemmConfig cfg{w.pick16.variant(int(M))};
      cuda::nested_fp16_gemm(w.nested(), a, y, int(M), stream_, &cfg);
    } else {
      cuda::cublas_fp16_gemm(h16(*w.fp16, N * K, "weight"), int(N), int(K), a, y, int(M), stream_);
    }
  }
  if (w.bias) cuda::add_bias_rows(y, h16(*w.bias, N, "bias"), int(M), int(N), stream_);
}

// The nested FP8 weight of a row-parallel partial sum (linear_acc / finish_acc), checked.
static const CudaLinear& row_parallel_fp8(const LinearWeight& lw, const Activation& x,
                                          const char* what) {
  const auto& w = static_cast<const CudaLinear&>(lw);
  if (w.format != WeightFormat::Nested)
    fail("cuda backend: {} runs nested weights only (this one is {})", what, to_string(w.format));
  if (!x.q8 || !x.scale)
    fail("cuda backend: {} is an FP8 linear and needs per-token quantized activations", what);
  if (w.bias) fail("cuda backend: {} on a weight with a bias (row-parallel ones have none)", what);
  return w;
}

void CudaBackend::linear_acc(const LinearWeight& lw, const Activation& x, int64_t M, Buffer& acc) {
  const CudaLinear& w = row_parallel_fp8(lw, x, "linear_acc");
  const int64_t N = w.out_features, K = w.in_features;
  float* y = dptr<float>(acc, size_t(M * N) * 4, "linear_acc out");
  if (M == 0) return;
  const bool lt = cuda::nested_fp8_gemm_acc(
      w.nested(), dptr<const uint8_t>(*x.q8, size_t(M * K), "linear q8"), y, int(M), stream_);
  static std::atomic<bool> warned{false};
  if (!lt && !warned.exchange(true))
    spdlog::warn(
        "cuBLASLt has no E4M3 x E4M3 -> FP32 kernel: the tensor-parallel FP8 partial sums run a "
        "plain CUDA GEMM (slow; --tp-fp8-numerics per-rank avoids it)");
}

void CudaBackend::finish_acc(const LinearWeight& lw, const Activation& x, int64_t M,
                             const Buffer& acc, Buffer& out) {
  const CudaLinear& w = row_parallel_fp8(lw, x, "finish_acc");
  const int64_t N = w.out_features;
  cuda::nested_fp8_finish(dptr<const float>(acc, size_t(M * N) * 4, "finish_acc acc"), w.nested().k,
                          dptr<const float>(*x.scale, size_t(M) * 4, "scale"),
                          h16(out, M * N, "finish_acc out"), int(M), int(N), stream_);
}

void CudaBackend::begin_step(const StepLayout& L) {
  if (!host_blob_) fail("cuda backend: begin_step before reserve_steps");
  const int64_t T = L.tokens(), R = int64_t(L.logit_rows.size());
  const int S = L.num_seqs();
  if (T > max_tokens_ || S > max_seqs_ || R > std::max<int64_t>(max_rows_, max_tokens_) ||
      L.kv_indices.size() > blob_.end - blob_.kv_indices)
    fail(
        "cuda backend: a step of {} tokens, {} sequences, {} blocks exceeds the reserved {} / {} / "
        "{}",
        T, S, L.kv_indices.size(), max_tokens_, max_seqs_, blob_.end - blob_.kv_indices);
  int32_t* h = host_blob_;
  NFP_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the previous step's copy has left the blob
  auto put = [&](size_t off, const std::vector<int32_t>& v) {
    std::memcpy(h + off, v.data(), v.size() * 4);
  };
  put(blob_.ids, L.ids), put(blob_.pos, L.positions), put(blob_.slots, L.slots),
      put(blob_.logit_rows, L.logit_rows);
  put(blob_.q_indptr, L.q_indptr), put(blob_.kv_indptr, L.kv_indptr),
      put(blob_.kv_last, L.kv_last_page_len);
  put(blob_.kv_indices, L.kv_indices);
  // Sampling parameters per logits row: the sampled rows' own, greedy for the others.
  auto* params = reinterpret_cast<cuda::SampleParams*>(h + blob_.params);
  for (int64_t r = 0; r < R; ++r) params[r] = cuda::SampleParams{};
  for (size_t i = 0; i < L.sample_rows.size(); ++i) {
    const SamplingParams& sp = L.sampling[i];
    params[L.sample_rows[i]] = {sp.temperature, sp.top_p, sp.top_k, float(L.uniforms[i])};
  }
  const size_t bytes = (blob_.kv_indices + L.kv_indices.size()) * 4;
  NFP_CUDA_CHECK(cudaMemcpyAsync(dptr<int32_t>(*dev_blob_, bytes, "step blob"), h, bytes,
                                 cudaMemcpyHostToDevice, stream_));
  upload_penalties(L);
  T_ = T, R_ = R, step_ = &L;
  batch_ = cuda::AttnBatch{S,
                           int(T),
                           L.max_q_len,
                           L.max_kv_len,
                           blob<int32_t>(blob_.q_indptr),
                           blob<int32_t>(blob_.kv_indptr),
                           blob<int32_t>(blob_.kv_indices),
                           blob<int32_t>(blob_.kv_last)};
  if (fi_ && S > 0)
    fi_->plan(L.q_indptr.data(), L.kv_indptr.data(), L.kv_last_page_len.data(), S, stream_,
              L.graph);
}

// Sections, int32 units: sample rows [n], factors [3n], pen_indptr [n+1], bias_indptr [n+1],
// seen tokens [P], their output counts [P], prompt flags [P bytes], bias tokens [B], bias values
// [B]; then device-only room where the kernel saves the logits it overwrites [P + B]. Called by
// begin_step after the stream synchronized: the previous step's copy has left the host buffer.
void CudaBackend::upload_penalties(const StepLayout& L) {
  penalties_ = cuda::PenaltyBatch{};
  if (!L.has_penalties()) return;
  if (L.graph) fail("cuda backend: internal: a graph step carries penalties");
  const size_t n = L.sample_rows.size(), P = L.penalty_tokens.size(), B = L.bias_tokens.size();
  const size_t rows = 0, factors = rows + n, pen_indptr = factors + 3 * n,
               bias_indptr = pen_indptr + n + 1, pen_tokens = bias_indptr + n + 1,
               pen_counts = pen_tokens + P, pen_flags = pen_counts + P,
               bias_tokens = pen_flags + (P + 3) / 4, bias_values = bias_tokens + B,
               saved = bias_values + B, need = saved + P + B;
  if (need > pen_room_) {  // grow: max(need, twice the room), 256 KiB at least
    const size_t room = std::max({need, 2 * pen_room_, size_t(1) << 16});
    int32_t* h = nullptr;
    NFP_CUDA_CHECK(cudaMallocHost(&h, room * 4));
    BufferPtr d;
    try {
      d = alloc(room * 4);
    } catch (...) {
      cudaFreeHost(h);
      throw;
    }
    if (host_pen_) cudaFreeHost(host_pen_);
    host_pen_ = h, dev_pen_ = std::move(d), pen_room_ = room;
  }
  int32_t* h = host_pen_;
  auto put = [&](size_t off, const void* src, size_t bytes) { std::memcpy(h + off, src, bytes); };
  static_assert(sizeof(L.penalty_factors[0]) == 12);
  put(rows, L.sample_rows.data(), n * 4), put(factors, L.penalty_factors.data(), n * 12);
  put(pen_indptr, L.penalty_indptr.data(), (n + 1) * 4);
  put(bias_indptr, L.bias_indptr.data(), (n + 1) * 4);
  put(pen_tokens, L.penalty_tokens.data(), P * 4), put(pen_counts, L.penalty_counts.data(), P * 4);
  put(pen_flags, L.penalty_in_prompt.data(), P);
  put(bias_tokens, L.bias_tokens.data(), B * 4), put(bias_values, L.bias_values.data(), B * 4);
  int32_t* d = dptr<int32_t>(*dev_pen_, saved * 4, "penalty lists");
  NFP_CUDA_CHECK(cudaMemcpyAsync(d, h, saved * 4, cudaMemcpyHostToDevice, stream_));
  penalties_ = {int(n),
                d + rows,
                reinterpret_cast<const float*>(d + factors),
                d + pen_indptr,
                d + pen_tokens,
                d + pen_counts,
                reinterpret_cast<const uint8_t*>(d + pen_flags),
                d + bias_indptr,
                d + bias_tokens,
                reinterpret_cast<const float*>(d + bias_values),
                reinterpret_cast<float*>(d + saved)};
}

// Whether the step's sample rows in [row_begin, row_begin + rows) exist and the most top
// log-probs they want: from the layout, so that a replayed graph (which runs no host code of
// sample_enqueue) is collected from its own step, not from the last eager one's.
void CudaBackend::scan_sample_rows(int64_t row_begin, int64_t rows) {
  const StepLayout& L = *step_;
  pending_top_ = -1, pending_any_ = false;
  for (size_t i = 0; i < L.sample_rows.size(); ++i)
    if (L.sample_rows[i] >= row_begin && L.sample_rows[i] < row_begin + rows) {
      pending_any_ = true;
      pending_top_ = std::max(pending_top_, L.top_logprobs[i]);
    }
}

void CudaBackend::sample_enqueue(const Buffer& logits, int64_t V, int64_t row_begin, int64_t rows) {
  scan_sample_rows(row_begin, rows);
  if (!pending_any_) return;
  const float* lg = dptr<const float>(logits, size_t(rows * V) * 4, "sample logits");
  auto* out = dptr<uint8_t>(*dev_out_, 0, "sample out");
  auto* tokens = reinterpret_cast<int32_t*>(out);
  auto* chosen_lp = reinterpret_cast<float*>(out + size_t(max_rows_) * 4);
  auto* top_ids = reinterpret_cast<int32_t*>(out + size_t(max_rows_) * 8);
  auto* top_lp =
      reinterpret_cast<float*>(out + size_t(max_rows_) * (8 + 4 * cuda::kMaxTopLogprobs));
  // Penalties change the rows in place for sampling only: what they overwrite is put back, so
  // log-probs (and any download of these logits) see the raw values, as on the cpu backend.
  float* raw = const_cast<float*>(lg);
  cuda::apply_penalties(raw, int(V), int(row_begin), int(rows), penalties_, stream_);
  cuda::sample_tokens(lg, int(rows), int(V), blob<cuda::SampleParams>(blob_.params) + row_begin,
                      tokens, nullptr, 0, stream_);
  cuda::restore_penalized(raw, int(V), int(row_begin), int(rows), penalties_, stream_);
  if (pending_top_ >= 0)
    cuda::logprobs_topn(lg, int(rows), int(V), tokens, pending_top_, chosen_lp, top_ids, top_lp,
                        stream_);
}

std::vector<SampledToken> CudaBackend::sample_collect(int64_t row_begin, int64_t rows) {
  const StepLayout& L = *step_;
  std::vector<SampledToken> res;
  scan_sample_rows(row_begin, rows);
  if (!pending_any_) return res;
  const int top = pending_top_, n = std::max(top, 0);
  // One copy back: tokens, and the log-probabilities when asked for.
  const size_t bytes =
      top >= 0 ? size_t(max_rows_) * (8 + 8 * cuda::kMaxTopLogprobs) : size_t(rows) * 4;
  NFP_CUDA_CHECK(cudaMemcpyAsync(host_out_, dptr<uint8_t>(*dev_out_, bytes, "sample out"), bytes,
                                 cudaMemcpyDeviceToHost, stream_));
  NFP_CUDA_CHECK(cudaStreamSynchronize(stream_));
  const auto* ht = reinterpret_cast<const int32_t*>(host_out_);
  const auto* hc = reinterpret_cast<const float*>(host_out_ + size_t(max_rows_) * 4);
  const auto* hi = reinterpret_cast<const int32_t*>(host_out_ + size_t(max_rows_) * 8);
  const auto* hl = reinterpret_cast<const float*>(host_out_ + size_t(max_rows_) *
                                                                  (8 + 4 * cuda::kMaxTopLogprobs));
  for (size_t i = 0; i < L.sample_rows.size(); ++i) {
    const int64_t r = L.sample_rows[i] - row_begin;
    if (r < 0 || r >= rows) continue;
    SampledToken t;
    t.token = ht[r];
    if (L.top_logprobs[i] >= 0) {
      LogprobInfo info;
      info.chosen = {t.token, hc[r]};
      for (int j = 0; j < L.top_logprobs[i]; ++j)
        info.top.push_back({hi[r * n + j], hl[r * n + j]});
      t.logprobs = std::move(info);
    }
    res.push_back(std::move(t));
  }
  return res;
}

void CudaBackend::graph_capture_begin() {
  // Thread-local: other threads (HTTP) never touch this stream; their CUDA calls stay legal.
  NFP_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
}

void CudaBackend::graph_capture_end(int64_t key) {
  cudaGraph_t g = nullptr;
  capturing_ = false;
  NFP_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  NFP_CUDA_CHECK(e);
  if (auto it = graphs_.find(key); it != graphs_.end()) cudaGraphExecDestroy(it->second);
  graphs_[key] = exec;
}

bool CudaBackend::graph_replay(int64_t key) {
  const auto it = graphs_.find(key);
  if (it == graphs_.end()) return false;
  NFP_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
  return true;
}

std::vector<MemoryItem> CudaBackend::workspace_memory() const {
  std::vector<MemoryItem> m = {
      {"step layout blob (device)", dev_blob_ ? dev_blob_->bytes() : 0},
      {"sampling outputs (device)", dev_out_ ? dev_out_->bytes() : 0},
      {"penalty lists (device, grown on demand)", dev_pen_ ? dev_pen_->bytes() : 0},
      {"FlashInfer workspaces (float + int)",
       fi_ ? fi_->float_workspace_bytes() + fi_->int_workspace_bytes() : 0},
      {"cuBLAS workspaces", cuda::cublas_workspace_bytes()},
      {"NestedFP16 GEMM stream-K workspaces", cuda::nested_fp16_workspace_bytes()},
      {"NestedFP8 GEMM workspace", cuda::nested_fp8_workspace_bytes()},
      {"weight staging (freed after loading)", staging_ ? staging_->bytes() : 0}};
  return m;
}

// 8192 events: about 19 eager decode steps of a 32-layer model (~13 marks per layer).
constexpr size_t kProfileEvents = 8192;

void CudaBackend::start_profile() {
  if (events_.empty()) {
    events_.resize(kProfileEvents);
    for (cudaEvent_t& e : events_) NFP_CUDA_CHECK(cudaEventCreate(&e));
    event_ops_.reserve(kProfileEvents);
  }
  event_ops_.clear();
  profile_overflow_ = false;
}

void CudaBackend::record_mark(const char* op) {
  if (capturing_) return;  // an event recorded now would become a node of the graph
  if (event_ops_.size() == events_.size()) {
    profile_overflow_ = true;
    return;
  }
  NFP_CUDA_CHECK(cudaEventRecord(events_[event_ops_.size()], stream_));
  event_ops_.push_back(op);
}

std::vector<OpTime> CudaBackend::finish_profile() {
  NFP_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (profile_overflow_)
    fail(
        "cuda backend: a profile took more than {} marks; call profile_end after fewer steps "
        "(one step per profile is the intended use)",
        events_.size());
  std::vector<std::pair<const char*, double>> seg;
  for (size_t i = 0; i + 1 < event_ops_.size(); ++i) {
    float ms = 0;
    NFP_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
    seg.push_back({event_ops_[i], double(ms)});
  }
  event_ops_.clear();
  return sum_segments(seg);
}

}  // namespace

std::string cuda_unusable_reason(int gpu) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return fmt::format("no usable CUDA GPU ({}: {})", cudaGetErrorName(e), cudaGetErrorString(e));
  }
  if (count == 0) return "no CUDA GPU found";
  if (gpu < 0 || gpu >= count)
    return fmt::format("GPU {} does not exist ({} GPU{} found)", gpu, count, count == 1 ? "" : "s");
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, gpu) != cudaSuccess)
    return fmt::format("cannot read the properties of GPU {}", gpu);
  if (p.major != 9 || p.minor != 0)
    return fmt::format(
        "GPU {} ({}) is sm_{}{}; the cuda backend's kernels are built for Hopper (sm_90a) only",
        gpu, p.name, p.major, p.minor);
  return "";
}

std::unique_ptr<Backend> make_cuda_backend(int gpu, const std::string& kernel_table) {
  return std::make_unique<CudaBackend>(gpu, kernel_table);
}

// For the NCCL communicator (nccl_communicator.cpp), which queues on the backend's stream.
cudaStream_t cuda_stream_of(Backend& be) {
  auto* c = dynamic_cast<CudaBackend*>(&be);
  if (!c) fail("internal: {} is not a cuda backend", be.name());
  return c->stream();
}
void* cuda_data_of(Buffer& b, size_t bytes) { return dptr<void>(b, bytes, "collective"); }

}  // namespace nestedfp::backend
