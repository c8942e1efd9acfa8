#pragma once
// Host API of the CUDA kernels the engine's forward needs besides the GEMMs and the fused
// norm/activation quantization of kernels.hpp: embedding, row gather, residual add, RoPE, paged
// KV writes, paged attention (a plain reference kernel and FlashInfer's FA2), penalties, sampling
// and log-probabilities on the device, random weights, and the copy-bandwidth floor.
//
// Conventions (as kernels.hpp): row-major tensors, all work enqueued on `stream`, nothing
// synchronizes or allocates device memory unless it says so (CUDA-graph capturable), every CUDA
// error and bad argument throws nestedfp::Error. Index arrays (ids, positions, slots, the batch
// layout) are device int32 arrays that the engine validated on the host before uploading them.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace nestedfp::cuda {

inline constexpr int kPageSize = 16;  // tokens per KV block (== nestedfp::kKvBlockSize)

// ---- rows ------------------------------------------------------------------------------------
// out[i, :] = table[ids[i], :] for i < M; table fp16 [vocab, hidden].
void embedding(const __half* table, int64_t hidden, const int32_t* ids, int M, __half* out,
               cudaStream_t stream);
// dst[i, :] = src[rows[i], :] for i < R, rows of `cols` fp16 values.
void gather_rows(const __half* src, int64_t cols, const int32_t* rows, int R, __half* dst,
                 cudaStream_t stream);
// y[m, n] = fp16(y[m, n] + bias[n]) for M rows of N (the q/k/v biases of qwen2).
void add_bias_rows(__half* y, const __half* bias, int M, int N, cudaStream_t stream);
// Copies x [M, sum of widths] apart by columns: dst[i] [M, widths[i]] gets the next widths[i]
// columns of every row (a fused qkv GEMM output into q, k, v). 1..kMaxColumnParts parts, each
// dst apart from x. 16-byte accesses when every width is a multiple of 8 and the pointers allow.
inline constexpr int kMaxColumnParts = 4;
void split_columns(const __half* x, int M, int nparts, __half* const* dst, const int64_t* widths,
                   cudaStream_t stream);
// x = fp16(x + y), n elements (fp32 sum, one rounding).
void add_inplace(__half* x, const __half* y, int64_t n, cudaStream_t stream);

// ---- RoPE (Hugging Face rotate_half / "neox" layout) -------------------------------------------
// In place on q [M, nq, head_dim] and k [M, nkv, head_dim]. inv_freq: device float [head_dim/2],
// computed on the host from the rope scaling (default | llama3 | linear) exactly as the cpu
// backend does (backend::rope_inv_freq, nestedfp/backend.hpp). Angle = fp32(inv_freq[i] *
// float(pos[m])); cos/sin of it rounded to fp16 (HF computes cos/sin in fp32 and casts them to the
// model dtype); out = fp16(fp16(x*cos) + fp16(rot(x)*sin)): each product rounded to fp16 as HF's
// fp16 tensor multiplies do, the sum in fp32 rounded once — the cpu backend's order, bit for bit.
// head_dim even, <= 1024.
void rope_inplace(__half* q, __half* k, const int32_t* pos, const float* inv_freq, int M, int nq,
                  int nkv, int head_dim, cudaStream_t stream);

// ---- paged KV cache --------------------------------------------------------------------------
// One layer's cache: K and V each [num_blocks, nkv, kPageSize, head_dim] fp16 ("HND", the cpu
// backend's layout and FlashInfer's QKVLayout::kHND).
struct PagedKv {
  __half* k = nullptr;
  __half* v = nullptr;
  int num_blocks = 0, nkv = 0, head_dim = 0;
};
// Stores k, v [M, nkv, head_dim] at slots[m] = block * kPageSize + offset.
void write_kv(const PagedKv& cache, const __half* k, const __half* v, const int32_t* slots, int M,
              cudaStream_t stream);

// The attention layout of one step, device arrays in FlashInfer's CSR form. Sequence s owns the
// query rows [q_indptr[s], q_indptr[s+1]) and the pages kv_indices[kv_indptr[s] .. kv_indptr[s+1]);
// its context is kv_len(s) = (pages - 1) * kPageSize + kv_last_page_len[s] tokens, this step's
// keys included (written by write_kv first). Query row i of s sits at position
// kv_len(s) - q_len(s) + i and attends causally to keys [0, that position].
struct AttnBatch {
  int num_seqs = 0;
  int total_q = 0;                            // q_indptr[num_seqs]
  int max_q_len = 0, max_kv_len = 0;          // maxima over the sequences (grid sizing)
  const int32_t* q_indptr = nullptr;          // [num_seqs + 1]
  const int32_t* kv_indptr = nullptr;         // [num_seqs + 1]
  const int32_t* kv_indices = nullptr;        // [kv_indptr[num_seqs]] block ids
  const int32_t* kv_last_page_len = nullptr;  // [num_seqs], 1..kPageSize
};

