#pragma once
// The backend interface (docs/DESIGN.md §3.2-3.3): the ops of a Llama-family forward, implemented
// once per device (cpu reference, cuda). Everything the ops touch lives in backend-owned buffers
// and handles; shapes are passed explicitly. The step's index arrays (token ids, positions,
// slots, block tables, sampling parameters) are handed over once per step (begin_step); a device
// backend uploads them once and every op reads them there.
//
// Numerics every backend follows (the cpu backend is the reference):
//  - activations are FP16 where an FP16 Hugging Face model holds them (linear outputs, norm
//    outputs, residual stream, q/k/v after RoPE, attention output, SiLU*mul);
//  - FP16 linear: FP16 operands, FP32 accumulation, FP16 output;
//  - FP8 linear (weights with E4M3 bytes: nested or FP8): activations quantized per token to
//    E4M3 with scale_m = rowmax_m / 448 (q = RNE_e4m3(x / scale_m), saturating), weights = E4M3
//    bytes, FP32 accumulation, epilogue * scale_m * s_r with one fp32 factor per output row:
//    s_r = 2^-k_r * 2^-8 for the nested upper plane, max-abs scale for the FP8 baselines;
//    plain FP16 weights run the FP16 linear in both precisions;
//  - FP8 baseline weights (WeightFormat::FP8) have no FP16 copy: FP16 steps run them with fp16
//    activations x dequantized weights (weights-only FP8).
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "nestedfp/penalties.hpp"
#include "nestedfp/sampler.hpp"
#include "nestedfp/step.hpp"

namespace nestedfp::format {
struct NestedTensor;
struct Fp8Tensor;
}  // namespace nestedfp::format

namespace nestedfp::backend {

// Opaque device memory.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual size_t bytes() const = 0;
};
using BufferPtr = std::unique_ptr<Buffer>;

// How a linear weight is held on the device.
enum class WeightFormat {
  FP16,    // plain FP16: runs FP16 in both precisions
  Nested,  // upper + lower planes: exact FP16, or FP8 from the upper plane
  FP8,     // E4M3 bytes + per-row fp32 scale only (the FP8 baselines)
};
const char* to_string(WeightFormat f);

// A linear layer's weight, prepared for the device (planes tiled, fp16 copied, ...).
class LinearWeight {
 public:
  virtual ~LinearWeight() = default;
  int64_t out_features = 0, in_features = 0;
  WeightFormat format = WeightFormat::FP16;
  bool has_bias = false;
  size_t bytes = 0;  // memory the backend holds for it (planes, row scales, fp16 copy, bias)
  // FP8 steps run this weight as an FP8 GEMM (so its input is quantized per token).
  bool runs_fp8() const { return format != WeightFormat::FP16; }
};

// Values the loader hands to the backend without a host copy: generated on the device
// (--load-format dummy) as fp16(mean + std * N(0, 1)), a pure function of (seed, index).
struct RandomFill {
  float mean = 0.f, std = 0.02f;
  uint64_t seed = 0;
};

// How a raw fp16 weight should be stored: the backend nests it (splitting on its own device),
// quantizes it to an FP8 baseline, or keeps it plain.
enum class RawStorage { Nested, Plain, Fp8PerTensor, Fp8PerChannel };

// Host description of a linear weight [out, in] (HF layout). Exactly one of nested / fp8 /
// fp16 / raw16 / random.
struct LinearSpec {
  int64_t out_features = 0, in_features = 0;
  const format::NestedTensor* nested = nullptr;  // split on the host already
  const format::Fp8Tensor* fp8 = nullptr;
  const uint16_t* fp16 = nullptr;  // plain fp16 bits [out, in], kept plain
  // Raw fp16 bits (or random values) that the backend stores as `storage` says; a Nested weight
  // with a row that cannot be nested stays plain FP16 (LinearWeight::format tells).
  const uint16_t* raw16 = nullptr;
  const RandomFill* random = nullptr;
  RawStorage storage = RawStorage::Nested;
  bool channel_scale = false;      // Nested: per-row 2^k scales (--nested-scale channel)
  const uint16_t* bias = nullptr;  // optional fp16 bits [out]
};

