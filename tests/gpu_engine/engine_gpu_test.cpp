// The whole engine on the cuda backend against the cpu reference backend, on pystd-16m (a real
// model): perplexity in FP16 and NestedFP8, greedy continuations through device sampling, seeded
// sampling reproducibility, --weights fp16 (the plain FP16 engine) and dummy weights. Needs a
// Hopper GPU (ctest -L gpu; scripts/gpu-check.sh).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <set>
#include <stdexcept>

#include "cpu/pystd_fixture.hpp"
#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "gpu_engine/cuda_pystd.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/sampler.hpp"
#include "nestedfp/tokenizer.hpp"

using namespace nestedfp;
using namespace nestedfp::testing_pystd;

namespace {

std::unique_ptr<engine::ModelRunner> cuda_runner(bool nested = true, int max_seqs = 8) {
  backend::BackendOptions bo;
  bo.device = "cuda";
  engine::LoadOptions lo;
  lo.model_dir = kModel;
  lo.nested = nested;
  engine::RunnerOptions ro;
  ro.max_num_batched_tokens = 512;
  ro.max_num_seqs = max_seqs;
  ro.num_kv_blocks = 512;
  return engine::ModelRunner::load(backend::make_backend(bo), lo, ro);
}

engine::ModelRunner& cpu_runner() {
  static std::unique_ptr<engine::ModelRunner> r;
  if (!r) {
    engine::RunnerOptions o;
    o.num_kv_blocks = 64;
    o.max_num_batched_tokens = 512;
    r = std::make_unique<engine::ModelRunner>(
        backend::make_cpu_backend(), engine::ModelWeights::load(kModel, format::ScaleMode::None),
        o);
  }
  return *r;
}

engine::ModelRunner& gpu() {
  static std::unique_ptr<engine::ModelRunner> r = cuda_runner();
  return *r;
}

double ppl(const std::vector<double>& nll) { return std::exp(mean(nll)); }

}  // namespace

TEST(CudaEngine, LoadsEveryLinearNested) {
  auto& r = gpu();
  EXPECT_EQ(r.load_report().nested, 42);
  EXPECT_EQ(r.load_report().plain, 0);
  EXPECT_TRUE(r.backend().is_gpu());
}

// 64 chunks of the public text (the REFERENCE.json protocol), tokenized once.
const std::vector<int32_t>& long_ids() {
  static const std::vector<int32_t> ids = [] {
    const char* env = std::getenv("NESTEDFP_PYSTD_TEXT");
    const std::string text = engine::read_text_file(env && *env ? env : kText);
    auto v = Tokenizer::load(kModel).encode(std::string_view(text).substr(0, 1 << 20), false);
    if (v.size() < 64u * 512) throw std::runtime_error("text too short for 64 chunks of 512");
    return v;
  }();
  return ids;
}

// Perplexity within 0.1% of the cpu backend over 64 chunks, in both precisions. (Over 8 chunks
// NestedFP8 is not that stable: per-token E4M3 rounding turns summation-order differences into
// chunk NLL changes of up to ~0.007 on any backend, see tests/cpu/acceptance_test.cpp.) FP8 must
// differ from FP16 by more than that (the FP8 path really ran), and the first 8 chunks must match
// REFERENCE.json (Hugging Face on an H200) as the cpu acceptance test requires.
TEST(CudaEngine, PerplexityMatchesCpuBackend) {
  for (Precision p : {Precision::FP16, Precision::FP8}) {
    const double g = engine::perplexity(gpu(), long_ids(), p, 64).ppl;
    const double c = engine::perplexity(cpu_runner(), long_ids(), p, 64).ppl;
    EXPECT_NEAR(g / c, 1.0, 1e-3) << to_string(p) << ": cuda " << g << " cpu " << c;
    std::printf("[ perplexity %s, 64 chunks: cuda %.5f, cpu %.5f ]\n", to_string(p), g, c);
  }
  const auto f16 = first8_chunk_nll(gpu(), Precision::FP16),
             f8 = first8_chunk_nll(gpu(), Precision::FP8);
  EXPECT_NEAR(mean(f16), mean(reference_first8("fp16")), 0.002);
  EXPECT_NEAR(mean(f8), mean(reference_first8("nested_fp8")), 0.004);
  EXPECT_GT(mean(f8) - mean(f16), 0.0005) << "FP8 should cost accuracy: did the FP8 path run?";
}

// NestedFP16 is exact FP16: the plain FP16 engine (cuBLAS on the same fp16 weights) gives the same
// perplexity up to summation order.
TEST(CudaEngine, NestedFp16MatchesPlainFp16Engine) {
  auto plain = cuda_runner(false);
  EXPECT_EQ(plain->load_report().nested, 0);
  const double a = ppl(first8_chunk_nll(gpu(), Precision::FP16)),
               b = ppl(first8_chunk_nll(*plain, Precision::FP16));
  EXPECT_NEAR(a / b, 1.0, 2e-4) << "nested " << a << " plain " << b;
}