// Plain reference kernel (tests, and the fallback for head dims FlashInfer is not built for):
// out[M, nq, hd] = softmax(q·Kᵀ · scale) · V per head, GQA (head h reads kv head h / (nq/nkv)),
// scores, softmax and the weighted sum in fp32, out rounded to fp16 once. Any head_dim <= 256.
void attention_reference(const PagedKv& cache, const __half* q, const AttnBatch& batch, int nq,
                         float softmax_scale, __half* out, cudaStream_t stream);

// ---- sampling on the device -------------------------------------------------------------------
// Per logits row: temperature 0 = greedy (argmax, lowest id on ties). Otherwise the distribution
// of the cpu RequestSampler (sampler.hpp): keep the top_k largest logits (top_k <= 0: all), take
// softmax(logit / temperature) over them, keep the smallest set of most likely tokens whose mass
// reaches top_p, and pick by inverse CDF with the host-drawn uniform u in [0, 1). Tokens tied
// at a top-k / top-p boundary are all kept, and the CDF runs in token-id order, so a given u may
// pick another token than the cpu sampler does; the distribution is the same, and the result is
// a pure function of (logits, params): a seeded request is reproducible.
struct SampleParams {
  float temperature = 0.f;
  float top_p = 1.f;
  int top_k = 0;
  float u = 0.f;
};
// Threshold searches run over the logits in place: the workspace is 0 bytes today (callers still
// size it with this function, so a later kernel may use one). NaN logits count as -inf.
size_t sample_workspace_bytes(int R, int V);
// logits fp32 [R, V]; params device [R]; out device [R].
void sample_tokens(const float* logits, int R, int V, const SampleParams* params, int32_t* out,
                   void* workspace, size_t workspace_bytes, cudaStream_t stream);
// log_softmax of the raw logits (fp32 math): the chosen token's log-probability and the top_n
// (<= 20) most likely tokens, descending, lower id first on ties. Outputs device [R], [R, top_n].
// chosen and chosen_lp may both be null (no chosen token); ranks past V get id -1 and -inf.
inline constexpr int kMaxTopLogprobs = 20;
void logprobs_topn(const float* logits, int R, int V, const int32_t* chosen, int top_n,
                   float* chosen_lp, int32_t* top_ids, float* top_lp, cudaStream_t stream);

// ---- penalties, logit bias, min_tokens (nestedfp/penalties.hpp) --------------------------------
// The sampled rows' sparse penalty inputs, device arrays in CSR form: sampled row i reads logits
// row rows[i] of the step and owns the seen-token entries [pen_indptr[i], pen_indptr[i+1]) and
// the bias entries [bias_indptr[i], bias_indptr[i+1]). Token ids are within the vocabulary and
// unique within each list of a row (the host checked: entries are updated in parallel).
struct PenaltyBatch {
  int num_rows = 0;                        // sampled rows of the step
  const int32_t* rows = nullptr;           // [num_rows] logits row in the step
  const float* factors = nullptr;          // [num_rows][3]: repetition, frequency, presence
  const int32_t* pen_indptr = nullptr;     // [num_rows + 1]
  const int32_t* pen_tokens = nullptr;     // [P]
  const int32_t* pen_counts = nullptr;     // [P] occurrences in the output
  const uint8_t* pen_in_prompt = nullptr;  // [P] 1: the prompt holds the token
  const int32_t* bias_indptr = nullptr;    // [num_rows + 1]
  const int32_t* bias_tokens = nullptr;    // [B]
  const float* bias_values = nullptr;      // [B]
  float* saved = nullptr;                  // [P + B] device scratch: overwritten logits
};
// In place on logits fp32 [rows, V] holding step rows [row_begin, row_begin + rows): the rows of
// the batch that fall there get the rule of apply_penalties (the same fp32 operations in the same
// order, no contraction: bit-identical to the host), and the values they overwrite go to `saved`.
void apply_penalties(float* logits, int V, int row_begin, int rows, const PenaltyBatch& b,
                     cudaStream_t stream);
// Puts back what apply_penalties saved (the raw logits again, for log-probs and downloads).
void restore_penalized(float* logits, int V, int row_begin, int rows, const PenaltyBatch& b,
                       cudaStream_t stream);

// ---- lm_head -----------------------------------------------------------------------------------
// Y[M, N] fp32 = X[M, K] fp16 · W[N, K]ᵀ fp16, FP32 accumulation (cuBLAS, graph capturable).
void cublas_fp16_gemm_f32out(const __half* W, int N, int K, const __half* X, float* Y, int M,
                             cudaStream_t stream);

// ---- weights without files, and the bandwidth floor -------------------------------------------
// out[i] = fp16(std * N(0, 1)) from a counter-based generator: a pure function of (seed, i).
void fill_normal(__half* out, int64_t n, float std, uint64_t seed, cudaStream_t stream);
// out[i] = fp16(value).
void fill_constant(__half* out, int64_t n, float value, cudaStream_t stream);
// Device-to-device copy bandwidth in bytes/s over `bytes` (read + write counted once each, i.e.
// 2·bytes per copy), median of repeated copies. Allocates and synchronizes: not for hot paths.
double measure_copy_bandwidth(size_t bytes = size_t(2) << 30);

}  // namespace nestedfp::cuda
