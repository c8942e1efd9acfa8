// write_kv and attention_reference against host references on random paged layouts: GQA ratios
// 1/2/4/8, head dims 20..256, decode rows, prefill from scratch, chunked prefill over an existing
// context, contexts of 1 token and of more than 4096 tokens, an empty sequence in the batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cuda/ops.hpp"
#include "gpu_util.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::gputest {
namespace {

constexpr int P = cuda::kPageSize;

struct Seq {
  int start;  // tokens already cached before this step
  int q_len;  // this step's tokens
};
struct Case {
  int nq, nkv, hd;
  std::vector<Seq> seqs;
};

struct Layout {
  std::vector<int32_t> q_indptr{0}, kv_indptr{0}, kv_indices, last_len, slots;
  int total_q = 0, max_q = 0, max_kv = 0;
};

// Pages are a random permutation of the cache blocks, so sequences interleave in memory.
Layout make_layout(std::mt19937_64& rng, const std::vector<Seq>& seqs, int num_blocks) {
  Layout L;
  std::vector<int32_t> perm(static_cast<size_t>(num_blocks));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  size_t next = 0;
  for (const Seq& s : seqs) {
    const int kv = s.start + s.q_len, pages = (kv + P - 1) / P;
    for (int p = 0; p < pages; ++p) L.kv_indices.push_back(perm.at(next++));
    L.kv_indptr.push_back(int32_t(L.kv_indices.size()));
    L.last_len.push_back(pages ? kv - (pages - 1) * P : P);
    const int32_t* table = L.kv_indices.data() + L.kv_indptr[L.kv_indptr.size() - 2];
    for (int t = s.start; t < kv; ++t) L.slots.push_back(table[t / P] * P + t % P);
    L.total_q += s.q_len;
    L.q_indptr.push_back(L.total_q);
    L.max_q = std::max(L.max_q, s.q_len);
    L.max_kv = std::max(L.max_kv, kv);
  }
  return L;
}

void run_case(std::mt19937_64& rng, const Case& c) {
  SCOPED_TRACE(testing::Message() << "nq " << c.nq << " nkv " << c.nkv << " hd " << c.hd);
  const int hd = c.hd, nkv = c.nkv, nq = c.nq;
  int pages = 0;
  for (const Seq& s : c.seqs) pages += (s.start + s.q_len + P - 1) / P;
  const int num_blocks = pages + 7;  // a few blocks nobody owns: write_kv must leave them alone
  const Layout L = make_layout(rng, c.seqs, num_blocks);
  const size_t cache_elems = size_t(num_blocks) * nkv * P * hd;
  // The cache before the step: random everywhere (the earlier context included).
  auto kc = random_rows(rng, int(cache_elems / hd), hd, -1.f, 1.f),
       vc = random_rows(rng, int(cache_elems / hd), hd, -1.f, 1.f);
  const int M = L.total_q;
  const auto knew = random_rows(rng, M * nkv, hd, -1.f, 1.f),
             vnew = random_rows(rng, M * nkv, hd, -1.f, 1.f);
  const auto q = random_rows(rng, M * nq, hd, -1.f, 1.f);

  DeviceBuffer<uint16_t> dkc(kc), dvc(vc), dk(knew), dv(vnew), dq(q), dout(size_t(M) * nq * hd);
  DeviceBuffer<int32_t> dslots(L.slots), dqi(L.q_indptr), dki(L.kv_indptr), dkx(L.kv_indices),
      dll(L.last_len);
  const cuda::PagedKv cache{as_half(dkc.get()), as_half(dvc.get()), num_blocks, nkv, hd};
  cuda::write_kv(cache, as_half(dk.get()), as_half(dv.get()), dslots.get(), M, nullptr);

  // write_kv: exactly this step's rows land at their slots; every other cache element unchanged.
  for (int m = 0; m < M; ++m) {
    const int32_t b = L.slots[size_t(m)] / P, off = L.slots[size_t(m)] % P;
    for (int h = 0; h < nkv; ++h)
      for (int d = 0; d < hd; ++d) {
        const size_t dst = ((size_t(b) * nkv + h) * P + off) * hd + d,
                     src = (size_t(m) * nkv + h) * hd + d;
        kc[dst] = knew[src];
        vc[dst] = vnew[src];
      }
  }
  ASSERT_EQ(dkc.download(), kc) << "write_kv: K cache differs";
  ASSERT_EQ(dvc.download(), vc) << "write_kv: V cache differs";

  cuda::AttnBatch batch;
  batch.num_seqs = int(c.seqs.size());
  batch.total_q = M;
  batch.max_q_len = L.max_q;
  batch.max_kv_len = L.max_kv;
  batch.q_indptr = dqi.get();
  batch.kv_indptr = dki.get();
  batch.kv_indices = dkx.get();
  batch.kv_last_page_len = dll.get();
  const float scale = 1.f / std::sqrt(float(hd)) * 1.7f;  // peakier than plain 1/sqrt(hd)
  dout.poison();
  cuda::attention_reference(cache, as_half(dq.get()), batch, nq, scale, as_half(dout.get()),
                            nullptr);
  const auto out = dout.download();

  // Host: fp64 scores, softmax and weighted sum over the causal context of each row.
  // Tolerance per element: one fp16 ulp of the reference (the kernel rounds once, from a value
  // with fp32 error) + 2e-5 · max|V|: fp32 dot products (<= 256 terms), expf and fp32 sums of
  // ~1000 terms per warp move each weight and the weighted sum by a relative few e-6 typically.
  // A key too many or too few (a mask or page error) moves outputs of the short contexts here by
  // ~0.1 · |V| or more, far outside the bound.
  double vmax = 0;
  for (uint16_t h : vc) vmax = std::max(vmax, double(std::fabs(h2f(h))));
  size_t bad = 0, checked = 0;
  double worst = 0;
  std::vector<double> sc, acc(static_cast<size_t>(hd));
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    const int kv_len = c.seqs[s].start + c.seqs[s].q_len;
    const int32_t* table = L.kv_indices.data() + L.kv_indptr[s];
    for (int i = 0; i < c.seqs[s].q_len; ++i) {
      const int row = L.q_indptr[s] + i, n = c.seqs[s].start + i + 1;
      ASSERT_LE(n, kv_len);
      for (int h = 0; h < nq; ++h) {
        const int kvh = h / (nq / nkv);
        sc.assign(size_t(n), 0.0);
        double mx = -INFINITY;
        for (int j = 0; j < n; ++j) {
          const size_t base = ((size_t(table[j / P]) * nkv + kvh) * P + j % P) * hd;
          double dot = 0;
          for (int d = 0; d < hd; ++d)
            dot += double(h2f(q[(size_t(row) * nq + h) * hd + d])) * h2f(kc[base + d]);
          sc[size_t(j)] = dot * scale;
          mx = std::max(mx, sc[size_t(j)]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int j = 0; j < n; ++j) {
          const double p = std::exp(sc[size_t(j)] - mx);
          sum += p;
          const size_t base = ((size_t(table[j / P]) * nkv + kvh) * P + j % P) * hd;
          for (int d = 0; d < hd; ++d) acc[size_t(d)] += p * h2f(vc[base + d]);
        }
        for (int d = 0; d < hd; ++d) {
          const double ref = acc[size_t(d)] / sum, got = h2f(out[(size_t(row) * nq + h) * hd + d]);
          const double ulp =
              std::ldexp(1.0, std::max(std::ilogb(std::max(std::fabs(ref), 0x1p-14)), -14) - 10);
          const double err = std::fabs(got - ref);
          worst = std::max(worst, err / vmax);
          bad += !(err <= ulp + 2e-5 * vmax);
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(bad, 0u) << "of " << checked << " outputs; worst |err| / max|V| = " << worst;
}

TEST(Attention, ReferenceKernelMatchesHostOverPagedLayouts) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  // Decode rows (q_len 1) at contexts 1, 16, 17, 33; prefill from 0; chunked prefill over an
  // existing context; an empty sequence (q_len 0, no pages) between others.
  const std::vector<Seq> mixed = {{0, 1}, {15, 1}, {16, 1}, {0, 37}, {0, 0}, {100, 40}, {32, 1}};
  const std::vector<Seq> long_ctx = {{4499, 1}, {4100, 20}, {0, 1}};
  run_case(rng, {4, 4, 64, mixed});
  run_case(rng, {16, 4, 128, mixed});
  run_case(rng, {32, 4, 128, mixed});
  run_case(rng, {8, 4, 256, mixed});
  run_case(rng, {6, 3, 80, mixed});       // head_dim not a multiple of 32
  run_case(rng, {4, 2, 20, mixed});       // head_dim % 8 != 0: write_kv's scalar path
  run_case(rng, {16, 2, 128, long_ctx});  // GQA 8, contexts > 4096
  run_case(rng, {8, 2, 64, long_ctx});    // GQA 4
}

TEST(Attention, BadArgumentsThrow) {
  DeviceBuffer<uint16_t> b(1024);
  DeviceBuffer<int32_t> idx(std::vector<int32_t>{0, 1});
  const cuda::PagedKv cache{as_half(b.get()), as_half(b.get()), 1, 2, 64};
  cuda::AttnBatch batch;
  batch.num_seqs = 1, batch.total_q = 1;
  batch.q_indptr = batch.kv_indptr = batch.kv_indices = batch.kv_last_page_len = idx.get();
  EXPECT_THROW(
      cuda::attention_reference(cache, as_half(b.get()), batch, 3, 1.f, as_half(b.get()), nullptr),
      Error);
  cuda::PagedKv big = cache;
  big.head_dim = 512;
  EXPECT_THROW(
      cuda::attention_reference(big, as_half(b.get()), batch, 4, 1.f, as_half(b.get()), nullptr),
      Error);
  batch.kv_indices = nullptr;
  EXPECT_THROW(
      cuda::attention_reference(cache, as_half(b.get()), batch, 4, 1.f, as_half(b.get()), nullptr),
      Error);
  EXPECT_THROW(
      cuda::write_kv(cuda::PagedKv{}, as_half(b.get()), as_half(b.get()), idx.get(), 1, nullptr),
      Error);
}

}  // namespace
}  // namespace nestedfp::gputest
