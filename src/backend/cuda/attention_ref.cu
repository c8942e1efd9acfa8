// Reference paged attention: plain and obviously correct rather than fast. The fallback for head
// dims FlashInfer is not built for, and the kernel the FlashInfer path is tested against.
//
// One block per (query row, query head). Each warp walks every nwarps-th key of the row's causal
// context, keeping its own online-softmax state (running max m, sum l, weighted V sum acc) in
// fp32; the warps' states are merged at the end. Lane L holds dims L, L+32, ... of q and acc.
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"

namespace nestedfp::cuda {
namespace {

constexpr int kMaxHeadDim = 256;
constexpr int kWarps = 4;
constexpr int kPerLane = kMaxHeadDim / 32;

__global__ void __launch_bounds__(kWarps * 32)
    attention_ref_kernel(PagedKv cache, const __half* __restrict__ q, AttnBatch b, int nq,
                         int group, float scale, __half* __restrict__ out) {
  __shared__ float s_m[kWarps], s_l[kWarps];
  __shared__ float s_acc[kWarps][kMaxHeadDim];
  const int row = blockIdx.x, h = blockIdx.y, hd = cache.head_dim, nkv = cache.nkv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  // The sequence owning this row: the largest s with q_indptr[s] <= row (skips empty sequences).
  int lo = 0, hi = b.num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (b.q_indptr[mid] <= row)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int s = lo;
  const int q_begin = b.q_indptr[s], q_len = b.q_indptr[s + 1] - q_begin;
  const int p0 = b.kv_indptr[s], pages = b.kv_indptr[s + 1] - p0;
  const int kv_len = pages > 0 ? (pages - 1) * kPageSize + b.kv_last_page_len[s] : 0;
  // Causal: this row sits at position kv_len - q_len + i and sees keys [0, position].
  const int n = max(0, min(kv_len, kv_len - q_len + (row - q_begin) + 1));
  const int kvh = h / group;

  float qr[kPerLane], acc[kPerLane];
  const __half* qp = q + (int64_t(row) * nq + h) * hd;
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    qr[t] = d < hd ? __half2float(qp[d]) : 0.f;
    acc[t] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int j = warp; j < n; j += kWarps) {
    const int64_t page = b.kv_indices[p0 + j / kPageSize];
    const int64_t base = ((page * nkv + kvh) * kPageSize + j % kPageSize) * hd;
    const __half* kp = cache.k + base;
    const __half* vp = cache.v + base;
    float dot = 0.f;
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < hd) dot += qr[t] * __half2float(kp[d]);
    }
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    const float score = dot * scale;
    const float m_new = fmaxf(m, score);
    const float corr = expf(m - m_new);  // 0 on the first key (m = -inf)
    const float p = expf(score - m_new);
    l = l * corr + p;
#pragma unroll
    for (int t = 0; t < kPerLane; ++t) {
      const int d = lane + 32 * t;
      if (d < hd) acc[t] = acc[t] * corr + p * __half2float(vp[d]);
    }
    m = m_new;
  }
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int t = 0; t < kPerLane; ++t) {
    const int d = lane + 32 * t;
    if (d < hd) s_acc[warp][d] = acc[t];
  }
  __syncthreads();

  // Merge the warps: a warp that saw no key has m = -inf and contributes nothing.
  float M = -INFINITY;
  for (int w = 0; w < kWarps; ++w) M = fmaxf(M, s_m[w]);
  float L = 0.f, f[kWarps];
  for (int w = 0; w < kWarps; ++w) {
    f[w] = s_m[w] == -INFINITY ? 0.f : expf(s_m[w] - M);
    L += s_l[w] * f[w];
  }
  const float inv = L > 0.f ? 1.f / L : 0.f;  // no keys (inconsistent layout): zeros, not NaN
  __half* op = out + (int64_t(row) * nq + h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.f;
    for (int w = 0; w < kWarps; ++w) o += s_acc[w][d] * f[w];
    op[d] = __float2half_rn(o * inv);
  }
}

}  // namespace

void attention_reference(const PagedKv& cache, const __half* q, const AttnBatch& batch, int nq,
                         float softmax_scale, __half* out, cudaStream_t stream) {
  if (cache.head_dim <= 0 || cache.head_dim > kMaxHeadDim)
    cuda_fail("attention_reference: head_dim ", cache.head_dim, " outside [1, ", kMaxHeadDim, "]");
  if (cache.nkv <= 0 || nq <= 0 || nq % cache.nkv)
    cuda_fail("attention_reference: ", nq, " query heads must be a positive multiple of the ",
              cache.nkv, " kv heads");
  if (nq > 65535)
    cuda_fail("attention_reference: ", nq, " query heads exceed the grid limit 65535");
  if (!std::isfinite(softmax_scale)) cuda_fail("attention_reference: softmax_scale must be finite");
  if (batch.num_seqs < 0 || batch.total_q < 0)
    cuda_fail("attention_reference: negative batch layout (", batch.num_seqs, " sequences, ",
              batch.total_q, " rows)");
  if (batch.total_q == 0) return;
  if (batch.num_seqs == 0)
    cuda_fail("attention_reference: ", batch.total_q, " query rows but no sequence");
  if (!cache.k || !cache.v || !q || !out || !batch.q_indptr || !batch.kv_indptr ||
      !batch.kv_indices || !batch.kv_last_page_len)
    cuda_fail("attention_reference: null pointer (cache, q, out or a batch index array)");
  const dim3 grid(unsigned(batch.total_q), unsigned(nq));
  attention_ref_kernel<<<grid, kWarps * 32, 0, stream>>>(cache, q, batch, nq, nq / cache.nkv,
                                                         softmax_scale, out);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
