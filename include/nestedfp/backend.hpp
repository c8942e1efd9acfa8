#pragma once
// The backend interface (docs/DESIGN.md §3.2-3.3): the ops of a Llama-family forward, implemented
// once per device (cpu reference, cuda). Everything the ops touch lives in backend-owned buffers
// and handles; shapes are passed explicitly. Host-side index arrays (token ids, positions, slots,
// block tables) are passed as spans: a device backend copies them in.
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
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "nestedfp/step.hpp"

namespace nestedfp::format {
struct NestedTensor;
struct Fp8Tensor;
}

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
  // FP8 steps run this weight as an FP8 GEMM (so its input is quantized per token).
  bool runs_fp8() const { return format != WeightFormat::FP16; }
};

// Host description of a linear weight [out, in] (HF layout). Exactly one of nested / fp8 / fp16.
struct LinearSpec {
  int64_t out_features = 0, in_features = 0;
  const format::NestedTensor* nested = nullptr;
  const format::Fp8Tensor* fp8 = nullptr;
  const uint16_t* fp16 = nullptr;  // plain fp16 bits [out, in]
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
  // Tokens per block: always kKvBlockSize (step.hpp).
};
class KvCache {
 public:
  virtual ~KvCache() = default;
  KvCacheSpec spec;
};

// One sequence in a paged-attention call: its query rows are [q_begin, q_begin + q_len) of the
// batch, at positions start_pos ... start_pos + q_len - 1; keys/values of [0, start_pos + q_len)
// are in the cache (this step's were written by write_kv) at the blocks of block_table.
struct AttentionSeq {
  int32_t q_begin = 0, q_len = 0, start_pos = 0;
  std::span<const int32_t> block_table;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory -------------------------------------------------------------------------------
  virtual BufferPtr alloc(size_t bytes) = 0;
  virtual void upload(Buffer& dst, const void* src, size_t bytes, size_t dst_offset = 0) = 0;
  virtual void download(void* dst, const Buffer& src, size_t bytes, size_t src_offset = 0) = 0;

  virtual std::unique_ptr<LinearWeight> create_linear(const LinearSpec& spec) = 0;
  virtual std::unique_ptr<Rope> create_rope(const RopeSpec& spec) = 0;
  virtual std::unique_ptr<KvCache> create_kv_cache(const KvCacheSpec& spec) = 0;

  // ---- ops (all activations fp16 unless stated) ----------------------------------------------
  // out[i] = table[ids[i]]; table fp16 [vocab, hidden].
  virtual void embedding(const Buffer& table, int64_t vocab, int64_t hidden,
                         std::span<const int32_t> ids, Buffer& out) = 0;
  // out = fp16(w * fp16(x * rsqrt(mean(x^2) + eps))), statistics in fp32 (HF LlamaRMSNorm).
  // x [rows, cols], w fp16 [cols]. out may alias x.
  virtual void rmsnorm(const Buffer& x, const Buffer& w, int64_t rows, int64_t cols, float eps,
                       Buffer& out) = 0;
  // rmsnorm followed by per-token E4M3 quantization of its fp16 output (fused on devices).
  virtual void rmsnorm_quant(const Buffer& x, const Buffer& w, int64_t rows, int64_t cols,
                             float eps, Buffer& q8, Buffer& scale) = 0;
  // Standalone per-token E4M3 quantization of fp16 x [rows, cols].
  virtual void quantize(const Buffer& x, int64_t rows, int64_t cols, Buffer& q8,
                        Buffer& scale) = 0;
  // out[M, N] = x[M, K] · Wᵀ (+ bias), in `precision` (see the numerics note above).
  virtual void linear(Precision precision, const LinearWeight& w, const Activation& x, int64_t M,
                      Buffer& out) = 0;
  // In place on q [M, nq, hd] and k [M, nkv, hd] (neox/HF rotate_half layout).
  virtual void rope(const Rope& rope, Buffer& q, Buffer& k, std::span<const int32_t> positions,
                    int nq, int nkv, int head_dim) = 0;
  // Stores k, v [M, nkv, hd] of layer `layer` at cache slots (slot = block * kKvBlockSize + offset).
  virtual void write_kv(KvCache& cache, int layer, const Buffer& k, const Buffer& v,
                        std::span<const int32_t> slots) = 0;
  // Causal GQA attention of q [M, nq, hd] over the paged cache; out [M, nq, hd].
  virtual void attention(const KvCache& cache, int layer, const Buffer& q,
                         std::span<const AttentionSeq> seqs, int nq, float softmax_scale,
                         Buffer& out) = 0;
  // out = fp16(fp16(silu(gate)) * up), gate/up [rows, cols].
  virtual void silu_mul(const Buffer& gate, const Buffer& up, int64_t rows, int64_t cols,
                        Buffer& out) = 0;
  virtual void silu_mul_quant(const Buffer& gate, const Buffer& up, int64_t rows, int64_t cols,
                              Buffer& q8, Buffer& scale) = 0;
  // x = fp16(x + y), n elements (residual add).
  virtual void add(Buffer& x, const Buffer& y, int64_t n) = 0;
  // dst[i] = src[rows[i]] for rows of `cols` fp16 values.
  virtual void gather_rows(const Buffer& src, int64_t cols, std::span<const int32_t> rows,
                           Buffer& dst) = 0;
  // Logits of fp16 x [M, K] through the (fp16) lm_head, as float [M, N] on the host.
  virtual void logits(const LinearWeight& lm_head, const Buffer& x, int64_t M, float* out) = 0;
  // Waits for queued work (no-op on the cpu backend).
  virtual void synchronize() {}
};

// The cpu reference backend. threads <= 0: NESTEDFP_THREADS or the number of cores.
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace nestedfp::backend