// Fused qkv / gate_up GEMMs (the default) against separate ones: the GEMMs pick their
// configurations by shape, so summation order may differ, but the model is the same: FP16
// perplexity as NestedFp16MatchesPlainFp16Engine, NestedFP8 over 64 chunks as the cpu comparison.
TEST(CudaEngine, FusedProjectionsMatchSeparateGemms) {
  engine::RunnerOptions ro;
  ro.max_num_batched_tokens = 512, ro.max_num_seqs = 8, ro.num_kv_blocks = 512;
  ro.fuse_projections = false;
  auto apart = load_cuda_pystd(ro);
  EXPECT_EQ(apart->fused_layers().qkv, 0);
  EXPECT_EQ(gpu().fused_layers().qkv, 6);
  EXPECT_EQ(gpu().fused_layers().gate_up, 6);
  const double a = ppl(first8_chunk_nll(gpu(), Precision::FP16)),
               b = ppl(first8_chunk_nll(*apart, Precision::FP16));
  EXPECT_NEAR(a / b, 1.0, 2e-4) << "fused " << a << " separate " << b;
  const double f8 = engine::perplexity(gpu(), long_ids(), Precision::FP8, 64).ppl,
               s8 = engine::perplexity(*apart, long_ids(), Precision::FP8, 64).ppl;
  EXPECT_NEAR(f8 / s8, 1.0, 1e-3) << "fused " << f8 << " separate " << s8;
}

namespace {
std::vector<int32_t> run_request(Engine& eng, GenerationRequest req) {
  auto s = eng.add_request(std::move(req));
  std::vector<int32_t> out;
  for (int i = 0; i < 100000; ++i) {
    eng.step();
    while (auto ev = s->next(std::chrono::milliseconds(0))) {
      out.insert(out.end(), ev->token_ids.begin(), ev->token_ids.end());
      if (ev->finish != FinishReason::None) return out;
    }
  }
  ADD_FAILURE() << "request did not finish";
  return out;
}
}  // namespace

// Greedy through the engine (device argmax) equals REFERENCE.json where its top-2 margin is clear.
TEST(CudaEngine, GreedyMatchesReference) {
  EngineConfig ec;
  ec.max_num_batched_tokens = 512;
  ec.max_num_seqs = 8;
  Engine eng(gpu(), ec);
  const auto cases = clear_margin_greedy_cases();
  for (const auto& c : cases)
    EXPECT_EQ(run_request(eng, greedy_request(c.prompt, int(c.want.size()))), c.want)
        << "prompt: " << c.label;
  EXPECT_GE(cases.size(), 4u);
}

// On the cuda backend a seeded request is reproducible for the same batch composition: alone
// twice, and inside the same mix of requests twice. (Unlike the cpu backend, logits are not
// batch-invariant: GEMM configurations and attention splits depend on the step's size.)
TEST(CudaEngine, SeededSamplingIsReproducible) {
  EngineConfig ec;
  ec.max_num_batched_tokens = 512;
  ec.max_num_seqs = 8;
  Engine eng(gpu(), ec);
  GenerationRequest req;
  req.prompt = std::vector<int32_t>(text_ids().begin(), text_ids().begin() + 40);
  req.max_tokens = 48;
  req.ignore_eos = true;
  req.sampling.temperature = 0.9f;
  req.sampling.top_p = 0.95f;
  req.sampling.top_k = 50;
  req.sampling.seed = 1234;
  req.logprobs = 3;
  EXPECT_EQ(run_request(eng, req), run_request(eng, req));
  auto mixed = [&] {  // the request plus five others submitted together
    std::vector<std::shared_ptr<RequestStream>> others;
    for (int i = 0; i < 5; ++i) {
      GenerationRequest o = req;
      o.sampling.seed = 100 + i;
      o.prompt.resize(size_t(10 + 5 * i));
      others.push_back(eng.add_request(o));
    }
    auto out = run_request(eng, req);
    while (eng.step()) {
    }
    return out;
  };
  const auto a = mixed();
  EXPECT_EQ(a, mixed());
  GenerationRequest other = req;
  other.sampling.seed = 99;
  EXPECT_NE(run_request(eng, other), run_request(eng, req));
}

// --load-format dummy fills any config on the device (pystd's config here) and the step runs.
TEST(CudaEngine, DummyWeightsRun) {
  backend::BackendOptions bo;
  bo.device = "cuda";
  engine::LoadOptions lo;
  lo.model_dir = kModel;
  lo.dummy = true;
  lo.seed = 7;
  engine::RunnerOptions ro;
  ro.max_num_batched_tokens = 256;
  ro.max_num_seqs = 4;
  ro.num_kv_blocks = 64;
  auto r = engine::ModelRunner::load(backend::make_backend(bo), lo, ro);
  EXPECT_EQ(r->load_report().nested, 42);  // N(0, 0.02) weights are all representable
  engine::SingleSequence seq(*r);
  const auto logits = seq.feed(std::span(text_ids()).first(100), Precision::FP8);
  ASSERT_EQ(logits.size(), size_t(r->vocab_size()));
  for (float l : logits) ASSERT_TRUE(std::isfinite(l));
}