// Input of a linear: fp16 activations and/or their per-token E4M3 quantization.
// FP16 (and plain weights) read `f16`; FP8 on nested/FP8 weights reads `q8` + `scale`, or, when
// only `f16` is given, runs weights-only FP8 (fp16 activations x E4M3 weights; an accuracy mode).
struct Activation {
  const Buffer* f16 = nullptr;    // fp16 [M, K]
  const Buffer* q8 = nullptr;     // e4m3 bytes [M, K]
  const Buffer* scale = nullptr;  // float [M]
};

struct RopeSpec {
  int head_dim = 0;
  double theta = 10000.0;
  std::string scaling = "default";  // default | llama3 | linear
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};
class Rope {
 public:
  virtual ~Rope() = default;
};

struct KvCacheSpec {
  int num_layers = 0, num_blocks = 0, num_kv_heads = 0, head_dim = 0;
  int num_q_heads = 0;  // of the attention that reads it (device backends plan for it)
  // Tokens per block: always kKvBlockSize (step.hpp).
};
class KvCache {
 public:
  virtual ~KvCache() = default;
  KvCacheSpec spec;
};

// The layout of one engine step, built once on the host by the model runner and handed to the
// backend once (begin_step), which keeps it where its ops read it (device memory on a GPU). The
// ops that need per-token or per-sequence indices (embedding, rope, write_kv, attention,
// gather_logit_rows, sample) read the current step's layout instead of taking host arrays.
struct StepLayout {
  std::vector<int32_t> ids;        // [T] token ids
  std::vector<int32_t> positions;  // [T]
  std::vector<int32_t> slots;      // [T] KV slot = block * kKvBlockSize + offset
  // Attention in CSR form: sequence s owns query rows [q_indptr[s], q_indptr[s+1]) and blocks
  // kv_indices[kv_indptr[s] .. kv_indptr[s+1]); its context (this step's tokens included) is
  // (blocks - 1) * kKvBlockSize + kv_last_page_len[s] tokens; query row i sits at position
  // context - q_len + i and attends causally.
  std::vector<int32_t> q_indptr, kv_indptr, kv_indices, kv_last_page_len;
  int max_q_len = 0, max_kv_len = 0;
  // A decode step padded to a CUDA-graph batch size: every sequence one query, and the attention
  // plan must keep the launch shape that graph replays depend on.
  bool graph = false;
  std::vector<int32_t> logit_rows;  // [R] rows of the step whose logits are computed
  // Rows (indices into logit_rows) that sample a token, with their parameters and uniform draws.
  std::vector<int32_t> sample_rows;
  std::vector<SamplingParams> sampling;  // parallel to sample_rows
  std::vector<double> uniforms;          // parallel to sample_rows (ignored when greedy)
  std::vector<int32_t> top_logprobs;     // parallel to sample_rows: < 0 none, else alternatives
  // Penalties of the sampled rows (penalties.hpp) in CSR form, parallel to sample_rows: row i's
  // seen tokens are penalty_tokens[penalty_indptr[i] .. penalty_indptr[i+1]) with their output
  // counts and prompt flags, its bias entries bias_tokens / bias_values[bias_indptr[i] ..
  // bias_indptr[i+1]); penalty_factors[i] = {repetition, frequency, presence}. The backend applies
  // them to the logits it samples from; log-probs stay those of the raw logits.
  std::vector<std::array<float, 3>> penalty_factors;
  std::vector<int32_t> penalty_indptr, penalty_tokens, penalty_counts;
  std::vector<uint8_t> penalty_in_prompt;
  std::vector<int32_t> bias_indptr, bias_tokens;
  std::vector<float> bias_values;
  bool has_penalties() const { return !penalty_tokens.empty() || !bias_tokens.empty(); }
  // Row i's penalty inputs (i < sample_rows.size()).
  PenaltyView penalties(size_t i) const;
  int64_t tokens() const { return int64_t(ids.size()); }
  int num_seqs() const { return q_indptr.empty() ? 0 : int(q_indptr.size()) - 1; }
};

