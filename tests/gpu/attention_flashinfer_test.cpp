// FlashInfer FA2 paged attention (FlashInferAttention) against a float64 host reference and the
// plain reference kernel (cuda::attention_reference): decode, chunked prefill on cached context,
// mixed batches, 1-token and > 4096-token sequences, GQA ratios 1/4/8, head_dim 64/128, shuffled
// block tables, a CUDA graph replayed after a re-plan, and the errors at the boundary.
//
// Tolerances. FA2 computes Q·K with fp16 inputs and fp32 accumulation (error ~hd·2^-24, nil
// here), then rounds each softmax weight p to fp16 for the P·V tensor-core product (relative
// 2^-11 per weight), stores split-KV partial outputs in fp16 before the fp32 merge (2^-11 of a
// partial), and rounds the output to fp16 (2^-11). Each is <= 2^-11 · Σp|v|, so an element is
// off by at most ~3·2^-11 of max|v|, and the norm error is ~2^-11 of the output norm. We allow
// 4·2^-11 (norm, per sequence) and 8·2^-11 (worst element over the sequence's largest output);
// measured on an H200: at most 0.84·2^-11 and 1.9·2^-11 (also against attention_reference).
// Any wrong key set (mask off by one, wrong page, wrong KV head) moves outputs by far more: keys
// have magnitudes up to 2^1.5, so a few keys dominate each row, and slots outside the sequences
// hold keys of ±24 and values of 1000.
#include "backend/cuda/attention_flashinfer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

#include "attention_util.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::gputest {
namespace {

constexpr double kRelTol = 4.0 / 2048;
constexpr double kMaxTol = 8.0 / 2048;

double scale_of(int hd) { return 1.0 / std::sqrt(double(hd)); }

std::vector<uint16_t> run_flashinfer(const HostBatch& b, const DeviceBatch& d) {
  // Limits exactly at the batch: the workspace bounds are exercised at their tightest.
  cuda::FlashInferAttention fa(b.nq, b.nkv, b.hd, b.total_q, b.num_seqs());
  fa.plan(b.q_indptr.data(), b.kv_indptr.data(), b.last_page_len.data(), b.num_seqs(), nullptr);
  DeviceBuffer<uint16_t> out(size_t(b.total_q) * b.nq * b.hd);
  out.poison();
  fa.run(d.cache(), as_half(d.q.get()), d.batch(), float(scale_of(b.hd)), as_half(out.get()),
         nullptr);
  return out.download();
}

std::vector<uint16_t> run_reference_kernel(const HostBatch& b, const DeviceBatch& d) {
  DeviceBuffer<uint16_t> out(size_t(b.total_q) * b.nq * b.hd);
  out.poison();
  cuda::attention_reference(d.cache(), as_half(d.q.get()), d.batch(), b.nq, float(scale_of(b.hd)),
                            as_half(out.get()), nullptr);
  return out.download();
}

// Per sequence, so a failure names the sequence (and its context and chunk).
void expect_close(const HostBatch& b, const std::vector<uint16_t>& out,
                  const std::vector<double>& ref, const char* what) {
  const size_t row = size_t(b.nq) * b.hd;
  ASSERT_EQ(out.size(), ref.size());
  for (int s = 0; s < b.num_seqs(); ++s) {
    const size_t lo = b.q_indptr[s] * row, hi = b.q_indptr[s + 1] * row;
    const std::vector<uint16_t> o(out.begin() + lo, out.begin() + hi);
    const std::vector<double> r(ref.begin() + lo, ref.begin() + hi);
    const double rel = rel_error(o, r), mx = max_error_over_max(o, r);
    EXPECT_LT(rel, kRelTol) << what << ": sequence " << s << " (ctx " << b.seqs[s].ctx << ", q_len "
                            << b.seqs[s].q_len << ")";
    EXPECT_LT(mx, kMaxTol) << what << ": sequence " << s << " (ctx " << b.seqs[s].ctx << ", q_len "
                           << b.seqs[s].q_len << ")";
  }
}

// A sequence without context: its first row sees key 0 alone, so its output is V[0] itself
// (softmax weight exactly 1); at most one fp16 rounding step away.
void expect_first_rows_are_v0(const HostBatch& b, const std::vector<uint16_t>& out) {
  const int g = b.nq / b.nkv;
  for (int s = 0; s < b.num_seqs(); ++s) {
    if (b.seqs[s].ctx != 0) continue;
    for (int h = 0; h < b.nq; ++h) {
      const uint16_t* v = &b.v[b.kv_at(s, 0, h / g)];
      const uint16_t* o = &out[(size_t(b.q_indptr[s]) * b.nq + h) * b.hd];
      for (int d = 0; d < b.hd; ++d)
        ASSERT_LE(std::fabs(h2f(o[d]) - h2f(v[d])), std::fabs(h2f(v[d])) / 2048)
            << "sequence " << s << " head " << h << " dim " << d;
    }
  }
}

void check_batch(const HostBatch& b) {
  SCOPED_TRACE(testing::Message() << "nq " << b.nq << ", nkv " << b.nkv << ", head_dim " << b.hd
                                  << ", " << b.num_seqs() << " sequences, " << b.total_q
                                  << " query rows");
  const DeviceBatch d(b);
  const auto ref = reference_attention(b, scale_of(b.hd));
  const auto fi = run_flashinfer(b, d);
  expect_close(b, fi, ref, "FlashInfer vs float64");
  expect_first_rows_are_v0(b, fi);
  const auto rk = run_reference_kernel(b, d);
  std::vector<double> rkd(rk.size());
  for (size_t i = 0; i < rk.size(); ++i) rkd[i] = h2f(rk[i]);
  expect_close(b, fi, rkd, "FlashInfer vs attention_reference");
}

struct Heads {
  int nq, nkv, hd;
};
// GQA ratios 1, 4, 8, each at head_dim 64 (pystd-16m) and 128 (Llama).
const Heads kHeadConfigs[] = {{8, 8, 64},   {8, 8, 128}, {16, 4, 64},
                              {32, 8, 128}, {32, 4, 64}, {16, 2, 128}};

int uniform(std::mt19937_64& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

TEST(FlashInferAttention, DecodeBatches) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Heads& h : kHeadConfigs) {
    // A 1-token sequence, a full last page, and random contexts.
    std::vector<SeqSpec> seqs = {{0, 1}, {31, 1}, {15, 1}};
    for (int i = 0; i < 13; ++i) seqs.push_back({uniform(rng, 1, 700), 1});
    std::shuffle(seqs.begin(), seqs.end(), rng);
    check_batch(make_batch(rng, h.nq, h.nkv, h.hd, seqs));
  }
}