// Decode steps replay CUDA graphs (captured at first use per batch bucket and precision); their
// tokens equal those of an engine that launches every kernel (--enforce-eager), in both
// precisions, for a batch that fills a bucket and one that needs padding.
TEST(CudaEngine, DecodeGraphsMatchEagerSteps) {
  backend::BackendOptions bo;
  bo.device = "cuda";
  auto make = [&](bool graphs) {
    engine::LoadOptions lo;
    lo.model_dir = kModel;
    engine::RunnerOptions ro;
    ro.max_num_batched_tokens = 512;
    ro.max_num_seqs = 8;
    ro.num_kv_blocks = 256;
    ro.cuda_graphs = graphs;
    return engine::ModelRunner::load(backend::make_backend(bo), lo, ro);
  };
  auto graphs = make(true), eager = make(false);
  for (Precision p : {Precision::FP16, Precision::FP8}) {
    for (int batch : {4, 3}) {
      auto run = [&](engine::ModelRunner& r) {
        EngineConfig ec;
        ec.max_num_batched_tokens = 512;
        ec.max_num_seqs = 8;
        ec.precision = to_string(p);
        Engine eng(r, ec);
        std::vector<GenerationRequest> reqs;
        for (int i = 0; i < batch; ++i)
          reqs.push_back(
              greedy_request(std::vector<int32_t>(text_ids().begin() + 100 * i,
                                                  text_ids().begin() + 100 * i + 30 + 7 * i),
                             24));
        return run_to_completion(eng, reqs);
      };
      const uint64_t before = graphs->graph_replays();
      const auto a = run(*graphs), b = run(*eager);
      EXPECT_EQ(a, b) << to_string(p) << " batch " << batch;
      EXPECT_GT(graphs->graph_replays(), before + 10) << "decode steps did not replay graphs";
      EXPECT_EQ(eager->graph_replays(), 0u);
    }
  }
}

// Per-op profiling (bench engine): a profiled decode step runs eagerly (CUDA events cannot be
// graph nodes), marks every op kind, and its op times add up to its wall time; graphs replay again
// once profiling is off, and pause_graphs keeps them off. Memory accessors report what was
// allocated.
TEST(CudaEngine, ProfiledStepsRunEagerAndCoverTheStep) {
  auto r = cuda_runner(true, 8);
  StepInput pre;
  SeqChunk c;
  c.seq_id = 1, c.start_pos = 0, c.block_table = {0, 1, 2, 3, 4, 5, 6, 7};
  c.tokens.assign(text_ids().begin(), text_ids().begin() + 30);
  c.need_logits = false, c.sample = true, c.sampling.temperature = 0;
  pre.seqs.push_back(c);
  int32_t last = r->execute(pre).tokens[0], pos = 30;
  auto decode = [&](Precision p) {
    StepInput in;
    in.precision = p;
    SeqChunk d = c;
    d.start_pos = pos++, d.tokens = {last};
    in.seqs.push_back(d);
    last = r->execute(in).tokens[0];
  };
  for (Precision p : {Precision::FP16, Precision::FP8}) {
    decode(p), decode(p);  // capture, then replay
    const uint64_t replays = r->graph_replays();
    auto& be = r->backend();
    be.profile_begin();
    const auto t0 = std::chrono::steady_clock::now();
    decode(p);
    const double wall =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const auto ops = be.profile_end();
    EXPECT_EQ(r->graph_replays(), replays) << "a profiled step replayed a graph";
    std::set<std::string> names;
    double sum = 0;
    for (const auto& o : ops) names.insert(o.op), sum += o.ms;
    for (const char* op : {"step setup", "embedding", "rmsnorm", "qkv GEMM", "qkv split",
                           "rope + kv write", "attention", "o GEMM", "gate_up GEMM", "silu_mul",
                           "down GEMM", "final norm", "lm_head", "sampling"})
      EXPECT_TRUE(names.count(op)) << op << " " << to_string(p);
    EXPECT_EQ(names.count("quantize"), p == Precision::FP8 ? 1u : 0u);
    EXPECT_GT(sum, 0.5 * wall);
    EXPECT_LT(sum, wall + 0.05);
    decode(p);
    EXPECT_EQ(r->graph_replays(), replays + 1) << "graphs did not resume after profiling";
    r->pause_graphs(true);
    decode(p);
    EXPECT_EQ(r->graph_replays(), replays + 1) << "pause_graphs did not stop graph replays";
    r->pause_graphs(false);
  }
  const engine::RunnerMemory m = r->memory();
  EXPECT_GT(m.nested_linears, 0u);
  EXPECT_EQ(m.plain_linears, 0u);
  EXPECT_EQ(m.kv_blocks, 513);  // the graph pad block included
  EXPECT_EQ(m.kv_cache, size_t(513) * engine::ModelRunner::kv_bytes_per_block(r->config()));
  size_t fi = 0, cublas = 0;
  for (const auto& it : m.backend) {
    if (it.what.rfind("FlashInfer", 0) == 0) fi = it.bytes;
    if (it.what.rfind("cuBLAS", 0) == 0) cublas = it.bytes;
  }
  EXPECT_GT(fi, 0u);
  EXPECT_GT(cublas, 0u);  // the lm_head runs on cuBLAS
}
