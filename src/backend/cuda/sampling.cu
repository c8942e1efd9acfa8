// Token sampling and log-probabilities on the device, one block per logits row, no workspace.
//
// Sampling keeps the tokens whose logit is >= a threshold and draws by inverse CDF over them in
// token-id order:
//  - top-k threshold: the k-th largest logit, found exactly by a 4-pass radix select over
//    order-preserving 32-bit keys (integer histograms in shared memory);
//  - top-p threshold: the largest key whose "mass at or above it" reaches top_p of the top-k
//    mass, by binary search over keys with block-reduced sums;
//  - tokens tied at either threshold are all kept (ops.hpp).
// Every sum is a fixed-order block reduction, so the token is a pure function of (logits, params).
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"

namespace nestedfp::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kItems = 8;  // consecutive tokens per thread in the inverse-CDF scan

// NaN logits never win and get no probability: they are treated as -inf.
__device__ __forceinline__ float clean(float x) { return isnan(x) ? -INFINITY : x; }

// Monotone map float -> uint32 (a < b  <=>  key(a) < key(b), a == b  <=>  same key: -0 is read
// as +0); NaN maps to 0, below -inf.
__device__ __forceinline__ uint32_t key_of(float x) {
  if (isnan(x)) return 0u;
  const uint32_t b = x == 0.f ? 0u : __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Greedy pick and the row maximum: larger logit first, lower id on ties.
__device__ blk::ArgMax row_argmax(const float* x, int V, blk::ArgMax* scratch) {
  blk::ArgMax a{0.f, -1};
  for (int j = threadIdx.x; j < V; j += blockDim.x) {
    const float v = clean(x[j]);
    if (blk::better(v, j, a.v, a.i)) a = {v, j};
  }
  return blk::reduce_argmax(a, scratch);
}

// Key of the k-th largest logit (1 <= k <= V), exactly: most significant byte first, each pass
// histograms the next byte of the keys that share the bytes fixed so far.
__device__ uint32_t kth_largest_key(const float* x, int V, int k, int* hist, uint32_t* s_prefix,
                                    int* s_k) {
  uint32_t prefix = 0;
  int kk = k;  // rank still to find among the keys matching `prefix`
  for (int shift = 24; shift >= 0; shift -= 8) {
    const uint32_t hi_mask = shift == 24 ? 0u : (0xFFFFFFFFu << (shift + 8));
    for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
      const uint32_t key = key_of(x[j]);
      if ((key & hi_mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xFF], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int above = 0;  // keys matching prefix with a larger byte here
      for (int d = 255; d >= 0; --d) {
        if (above + hist[d] >= kk) {
          *s_prefix = prefix | (uint32_t(d) << shift);
          *s_k = kk - above;
          break;
        }
        above += hist[d];
      }
    }
    __syncthreads();
    prefix = *s_prefix;
    kk = *s_k;
    __syncthreads();  // everyone has read before thread 0 writes again
  }
  return prefix;
}

// Unnormalised probability of token j given the kept-set threshold.
__device__ __forceinline__ float weight(float x, uint32_t threshold, float mx, float inv_t) {
  return key_of(x) >= threshold && !isnan(x) ? expf((x - mx) * inv_t) : 0.f;
}

__device__ float kept_mass(const float* x, int V, uint32_t threshold, float mx, float inv_t,
                           float* scratch) {
  float s = 0.f;
  for (int j = threadIdx.x; j < V; j += blockDim.x) s += weight(x[j], threshold, mx, inv_t);
  return blk::reduce(s, 0.f, blk::Sum{}, scratch);
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const float* __restrict__ logits, int V, const SampleParams* __restrict__ params,
                  int32_t* __restrict__ out) {
  __shared__ blk::ArgMax s_arg[32];
  __shared__ float s_f[32];
  __shared__ int s_i[32];
  __shared__ int hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ int s_k;
  const int64_t row = blockIdx.x;
  const float* x = logits + row * V;
  const SampleParams p = params[row];

  const blk::ArgMax best = row_argmax(x, V, s_arg);
  // Greedy, nothing to sample from (every logit -inf/NaN), or a +inf logit (which takes all the
  // mass; exp(inf - inf) would be NaN): the argmax, lowest id on ties.
  if (!(p.temperature > 0.f) || isinf(best.v)) {
    if (threadIdx.x == 0) out[row] = best.i;
    return;
  }
  const float mx = best.v, inv_t = 1.f / p.temperature;

  uint32_t threshold = 0;  // keep everything
  if (p.top_k > 0 && p.top_k < V) threshold = kth_largest_key(x, V, p.top_k, hist, &s_prefix, &s_k);

  if (p.top_p < 1.f) {
    // Largest key T in [threshold, key(max)] with mass(T) >= top_p * mass(threshold). mass() is
    // non-increasing in T, and mass(threshold) is the very sum the target is taken from.
    const float target = p.top_p * kept_mass(x, V, threshold, mx, inv_t, s_f);
    uint32_t lo = threshold, hi = key_of(mx);
    while (lo < hi) {
      const uint32_t mid = lo + uint32_t((uint64_t(hi - lo) + 1) / 2);
      if (kept_mass(x, V, mid, mx, inv_t, s_f) >= target)
        lo = mid;
      else
        hi = mid - 1;
    }
    threshold = lo;
  }

  // Inverse CDF in token-id order: pass 0 sums the kept mass S chunk by chunk, pass 1 repeats the
  // identical running sums and stops at the first token whose cumulative mass exceeds u * S.
  constexpr int kChunk = kThreads * kItems;
  float total_mass = 0.f;
  int last_kept = best.i;  // fallback when rounding leaves u * S at or above the final sum
  for (int pass = 0; pass < 2; ++pass) {
    const float target = p.u * total_mass;
    float running = 0.f;
    for (int c0 = 0; c0 < V; c0 += kChunk) {
      const int j0 = c0 + threadIdx.x * kItems;
      float w[kItems], local = 0.f;
#pragma unroll
      for (int e = 0; e < kItems; ++e) {
        const int j = j0 + e;
        w[e] = j < V ? weight(x[j], threshold, mx, inv_t) : 0.f;
        local += w[e];
      }
      float chunk_total;
      const float incl = blk::inclusive_scan(local, &chunk_total, s_f);
      if (pass == 0) {
        int last = -1;
#pragma unroll
        for (int e = 0; e < kItems; ++e)
          if (w[e] > 0.f) last = j0 + e;
        last = blk::reduce(last, -1, blk::Max{}, s_i);
        if (last >= 0) last_kept = last;
      } else {
        float cum = running + (incl - local);
        int hit = INT32_MAX;
#pragma unroll
        for (int e = 0; e < kItems; ++e) {
          cum += w[e];
          if (w[e] > 0.f && cum > target && hit == INT32_MAX) hit = j0 + e;
        }
        hit = blk::reduce(hit, INT32_MAX, blk::Min{}, s_i);
        if (hit != INT32_MAX) {
          if (threadIdx.x == 0) out[row] = hit;
          return;
        }
      }
      running += chunk_total;
    }
    total_mass = running;
  }
  if (threadIdx.x == 0) out[row] = last_kept;
}

// True when token (v, j) comes after (pv, pi) in the order "larger first, lower id on ties".
__device__ __forceinline__ bool after(float v, int j, float pv, int pi) {
  return pi < 0 || v < pv || (v == pv && j > pi);
}

__global__ void __launch_bounds__(kThreads)
    logprobs_kernel(const float* __restrict__ logits, int V, const int32_t* __restrict__ chosen,
                    int top_n, float* __restrict__ chosen_lp, int32_t* __restrict__ top_ids,
                    float* __restrict__ top_lp) {
  __shared__ blk::ArgMax s_arg[32];
  __shared__ double s_d[32];
  const int64_t row = blockIdx.x;
  const float* x = logits + row * V;

  const float mx = row_argmax(x, V, s_arg).v;
  double s = 0.0;
  for (int j = threadIdx.x; j < V; j += blockDim.x) s += exp(double(clean(x[j])) - double(mx));
  s = blk::reduce(s, 0.0, blk::Sum{}, s_d);
  const double lse = double(mx) + log(s);

  if (chosen_lp && threadIdx.x == 0) {
    const int32_t c = chosen[row];
    chosen_lp[row] = c >= 0 && c < V ? float(double(x[c]) - lse) : NAN;
  }
  // Top-n by repeated argmax over the tokens that come after the previous pick.
  blk::ArgMax prev{0.f, -1};
  for (int t = 0; t < top_n; ++t) {
    blk::ArgMax a{0.f, -1};
    for (int j = threadIdx.x; j < V; j += blockDim.x) {
      const float v = clean(x[j]);
      if (after(v, j, prev.v, prev.i) && blk::better(v, j, a.v, a.i)) a = {v, j};
    }
    a = blk::reduce_argmax(a, s_arg);
    if (threadIdx.x == 0) {
      top_ids[row * top_n + t] = a.i;  // -1 when V < top_n
      top_lp[row * top_n + t] = a.i >= 0 ? float(double(x[a.i]) - lse) : -INFINITY;
    }
    if (a.i >= 0) prev = a;  // once exhausted, later ranks stay empty (prev.i = -1 would restart)
  }
}

}  // namespace

