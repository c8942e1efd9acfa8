// Backend ops (through the Backend interface) against naive double-precision references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <random>

#include "nestedfp/backend.hpp"
#include "nestedfp/half.hpp"

using namespace nestedfp;
using namespace nestedfp::backend;

namespace {

std::vector<uint16_t> rnd16(size_t n, std::mt19937& g, float sd, float mean = 0.f) {
  std::normal_distribution<float> nd(mean, sd);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = float_to_fp16(nd(g));
  return v;
}

BufferPtr up(Backend& be, const std::vector<uint16_t>& v) {
  auto b = be.alloc(v.size() * 2);
  be.upload(*b, v.data(), v.size() * 2);
  return b;
}

std::vector<uint16_t> down(Backend& be, const Buffer& b, size_t n) {
  std::vector<uint16_t> v(n);
  be.download(v.data(), b, n * 2);
  return v;
}

double f(uint16_t h) { return fp16_to_float(h); }

}  // namespace

TEST(CpuOps, RmsNorm) {
  auto be = make_cpu_backend(2);
  std::mt19937 g(1);
  const int rows = 5, cols = 384;
  auto x = rnd16(rows * cols, g, 3.f), w = rnd16(cols, g, 0.2f, 1.f);
  auto bx = up(*be, x), bw = up(*be, w), out = be->alloc(rows * cols * 2);
  be->rmsnorm(*bx, nullptr, *bw, rows, cols, 1e-5f, NormOut{out.get()});
  auto y = down(*be, *out, rows * cols);
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int c = 0; c < cols; ++c) ss += f(x[r * cols + c]) * f(x[r * cols + c]);
    const double inv = 1 / std::sqrt(ss / cols + 1e-5);
    for (int c = 0; c < cols; ++c) {
      const double ref = f(w[c]) * f(x[r * cols + c]) * inv;
      ASSERT_NEAR(f(y[r * cols + c]), ref, std::fabs(ref) * 2e-3 + 1e-6) << r << "," << c;
    }
  }
  // Fused quantization = norm then standalone quantization, bit for bit.
  auto q1 = be->alloc(rows * cols), s1 = be->alloc(rows * 4), q2 = be->alloc(rows * cols),
       s2 = be->alloc(rows * 4);
  be->rmsnorm(*bx, nullptr, *bw, rows, cols, 1e-5f, NormOut{nullptr, q1.get(), s1.get()});
  be->quantize(*out, rows, cols, *q2, *s2);
  std::vector<uint8_t> a(rows * cols), b(rows * cols);
  be->download(a.data(), *q1, a.size());
  be->download(b.data(), *q2, b.size());
  EXPECT_EQ(a, b);
  float sa[rows], sb[rows];
  be->download(sa, *s1, sizeof sa);
  be->download(sb, *s2, sizeof sb);
  for (int r = 0; r < rows; ++r) EXPECT_EQ(sa[r], sb[r]);
}

TEST(CpuOps, SiluMul) {
  auto be = make_cpu_backend(2);
  std::mt19937 g(2);
  const int rows = 3, cols = 100;
  auto ga = rnd16(rows * cols, g, 3.f), u = rnd16(rows * cols, g, 2.f);
  auto bg = up(*be, ga), bu = up(*be, u), out = be->alloc(rows * cols * 2);
  be->silu_mul(*bg, *bu, rows, cols, NormOut{out.get()});
  auto y = down(*be, *out, rows * cols);
  for (int i = 0; i < rows * cols; ++i) {
    const double x = f(ga[i]), ref = x / (1 + std::exp(-x)) * f(u[i]);
    ASSERT_NEAR(f(y[i]), ref, std::fabs(ref) * 2e-3 + 1e-6);
  }
}