// One destination of Backend::split_columns: the next `cols` columns, as a dense fp16
// [rows, cols].
struct ColumnPart {
  Buffer* dst = nullptr;
  int64_t cols = 0;
};

// Optional outputs of the fused normalisations: fp16 `out` and/or its per-token E4M3
// quantization `q8` + `scale`.
struct NormOut {
  Buffer* out = nullptr;
  Buffer* q8 = nullptr;
  Buffer* scale = nullptr;
};

// Per-op profiling (`bench engine`, docs/MEASURING.md §5.5): time of one op kind summed over
// the marks that opened it.
struct OpTime {
  std::string op;
  double ms = 0;
  int64_t segments = 0;
};
// Memory a backend allocated for itself (workspaces, staging), as opposed to the buffers it
// handed out through alloc / create_*.
struct MemoryItem {
  std::string what;
  size_t bytes = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual bool is_gpu() const { return false; }
  // The CUDA device ordinal of a GPU backend (-1 otherwise).
  virtual int device_ordinal() const { return -1; }
  // Makes the calling thread run on this backend's device; a tensor-parallel rank's worker
  // thread calls it before anything else (a no-op on the cpu backend).
  virtual void bind_thread() {}

  // ---- memory -------------------------------------------------------------------------------
  virtual BufferPtr alloc(size_t bytes) = 0;
  virtual void upload(Buffer& dst, const void* src, size_t bytes, size_t dst_offset = 0) = 0;
  virtual void download(void* dst, const Buffer& src, size_t bytes, size_t src_offset = 0) = 0;
  // fp16 values of `random` into n elements of dst (dummy weights).
  virtual void fill_random(Buffer& dst, int64_t n, const RandomFill& random) = 0;
  // Device memory still free, and in all (0, 0 on the cpu backend: no device budget).
  virtual std::pair<size_t, size_t> memory_info() const { return {0, 0}; }

  virtual std::unique_ptr<LinearWeight> create_linear(const LinearSpec& spec) = 0;
  virtual std::unique_ptr<Rope> create_rope(const RopeSpec& spec) = 0;
  virtual std::unique_ptr<KvCache> create_kv_cache(const KvCacheSpec& spec) = 0;

  // Buffers for the step layout of up to max_tokens tokens, max_seqs sequences, max_blocks
  // blocks in all block tables, max_rows logits rows. Called once, before the first begin_step.
  virtual void reserve_steps(int64_t max_tokens, int max_seqs, int64_t max_blocks,
                             int max_rows) = 0;
  // Makes `layout` the current step's (one upload on a device backend). Validated by the caller.
  virtual void begin_step(const StepLayout& layout) = 0;