TEST(FlashInferAttention, ChunkedPrefillOnCachedContext) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Heads& h : kHeadConfigs) {
    std::vector<SeqSpec> seqs = {{0, uniform(rng, 2, 100)}};  // a first chunk
    for (int i = 0; i < 4; ++i) seqs.push_back({uniform(rng, 1, 400), uniform(rng, 2, 150)});
    check_batch(make_batch(rng, h.nq, h.nkv, h.hd, seqs));
  }
}

TEST(FlashInferAttention, MixedDecodeAndPrefillBatches) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Heads& h : kHeadConfigs) {
    std::vector<SeqSpec> seqs;
    for (int i = 0; i < 10; ++i) seqs.push_back({uniform(rng, 0, 500), 1});
    for (int i = 0; i < 3; ++i) seqs.push_back({uniform(rng, 0, 300), uniform(rng, 2, 96)});
    seqs.push_back({0, 1});  // a 1-token prompt
    std::shuffle(seqs.begin(), seqs.end(), rng);
    check_batch(make_batch(rng, h.nq, h.nkv, h.hd, seqs));
  }
}

TEST(FlashInferAttention, SequencesLongerThan4096Tokens) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (const Heads& h : {Heads{16, 4, 128}, Heads{8, 8, 64}, Heads{16, 2, 64}}) {
    // Decode on a long context, a chunk ending past 4096, a chunk crossing 4096, short company.
    std::vector<SeqSpec> seqs = {{uniform(rng, 4097, 4400), 1},
                                 {uniform(rng, 4097, 4200), uniform(rng, 16, 48)},
                                 {4096 - 20, 40},
                                 {uniform(rng, 1, 64), 1},
                                 {0, 1}};
    std::shuffle(seqs.begin(), seqs.end(), rng);
    check_batch(make_batch(rng, h.nq, h.nkv, h.hd, seqs));
  }
}

