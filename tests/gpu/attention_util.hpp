#pragma once
// Paged-attention test batches: random sequences laid out on shuffled, non-contiguous KV blocks
// (the cache layout of ops.hpp), their device copies, and a float64 host reference.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cuda/ops.hpp"
#include "gpu_util.hpp"

namespace nestedfp::gputest {

// One sequence of a step: `ctx` cached tokens before this step, `q_len` new ones (their keys are
// already in the cache, as write_kv leaves them).
struct SeqSpec {
  int ctx = 0, q_len = 1;
  int kv_len() const { return ctx + q_len; }
};

// Cache slots outside any sequence hold these: a kernel that reads past kv_len or into another
// sequence's blocks gets scores and values that dominate its output.
inline constexpr float kPoisonKey = 24.f, kPoisonValue = 1000.f;

struct HostBatch {
  int nq = 0, nkv = 0, hd = 0, num_blocks = 0, total_q = 0, max_q_len = 0, max_kv_len = 0;
  std::vector<SeqSpec> seqs;
  std::vector<int32_t> q_indptr, kv_indptr, kv_indices, last_page_len;
  std::vector<uint16_t> q, k, v;  // q [total_q, nq, hd]; k, v [num_blocks, nkv, 16, hd]

  int num_seqs() const { return int(seqs.size()); }
  size_t slot(int block, int head, int off) const {
    return ((size_t(block) * nkv + head) * cuda::kPageSize + off) * hd;
  }
  // Offset of token t of sequence s, KV head h, in k / v.
  size_t kv_at(int s, int t, int h) const {
    return slot(kv_indices[kv_indptr[s] + t / cuda::kPageSize], h, t % cuda::kPageSize);
  }
};

// Keys get per-token magnitudes 2^[-1, 1.5] so that a few keys dominate each softmax (a kernel
// that drops or adds a key shows), values and queries N(0, 1).
inline HostBatch make_batch(std::mt19937_64& rng, int nq, int nkv, int hd,
                            const std::vector<SeqSpec>& seqs) {
  HostBatch b;
  b.nq = nq, b.nkv = nkv, b.hd = hd, b.seqs = seqs;
  int pages = 0;
  for (const auto& s : seqs) pages += (s.kv_len() + cuda::kPageSize - 1) / cuda::kPageSize;
  b.num_blocks = pages + pages / 4 + 3;  // spare blocks stay poisoned
  std::vector<int32_t> perm(b.num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);

  b.q_indptr = {0};
  b.kv_indptr = {0};
  for (const auto& s : seqs) {
    const int np = (s.kv_len() + cuda::kPageSize - 1) / cuda::kPageSize;
    for (int p = 0; p < np; ++p) b.kv_indices.push_back(perm[b.kv_indptr.back() + p]);
    b.kv_indptr.push_back(b.kv_indptr.back() + np);
    b.q_indptr.push_back(b.q_indptr.back() + s.q_len);
    b.last_page_len.push_back(s.kv_len() - (np - 1) * cuda::kPageSize);
    b.max_q_len = std::max(b.max_q_len, s.q_len);
    b.max_kv_len = std::max(b.max_kv_len, s.kv_len());
  }
  b.total_q = b.q_indptr.back();

  const size_t cache_n = size_t(b.num_blocks) * nkv * cuda::kPageSize * hd;
  b.k.assign(cache_n, 0);
  b.v.assign(cache_n, 0);
  std::uniform_int_distribution<int> sign(0, 1);
  for (size_t i = 0; i < cache_n; ++i) {
    b.k[i] = float_to_fp16(sign(rng) ? kPoisonKey : -kPoisonKey);
    b.v[i] = float_to_fp16(kPoisonValue);
  }
  for (int s = 0; s < b.num_seqs(); ++s) {
    const int n = seqs[s].kv_len();
    const auto kr = random_rows(rng, n * nkv, hd, -1.f, 1.5f);
    const auto vr = random_rows(rng, n * nkv, hd, 0.f, 0.f);
    for (int t = 0; t < n; ++t)
      for (int h = 0; h < nkv; ++h) {
        const size_t src = (size_t(t) * nkv + h) * hd, dst = b.kv_at(s, t, h);
        std::copy_n(kr.begin() + src, hd, b.k.begin() + dst);
        std::copy_n(vr.begin() + src, hd, b.v.begin() + dst);
      }
  }
  b.q = random_rows(rng, b.total_q * nq, hd, 0.f, 0.f);
  return b;
}

// out[row, h, :] = softmax over keys 0..pos of (q·k · scale) times V, all in float64, where
// pos = kv_len - q_len + i for row i of its sequence and KV head = h / (nq / nkv).
inline std::vector<double> reference_attention(const HostBatch& b, double scale) {
  const int g = b.nq / b.nkv, hd = b.hd;
  std::vector<double> out(size_t(b.total_q) * b.nq * hd, 0.0);
  std::vector<double> p;
  for (int s = 0; s < b.num_seqs(); ++s) {
    const SeqSpec& sp = b.seqs[s];
    for (int i = 0; i < sp.q_len; ++i) {
      const int row = b.q_indptr[s] + i, pos = sp.kv_len() - sp.q_len + i;
      for (int h = 0; h < b.nq; ++h) {
        const uint16_t* q = &b.q[(size_t(row) * b.nq + h) * hd];
        p.assign(pos + 1, 0.0);
        double m = -INFINITY;
        for (int t = 0; t <= pos; ++t) {
          const uint16_t* k = &b.k[b.kv_at(s, t, h / g)];
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += double(h2f(q[d])) * h2f(k[d]);
          p[t] = dot * scale;
          m = std::max(m, p[t]);
        }
        double sum = 0;
        for (double& x : p) sum += (x = std::exp(x - m));
        double* o = &out[(size_t(row) * b.nq + h) * hd];
        for (int t = 0; t <= pos; ++t) {
          const uint16_t* v = &b.v[b.kv_at(s, t, h / g)];
          const double w = p[t] / sum;
          for (int d = 0; d < hd; ++d) o[d] += w * h2f(v[d]);
        }
      }
    }
  }
  return out;
}

// The batch on the device; cache() and batch() are the ops.hpp views of it.
struct DeviceBatch {
  DeviceBuffer<uint16_t> q, k, v;
  DeviceBuffer<int32_t> q_indptr, kv_indptr, kv_indices, last_page_len;
  const HostBatch* host;
  explicit DeviceBatch(const HostBatch& b)
      : q(b.q),
        k(b.k),
        v(b.v),
        q_indptr(b.q_indptr),
        kv_indptr(b.kv_indptr),
        kv_indices(b.kv_indices),
        last_page_len(b.last_page_len),
        host(&b) {}
  cuda::PagedKv cache() const {
    return {as_half(k.get()), as_half(v.get()), host->num_blocks, host->nkv, host->hd};
  }
  cuda::AttnBatch batch() const {
    cuda::AttnBatch a;
    a.num_seqs = host->num_seqs();
    a.total_q = host->total_q;
    a.max_q_len = host->max_q_len;
    a.max_kv_len = host->max_kv_len;
    a.q_indptr = q_indptr.get();
    a.kv_indptr = kv_indptr.get();
    a.kv_indices = kv_indices.get();
    a.kv_last_page_len = last_page_len.get();
    return a;
  }
};

}  // namespace nestedfp::gputest
