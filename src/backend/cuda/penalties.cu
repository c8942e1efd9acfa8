// Penalties, logit bias and the min_tokens mask on the device (nestedfp/penalties.hpp): one block
// per sampled row walks its sparse lists. Bias entries first, then (after a barrier, as a token
// may be in both lists) the seen-token entries; each entry is one thread's read-modify-write,
// which is safe because a token appears once per list. Every operation is an explicitly rounded
// fp32 intrinsic, so nvcc cannot contract it into an FMA and the result equals the host rule.
#include <cstdint>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"

namespace nestedfp::cuda {
namespace {

constexpr int kThreads = 256;

// Logits row of sampled row i within the buffer, or nullptr when it lies outside it.
__device__ float* row_of(float* logits, int V, int row_begin, int rows, const PenaltyBatch& b,
                         int i) {
  const int r = b.rows[i] - row_begin;
  return r < 0 || r >= rows ? nullptr : logits + int64_t(r) * V;
}

__global__ void apply_kernel(float* logits, int V, int row_begin, int rows, PenaltyBatch b) {
  const int i = blockIdx.x;
  float* x = row_of(logits, V, row_begin, rows, b, i);
  if (!x) return;  // the whole block leaves: no barrier is skipped by part of it
  const int total_pen = b.pen_indptr[b.num_rows];
  for (int j = b.bias_indptr[i] + threadIdx.x; j < b.bias_indptr[i + 1]; j += blockDim.x) {
    const int t = b.bias_tokens[j];
    const float v = x[t];
    b.saved[total_pen + j] = v;
    x[t] = __fadd_rn(v, b.bias_values[j]);
  }
  __syncthreads();
  const float rep = b.factors[3 * i], freq = b.factors[3 * i + 1], pres = b.factors[3 * i + 2];
  for (int j = b.pen_indptr[i] + threadIdx.x; j < b.pen_indptr[i + 1]; j += blockDim.x) {
    const int t = b.pen_tokens[j], c = b.pen_counts[j];
    float v = x[t];
    b.saved[j] = v;
    if (c > 0 || b.pen_in_prompt[j]) v = v > 0.f ? __fdiv_rn(v, rep) : __fmul_rn(v, rep);
    if (c > 0) {
      v = __fsub_rn(v, __fmul_rn(__int2float_rn(c), freq));
      v = __fsub_rn(v, pres);
    }
    x[t] = v;
  }
}

// The reverse order of apply_kernel: seen-token entries get their post-bias values back, then
// bias entries their raw values.
__global__ void restore_kernel(float* logits, int V, int row_begin, int rows, PenaltyBatch b) {
  const int i = blockIdx.x;
  float* x = row_of(logits, V, row_begin, rows, b, i);
  if (!x) return;
  for (int j = b.pen_indptr[i] + threadIdx.x; j < b.pen_indptr[i + 1]; j += blockDim.x)
    x[b.pen_tokens[j]] = b.saved[j];
  __syncthreads();
  const int total_pen = b.pen_indptr[b.num_rows];
  for (int j = b.bias_indptr[i] + threadIdx.x; j < b.bias_indptr[i + 1]; j += blockDim.x)
    x[b.bias_tokens[j]] = b.saved[total_pen + j];
}

void check(const char* op, float* logits, int V, int rows, const PenaltyBatch& b) {
  if (V <= 0 || rows < 0 || b.num_rows < 0)
    cuda_fail(op, ": bad shape (V ", V, ", rows ", rows, ", sampled rows ", b.num_rows, ")");
  if (!logits || !b.rows || !b.factors || !b.pen_indptr || !b.pen_tokens || !b.pen_counts ||
      !b.pen_in_prompt || !b.bias_indptr || !b.bias_tokens || !b.bias_values || !b.saved)
    cuda_fail(op, ": null pointer in the logits or the penalty batch");
}

}  // namespace

void apply_penalties(float* logits, int V, int row_begin, int rows, const PenaltyBatch& b,
                     cudaStream_t stream) {
  if (b.num_rows == 0 || rows == 0) return;
  check("apply_penalties", logits, V, rows, b);
  apply_kernel<<<unsigned(b.num_rows), kThreads, 0, stream>>>(logits, V, row_begin, rows, b);
  NFP_CUDA_CHECK_LAUNCH();
}

void restore_penalized(float* logits, int V, int row_begin, int rows, const PenaltyBatch& b,
                       cudaStream_t stream) {
  if (b.num_rows == 0 || rows == 0) return;
  check("restore_penalized", logits, V, rows, b);
  restore_kernel<<<unsigned(b.num_rows), kThreads, 0, stream>>>(logits, V, row_begin, rows, b);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