// Graph plans fix the launch shape by num_seqs: a run() captured once must stay correct when the
// batch changes (lengths, block tables, data) and plan() runs again with the same num_seqs.
TEST(FlashInferAttention, CapturedGraphReplaysAfterReplan) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  const int nq = 16, nkv = 4, hd = 128, n = 24;
  auto decode = [&](int max_ctx) {
    std::vector<SeqSpec> s;
    for (int i = 0; i < n; ++i) s.push_back({uniform(rng, 0, max_ctx), 1});
    return make_batch(rng, nq, nkv, hd, s);
  };
  const HostBatch a = decode(300), b = decode(2000);
  // Device buffers sized for both: the graph keeps the pointers it captured.
  auto cap = [](const std::vector<int32_t>& x, const std::vector<int32_t>& y) {
    return std::max(x.size(), y.size());
  };
  DeviceBuffer<uint16_t> q(a.q.size()), k(std::max(a.k.size(), b.k.size())),
      v(std::max(a.v.size(), b.v.size())), out(size_t(n) * nq * hd);
  DeviceBuffer<int32_t> qi(n + 1), ki(n + 1), idx(cap(a.kv_indices, b.kv_indices)), last(n);
  auto upload = [&](const HostBatch& x) {
    q.upload(x.q);
    k.upload(x.k);
    v.upload(x.v);
    qi.upload(x.q_indptr);
    ki.upload(x.kv_indptr);
    idx.upload(x.kv_indices);
    last.upload(x.last_page_len);
  };
  const cuda::PagedKv cache{as_half(k.get()), as_half(v.get()),
                            std::max(a.num_blocks, b.num_blocks), nkv, hd};
  cuda::AttnBatch batch;
  batch.num_seqs = n, batch.total_q = n, batch.max_q_len = 1;
  batch.q_indptr = qi.get(), batch.kv_indptr = ki.get(), batch.kv_indices = idx.get();
  batch.kv_last_page_len = last.get();

  cudaStream_t st;
  NFP_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cuda::FlashInferAttention fa(nq, nkv, hd, 4 * n, n, n);
  const float scale = float(scale_of(hd));
  upload(a);
  fa.plan(a.q_indptr.data(), a.kv_indptr.data(), a.last_page_len.data(), n, st, true);
  const auto shape_a = fa.launch_shape();
  batch.max_kv_len = std::max(a.max_kv_len, b.max_kv_len);
  fa.run(cache, as_half(q.get()), batch, scale, as_half(out.get()), st);  // outside capture first
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  NFP_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  fa.run(cache, as_half(q.get()), batch, scale, as_half(out.get()), st);
  NFP_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
  NFP_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));

  out.poison();
  NFP_CUDA_CHECK(cudaGraphLaunch(exec, st));
  NFP_CUDA_CHECK(cudaStreamSynchronize(st));
  expect_close(a, out.download(), reference_attention(a, scale_of(hd)), "graph, first batch");

  NFP_CUDA_CHECK(cudaStreamSynchronize(st));
  upload(b);
  fa.plan(b.q_indptr.data(), b.kv_indptr.data(), b.last_page_len.data(), n, st, true);
  EXPECT_EQ(fa.launch_shape(), shape_a) << "graph plans of equal num_seqs must launch alike";
  out.poison();
  NFP_CUDA_CHECK(cudaGraphLaunch(exec, st));
  NFP_CUDA_CHECK(cudaStreamSynchronize(st));
  expect_close(b, out.download(), reference_attention(b, scale_of(hd)), "graph, replanned batch");

  NFP_CUDA_CHECK(cudaGraphExecDestroy(exec));
  NFP_CUDA_CHECK(cudaGraphDestroy(graph));
  NFP_CUDA_CHECK(cudaStreamDestroy(st));
}

TEST(FlashInferAttention, RejectsWhatItCannotRun) {
  EXPECT_FALSE(cuda::FlashInferAttention::supports(8, 8, 96));
  EXPECT_FALSE(cuda::FlashInferAttention::supports(12, 8, 64));
  EXPECT_TRUE(cuda::FlashInferAttention::supports(32, 8, 128));
  EXPECT_THROW({ cuda::FlashInferAttention fa(8, 8, 96, 64, 8); }, Error);
  EXPECT_THROW({ cuda::FlashInferAttention fa(12, 8, 64, 64, 8); }, Error);

  cuda::FlashInferAttention fa(8, 2, 64, 64, 4, 2);
  const std::vector<int32_t> qi = {0, 3, 4}, ki = {0, 1, 3}, last = {2, 16};
  // Sequence 0: 3 query rows but a context of 2 keys.
  EXPECT_THROW(fa.plan(qi.data(), ki.data(), last.data(), 2, nullptr), Error);
  const std::vector<int32_t> bad_last = {0, 16};
  EXPECT_THROW(fa.plan(qi.data(), ki.data(), bad_last.data(), 2, nullptr), Error);
  EXPECT_THROW(fa.plan(qi.data(), ki.data(), last.data(), 5, nullptr), Error);  // > max_seqs
  const std::vector<int32_t> ok_last = {3, 16};
  // Graph plans are for decode batches only.
  EXPECT_THROW(fa.plan(qi.data(), ki.data(), ok_last.data(), 2, nullptr, true), Error);

  cuda::PagedKv cache{};
  cuda::AttnBatch batch;
  EXPECT_THROW(fa.run(cache, nullptr, batch, 1.f, nullptr, nullptr), Error);  // not planned
  fa.plan(qi.data(), ki.data(), ok_last.data(), 2, nullptr);
  batch.num_seqs = 2, batch.total_q = 3;  // the plan has 4 rows
  EXPECT_THROW(fa.run(cache, nullptr, batch, 1.f, nullptr, nullptr), Error);
  NFP_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace nestedfp::gputest