namespace {

// Double-precision rotary embedding of one head vector at position p.
std::vector<double> rope_ref(const std::vector<double>& x, int p, const std::vector<double>& inv) {
  const int half = int(x.size() / 2);
  std::vector<double> y(x.size());
  for (int i = 0; i < half; ++i) {
    const double a = p * inv[i], c = std::cos(a), s = std::sin(a);
    y[i] = x[i] * c - x[i + half] * s;
    y[i + half] = x[i + half] * c + x[i] * s;
  }
  return y;
}

std::vector<double> inv_freq_ref(const RopeSpec& s) {
  std::vector<double> inv(size_t(s.head_dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) {
    double fq = 1 / std::pow(s.theta, 2.0 * double(i) / s.head_dim);
    if (s.scaling == "linear") fq /= s.factor;
    if (s.scaling == "llama3") {  // Meta's reference formula
      const double wl = 2 * std::numbers::pi / fq, old = s.original_max_position_embeddings;
      if (wl > old / s.low_freq_factor)
        fq /= s.factor;
      else if (wl >= old / s.high_freq_factor) {
        const double sm = (old / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        fq = (1 - sm) * fq / s.factor + sm * fq;
      }
    }
    inv[i] = fq;
  }
  return inv;
}

}  // namespace

TEST(CpuOps, RopeDefaultLlama3Linear) {
  auto be = make_cpu_backend(2);
  std::mt19937 g(3);
  const int hd = 64, nq = 4, nkv = 2;
  const std::vector<int32_t> pos = {0, 1, 17, 500, 4095, 30000};
  const int M = int(pos.size());
  for (const char* kind : {"default", "llama3", "linear"}) {
    RopeSpec s;
    s.head_dim = hd, s.theta = 500000, s.scaling = kind, s.factor = 8, s.low_freq_factor = 1,
    s.high_freq_factor = 4, s.original_max_position_embeddings = 8192;
    if (std::string(kind) == "linear") s.factor = 4, s.theta = 10000;
    auto rope = be->create_rope(s);
    auto q = rnd16(M * nq * hd, g, 1.f), k = rnd16(M * nkv * hd, g, 1.f);
    auto bq = up(*be, q), bk = up(*be, k);
    StepLayout L;
    L.positions = pos;
    be->begin_step(L);
    be->rope(*rope, *bq, *bk, nq, nkv, hd);
    auto q2 = down(*be, *bq, q.size()), k2 = down(*be, *bk, k.size());
    const auto inv = inv_freq_ref(s);
    auto check = [&](const std::vector<uint16_t>& in, const std::vector<uint16_t>& out, int heads) {
      for (int m = 0; m < M; ++m)
        for (int h = 0; h < heads; ++h) {
          std::vector<double> x(hd);
          for (int d = 0; d < hd; ++d) x[d] = f(in[(m * heads + h) * hd + d]);
          const auto y = rope_ref(x, pos[m], inv);
          for (int d = 0; d < hd; ++d)  // fp16 cos/sin and fp16 products, as HF does
            ASSERT_NEAR(f(out[(m * heads + h) * hd + d]), y[d],
                        4e-3 * (std::fabs(x[d]) + std::fabs(x[(d + hd / 2) % hd])) + 1e-4)
                << kind << " pos " << pos[m] << " d " << d;
        }
    };
    check(q, q2, nq);
    check(k, k2, nkv);
  }
  RopeSpec bad;
  bad.head_dim = 64, bad.scaling = "yarn";
  EXPECT_THROW(be->create_rope(bad), std::exception);
}

TEST(CpuOps, PagedAttentionShuffledBlocksMatchReference) {
  auto be = make_cpu_backend(2);
  std::mt19937 g(4);
  const int hd = 32, nq = 6, nkv = 2, group = nq / nkv, nblocks = 40;
  auto cache = be->create_kv_cache({1, nblocks, nkv, hd});
  // Two sequences: A has 37 cached tokens and a 5-token chunk; B a 50-token prefill.
  struct S {
    int start, len;
    std::vector<int32_t> blocks;
  };
  std::vector<int32_t> perm(nblocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), g);
  std::vector<S> seqs = {{37, 5, {}}, {0, 50, {}}};
  int next = 0;
  for (auto& s : seqs)
    for (int b = 0; b < (s.start + s.len + 15) / 16; ++b) s.blocks.push_back(perm[next++]);
  // Full K/V histories per sequence.
  std::vector<std::vector<uint16_t>> K, V;
  for (auto& s : seqs) {
    const int ctx = s.start + s.len;
    K.push_back(rnd16(ctx * nkv * hd, g, 1.f));
    V.push_back(rnd16(ctx * nkv * hd, g, 1.f));
    // Cache the history [0, start) in a separate write, then this step's tokens.
    for (int part = 0; part < 2; ++part) {
      const int p0 = part ? s.start : 0, p1 = part ? ctx : s.start;
      if (p1 == p0) continue;
      std::vector<int32_t> slots;
      for (int p = p0; p < p1; ++p) slots.push_back(s.blocks[p / 16] * 16 + p % 16);
      auto bk = up(*be, std::vector<uint16_t>(K.back().begin() + p0 * nkv * hd,
                                              K.back().begin() + p1 * nkv * hd));
      auto bv = up(*be, std::vector<uint16_t>(V.back().begin() + p0 * nkv * hd,
                                              V.back().begin() + p1 * nkv * hd));
      StepLayout L;
      L.slots = slots;
      be->begin_step(L);
      be->write_kv(*cache, 0, *bk, *bv);
    }
  }
  const int M = seqs[0].len + seqs[1].len;
  auto q = rnd16(M * nq * hd, g, 1.f);
  auto bq = up(*be, q), out = be->alloc(M * nq * hd * 2);
  StepLayout L;  // the CSR form the runner builds
  std::vector<int> q_begin;
  L.q_indptr = {0}, L.kv_indptr = {0};
  for (auto& s : seqs) {
    q_begin.push_back(L.q_indptr.back());
    L.q_indptr.push_back(L.q_indptr.back() + s.len);
    L.kv_indices.insert(L.kv_indices.end(), s.blocks.begin(), s.blocks.end());
    L.kv_indptr.push_back(int32_t(L.kv_indices.size()));
    L.kv_last_page_len.push_back((s.start + s.len - 1) % 16 + 1);
  }
  be->begin_step(L);
  const float scale = 1.f / std::sqrt(float(hd));
  be->attention(*cache, 0, *bq, nq, scale, *out);
  auto o = down(*be, *out, M * nq * hd);
  for (size_t si = 0; si < seqs.size(); ++si) {
    const auto& s = seqs[si];
    for (int i = 0; i < s.len; ++i) {
      const int row = q_begin[si] + i, n = s.start + i + 1;
      for (int h = 0; h < nq; ++h) {
        const int kh = h / group;
        std::vector<double> sc(n);
        double mx = -1e300, sum = 0;
        for (int j = 0; j < n; ++j) {
          double d = 0;
          for (int e = 0; e < hd; ++e)
            d += f(q[(row * nq + h) * hd + e]) * f(K[si][(j * nkv + kh) * hd + e]);
          mx = std::max(mx, sc[j] = d * scale);
        }
        for (auto& x : sc) sum += (x = std::exp(x - mx));
        for (int e = 0; e < hd; ++e) {
          double ref = 0;
          for (int j = 0; j < n; ++j) ref += sc[j] / sum * f(V[si][(j * nkv + kh) * hd + e]);
          ASSERT_NEAR(f(o[(row * nq + h) * hd + e]), ref, std::fabs(ref) * 1e-3 + 1e-4)
              << "seq " << si << " token " << i << " head " << h;
        }
      }
    }
  }
  // A block id outside the cache is rejected, not read out of bounds.
  StepLayout bad = L;
  bad.kv_indices[0] = nblocks;
  be->begin_step(bad);
  EXPECT_THROW(be->attention(*cache, 0, *bq, nq, scale, *out), std::exception);
}

TEST(CpuOps, EmbeddingAndGather) {
  auto be = make_cpu_backend(1);
  std::mt19937 g(5);
  auto table = rnd16(10 * 4, g, 1.f);
  auto bt = up(*be, table), out = be->alloc(3 * 4 * 2), gathered = be->alloc(2 * 4 * 2);
  const std::vector<int32_t> ids = {7, 0, 7};
  StepLayout L;
  L.ids = ids;
  L.logit_rows = {2, 1};
  be->begin_step(L);
  be->embedding(*bt, 10, 4, *out);
  auto y = down(*be, *out, 12);
  for (int i = 0; i < 3; ++i)
    for (int c = 0; c < 4; ++c) EXPECT_EQ(y[i * 4 + c], table[ids[i] * 4 + c]);
  be->gather_logit_rows(*out, 4, 0, 2, *gathered);
  auto z = down(*be, *gathered, 8);
  for (int c = 0; c < 4; ++c) {
    EXPECT_EQ(z[c], table[7 * 4 + c]);
    EXPECT_EQ(z[4 + c], table[c]);
  }
  StepLayout bad;
  bad.ids = {10};
  be->begin_step(bad);
  EXPECT_THROW(be->embedding(*bt, 10, 4, *out), std::exception);
}

// A fused gate_up [rows, 2 * cols] gives silu_mul of its halves, fp16 and E4M3 outputs bit for bit.
TEST(CpuOps, SiluMulFusedEqualsSeparateHalves) {
  auto be = make_cpu_backend(2);
  std::mt19937 g(5);
  const int rows = 4, cols = 72;
  auto ga = rnd16(rows * cols, g, 3.f), u = rnd16(rows * cols, g, 2.f);
  std::vector<uint16_t> gu;
  for (int r = 0; r < rows; ++r) {
    gu.insert(gu.end(), ga.begin() + r * cols, ga.begin() + (r + 1) * cols);
    gu.insert(gu.end(), u.begin() + r * cols, u.begin() + (r + 1) * cols);
  }
  auto bg = up(*be, ga), bu = up(*be, u), bgu = up(*be, gu);
  auto o1 = be->alloc(rows * cols * 2), o2 = be->alloc(rows * cols * 2);
  auto q1 = be->alloc(rows * cols), q2 = be->alloc(rows * cols), s1 = be->alloc(rows * 4),
       s2 = be->alloc(rows * 4);
  be->silu_mul(*bg, *bu, rows, cols, NormOut{o1.get(), q1.get(), s1.get()});
  be->silu_mul_fused(*bgu, rows, cols, NormOut{o2.get(), q2.get(), s2.get()});
  EXPECT_EQ(down(*be, *o1, rows * cols), down(*be, *o2, rows * cols));
  std::vector<uint8_t> a(rows * cols), b(rows * cols);
  be->download(a.data(), *q1, a.size());
  be->download(b.data(), *q2, b.size());
  EXPECT_EQ(a, b);
  std::vector<float> sa(rows), sb(rows);
  be->download(sa.data(), *s1, rows * 4);
  be->download(sb.data(), *s2, rows * 4);
  EXPECT_EQ(sa, sb);
  EXPECT_NE(a, std::vector<uint8_t>(a.size(), 0));
}

TEST(CpuOps, SplitColumnsCopiesEachPartsColumns) {
  auto be = make_cpu_backend(2);
  std::mt19937 g(6);
  const int rows = 5, w0 = 16, w1 = 3, w2 = 8, W = w0 + w1 + w2;
  const auto x = rnd16(rows * W, g, 1.f);
  auto bx = up(*be, x), b0 = be->alloc(rows * w0 * 2), b1 = be->alloc(rows * w1 * 2),
       b2 = be->alloc(rows * w2 * 2);
  const ColumnPart parts[] = {{b0.get(), w0}, {b1.get(), w1}, {b2.get(), w2}};
  be->split_columns(*bx, rows, parts);
  int c0 = 0;
  const std::vector<std::pair<Buffer*, int>> want = {
      {b0.get(), w0}, {b1.get(), w1}, {b2.get(), w2}};
  for (const auto& [buf, w] : want) {
    const auto got = down(*be, *buf, size_t(rows * w));
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < w; ++c) ASSERT_EQ(got[r * w + c], x[r * W + c0 + c]) << r << "," << c;
    c0 += w;
  }
  const ColumnPart self[] = {{bx.get(), W}};
  EXPECT_ANY_THROW(be->split_columns(*bx, rows, self));
}