  // ---- ops (all activations fp16 unless stated; index arrays from the current step) ----------
  // out[i] = table[ids[i]]; table fp16 [vocab, hidden].
  virtual void embedding(const Buffer& table, int64_t vocab, int64_t hidden, Buffer& out) = 0;
  // HF LlamaRMSNorm: y = fp16(w * fp16(x * rsqrt(mean(x^2) + eps))), statistics in fp32, on
  // x [rows, cols], w fp16 [cols]. With `residual`, first residual = fp16(x + residual) and the
  // norm reads the new residual (the fused pre-norm residual add of a decoder layer). Writes
  // y to o.out and/or its per-token E4M3 quantization to o.q8 / o.scale. o.out may alias x.
  virtual void rmsnorm(const Buffer& x, Buffer* residual, const Buffer& w, int64_t rows,
                       int64_t cols, float eps, const NormOut& o) = 0;
  // Standalone per-token E4M3 quantization of fp16 x [rows, cols].
  virtual void quantize(const Buffer& x, int64_t rows, int64_t cols, Buffer& q8, Buffer& scale) = 0;
  // The two halves of quantize, for a tensor-parallel rank that holds a slice of each row: the
  // per-token scales of its slice (scale[r] = max|x[r, :]| / 448, as quantize computes them),
  // then, once the ranks have taken the max of their scales, the E4M3 values of the slice under
  // the given (whole-row) scales. token_scales then quantize_scaled on a whole row give
  // quantize's bits.
  virtual void token_scales(const Buffer& x, int64_t rows, int64_t cols, Buffer& scale) = 0;
  virtual void quantize_scaled(const Buffer& x, int64_t rows, int64_t cols, const Buffer& scale,
                               Buffer& q8) = 0;
  // out[M, N] = x[M, K] · Wᵀ (+ bias), in `precision` (see the numerics note above).
  virtual void linear(Precision precision, const LinearWeight& w, const Activation& x, int64_t M,
                      Buffer& out) = 0;
  // The FP8 linear in two halves, for a tensor-parallel rank's partial sum of a row-parallel
  // linear (docs/DESIGN.md §3.14): acc fp32 [M, N] = x · Wᵀ on the E4M3 values before the
  // per-token and per-row scales (constant factors are the backend's own: only finish_acc reads
  // acc), which the ranks sum in fp32; then out fp16 [M, N] = linear()'s epilogue on the summed
  // accumulators (the scales, one rounding). The two on one rank
  // give linear()'s output up to the accumulation order (fp32 on the cpu; on Hopper the FP8
  // tensor cores' own). FP8 steps on weights with an E4M3 plane and no bias only.
  virtual void linear_acc(const LinearWeight& w, const Activation& x, int64_t M, Buffer& acc) = 0;
  virtual void finish_acc(const LinearWeight& w, const Activation& x, int64_t M, const Buffer& acc,
                          Buffer& out) = 0;
  // In place on q [T, nq, hd] and k [T, nkv, hd] (neox/HF rotate_half layout) at the step's
  // positions.
  virtual void rope(const Rope& rope, Buffer& q, Buffer& k, int nq, int nkv, int head_dim) = 0;
  // Stores k, v [T, nkv, hd] of layer `layer` at the step's slots.
  virtual void write_kv(KvCache& cache, int layer, const Buffer& k, const Buffer& v) = 0;
  // Causal GQA attention of q [T, nq, hd] over the paged cache; out [T, nq, hd].
  virtual void attention(const KvCache& cache, int layer, const Buffer& q, int nq,
                         float softmax_scale, Buffer& out) = 0;
  // y = fp16(fp16(silu(gate)) * up), gate/up [rows, cols], into o.out and/or o.q8 / o.scale.
  virtual void silu_mul(const Buffer& gate, const Buffer& up, int64_t rows, int64_t cols,
                        const NormOut& o) = 0;
  // The same on a fused gate_up output [rows, 2 * cols]: gate = columns [0, cols) of each row,
  // up = columns [cols, 2 * cols).
  virtual void silu_mul_fused(const Buffer& gate_up, int64_t rows, int64_t cols,
                              const NormOut& o) = 0;
  // Copies fp16 x [rows, sum of parts' cols] apart by columns, in order: part i gets the next
  // parts[i].cols columns of every row (a fused qkv output into q, k, v). Bit copies.
  virtual void split_columns(const Buffer& x, int64_t rows, std::span<const ColumnPart> parts) = 0;
  // x = fp16(x + y), n elements (residual add).
  virtual void add(Buffer& x, const Buffer& y, int64_t n) = 0;
  // dst[i] = src[logit_rows[row_begin + i]] for i < rows, rows of `cols` fp16 values.
  virtual void gather_logit_rows(const Buffer& src, int64_t cols, int64_t row_begin, int64_t rows,
                                 Buffer& dst) = 0;
  // Logits of fp16 x [M, K] through the (fp16) lm_head, as float [M, N] in `out` (device).
  virtual void logits(const LinearWeight& lm_head, const Buffer& x, int64_t M, Buffer& out) = 0;
  // Samples the step's sample_rows that fall in logits rows [row_begin, row_begin + rows) from
  // logits float [rows, vocab] (row r of the buffer is logits row row_begin + r), on the device;
  // returns one result per such sample row, in order (the only device-to-host transfer of a
  // serving step). In two halves so that the first can be captured in a CUDA graph:
  // sample_enqueue queues the sampling; sample_collect waits for it and returns the results.
  virtual void sample_enqueue(const Buffer& logits, int64_t vocab, int64_t row_begin,
                              int64_t rows) = 0;
  virtual std::vector<SampledToken> sample_collect(int64_t row_begin, int64_t rows) = 0;
  std::vector<SampledToken> sample(const Buffer& logits, int64_t vocab, int64_t row_begin,
                                   int64_t rows) {
    sample_enqueue(logits, vocab, row_begin, rows);
    return sample_collect(row_begin, rows);
  }