size_t sample_workspace_bytes(int, int) { return 0; }

void sample_tokens(const float* logits, int R, int V, const SampleParams* params, int32_t* out,
                   void*, size_t, cudaStream_t stream) {
  if (R < 0 || V <= 0) cuda_fail("sample_tokens: bad shape (", R, " rows, vocabulary ", V, ")");
  if (R == 0) return;
  if (!logits || !params || !out) cuda_fail("sample_tokens: null pointer (logits, params or out)");
  sample_kernel<<<unsigned(R), kThreads, 0, stream>>>(logits, V, params, out);
  NFP_CUDA_CHECK_LAUNCH();
}

void logprobs_topn(const float* logits, int R, int V, const int32_t* chosen, int top_n,
                   float* chosen_lp, int32_t* top_ids, float* top_lp, cudaStream_t stream) {
  if (R < 0 || V <= 0) cuda_fail("logprobs_topn: bad shape (", R, " rows, vocabulary ", V, ")");
  if (top_n < 0 || top_n > kMaxTopLogprobs)
    cuda_fail("logprobs_topn: top_n ", top_n, " outside [0, ", kMaxTopLogprobs, "]");
  if (R == 0) return;
  if (!logits) cuda_fail("logprobs_topn: null logits");
  if (bool(chosen) != bool(chosen_lp))
    cuda_fail(
        "logprobs_topn: chosen and chosen_lp must both be given (or both null to skip the chosen "
        "token)");
  if (top_n > 0 && (!top_ids || !top_lp))
    cuda_fail("logprobs_topn: top_n ", top_n, " needs top_ids and top_lp");
  logprobs_kernel<<<unsigned(R), kThreads, 0, stream>>>(logits, V, chosen, top_n, chosen_lp,
                                                        top_ids, top_lp);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