  // ---- CUDA graphs (decode steps, docs/DESIGN.md §3.3) -----------------------------------------
  // Between graph_capture_begin and graph_capture_end(key) the ops are recorded, not run; they
  // must not synchronize or copy to the host. graph_replay(key) runs the recording again over the
  // same buffers (the step layout uploaded by begin_step lives at fixed addresses).
  virtual bool supports_graphs() const { return false; }
  virtual void graph_capture_begin() {}
  virtual void graph_capture_end(int64_t key) { (void)key; }
  virtual bool graph_replay(int64_t key) { return (void)key, false; }

  // Waits for queued work (no-op on the cpu backend).
  virtual void synchronize() {}

  // ---- memory the backend keeps for itself ----------------------------------------------------
  virtual std::vector<MemoryItem> workspace_memory() const { return {}; }

  // ---- per-op profiling ---------------------------------------------------------------------
  // profile_mark(op) attributes the time from here to the next mark to `op` (a string literal:
  // the pointer is kept; nullptr attributes the time that follows to nothing). Off by default,
  // when it costs one branch; while on, the runner runs every step eagerly (no CUDA graphs), and
  // the cuda backend records a CUDA event from a pool it allocated in profile_begin (never while
  // capturing a graph), the cpu backend reads a host clock. Time between marks is wall time on
  // the device's timeline, so gaps where the device waits for the host count for the op after.
  void profile_mark(const char* op) {
    if (profiling_ && op != profile_op_) profile_op_ = op, record_mark(op);
  }
  bool profiling() const { return profiling_; }
  void profile_begin() {
    start_profile();
    profiling_ = true, profile_op_ = nullptr;
  }
  // Waits for queued work and returns the time per op since profile_begin, in first-mark order.
  std::vector<OpTime> profile_end() {
    profile_mark(nullptr);
    profiling_ = false;
    return finish_profile();
  }

 protected:
  virtual void start_profile() {}
  virtual void record_mark(const char* op) { (void)op; }
  virtual std::vector<OpTime> finish_profile() { return {}; }

 private:
  bool profiling_ = false;
  const char* profile_op_ = nullptr;
};

// Sums timed segments (op, ms) by op (nullptr segments dropped), in first-appearance order.
std::vector<OpTime> sum_segments(const std::vector<std::pair<const char*, double>>& segments);

// Inverse frequencies of RoPE [head_dim / 2] as transformers computes them in fp32, with the
// scaling of `spec` (default | llama3 | linear). Throws Error for other scalings.
std::vector<float> rope_inv_freq(const RopeSpec& spec);

// The cpu reference backend. threads <= 0: NESTEDFP_THREADS or the number of cores.
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

// Which backend serve / generate / eval run on.
struct BackendOptions {
  std::string device = "auto";  // auto (cuda when a usable GPU is present) | cpu | cuda
  int cpu_threads = 0;          // cpu backend threads (0: NESTEDFP_THREADS or all cores)
  int gpu = 0;                  // CUDA device ordinal
  // GEMM kernel table of the cuda backend (src/backend/kernel_table.hpp): a file, "auto" (the
  // table shipped for this GPU, if any) or "none" (the heuristics). The commands default to auto;
  // the struct to none, so that tests and libraries choose kernels reproducibly.
  std::string kernel_table = "none";
};
// Throws Error when the device is unknown, cuda was asked for in a build without CUDA, there is
// no GPU, or the GPU is not Hopper (sm_90): the message says what to do.
std::unique_ptr<Backend> make_backend(const BackendOptions& options);
// What make_backend(auto) would pick, and why (for logs and --help).
std::string describe_auto_device();

}  // namespace nestedfp::backend
