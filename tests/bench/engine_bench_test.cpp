// `bench engine` on the cpu backend with pystd-16m (a real model): every section of the result,
// a per-op breakdown that adds up to the step, an offline run that produced every token, and the
// profiling hook's contract (off: nothing recorded; on: segments summed by op).
#include "bench/engine_bench.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "engine/op_names.hpp"
#include "nestedfp/backend.hpp"

namespace nestedfp {
namespace {

using nlohmann::json;

std::string model_dir() { return std::string(NESTEDFP_SOURCE_DIR) + "/models/pystd-16m"; }

std::unique_ptr<engine::ModelRunner> load(const std::string& weights, int kv_blocks, int seqs,
                                          int tokens) {
  engine::LoadOptions lo;
  lo.model_dir = model_dir();
  lo.nested = weights == "nested";
  engine::RunnerOptions ro;
  ro.num_kv_blocks = kv_blocks, ro.max_num_seqs = seqs, ro.max_num_batched_tokens = tokens;
  return engine::ModelRunner::load(backend::make_cpu_backend(2), lo, ro);
}

TEST(ProfileHook, SumsSegmentsByOpInFirstMarkOrder) {
  const char *a = "a", *b = "b";
  const auto t = backend::sum_segments({{a, 1.0}, {b, 2.0}, {nullptr, 5.0}, {a, 0.5}});
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].op, "a");
  EXPECT_DOUBLE_EQ(t[0].ms, 1.5);
  EXPECT_EQ(t[0].segments, 2);
  EXPECT_EQ(t[1].op, "b");
  EXPECT_DOUBLE_EQ(t[1].ms, 2.0);
}

TEST(ProfileHook, OffRecordsNothingAndOnCoversTheStep) {
  auto r = load("nested", 8, 2, 64);
  StepInput in;
  SeqChunk c;
  c.seq_id = 1, c.tokens = {5, 6, 7}, c.block_table = {0}, c.need_logits = false, c.sample = true;
  c.sampling.temperature = 0;
  in.seqs.push_back(c);
  in.precision = Precision::FP8;
  auto& be = r->backend();
  r->execute(in);  // profiling off: marks are ignored, and a later profile starts empty
  EXPECT_FALSE(be.profiling());
  be.profile_begin();
  EXPECT_TRUE(be.profile_end().empty());

  be.profile_begin();
  const auto t0 = std::chrono::steady_clock::now();
  r->execute(in);
  const double wall =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const auto ops = be.profile_end();
  std::set<std::string> names;
  double sum = 0;
  for (const auto& o : ops) names.insert(o.op), sum += o.ms;
  for (const char* op :
       {engine::op::kSetup, engine::op::kEmbedding, engine::op::kRmsnorm, engine::op::kQkv,
        engine::op::kRopeKv, engine::op::kAttention, engine::op::kQuantize, engine::op::kO,
        engine::op::kGateUp, engine::op::kSiluMul, engine::op::kDown, engine::op::kFinalNorm,
        engine::op::kLmHead, engine::op::kSampling})
    EXPECT_TRUE(names.count(op)) << op;
  EXPECT_EQ(names.size(), ops.size());
  EXPECT_LE(sum, wall * 1.001 + 0.01);  // the marks lie inside the timed call
  EXPECT_GT(sum, wall * 0.9);
  // Per layer: one qkv segment (three GEMMs under one mark), then o, gate_up, down.
  for (const auto& o : ops) {
    if (o.op == engine::op::kQkv) {
      EXPECT_EQ(o.segments, r->config().num_layers);
    }
  }
}

TEST(EngineBench, SmokeOnPystdHasEverySection) {
  bench::EngineBenchOptions o;
  o.batches = {1, 4};
  o.context = 24, o.steps = 2, o.warmup = 1;
  o.prefill_chunk = 32, o.prefill_steps = 1;
  o.switch_batches = {2}, o.switch_steps = 2;
  o.profile_batches = {1, 4}, o.profile_steps = 2;
  o.offline_requests = 6, o.offline_input = 20, o.offline_output = 3;
  o.max_num_batched_tokens = 64, o.max_num_seqs = 4;
  std::vector<std::string> built;
  const json r = bench::run_engine_bench(o,
                                         [&](const std::string& w, int kv, int seqs, int tokens) {
                                           built.push_back(w);
                                           return load(w, kv, seqs, tokens);
                                         },
                                         {{"model", "pystd-16m"}, {"command", "test"}});
  EXPECT_EQ(built, (std::vector<std::string>{"fp16", "nested"}));
  for (const char* k : {"options", "config", "decode", "prefill", "switch", "breakdown", "offline",
                        "memory", "memory_from_config", "goals", "analysis"})
    EXPECT_TRUE(r.contains(k)) << k;
  EXPECT_EQ(r["decode"].size(), 6u);  // 3 engines x 2 batches
  EXPECT_EQ(r["prefill"].size(), 3u);
  ASSERT_EQ(r["switch"].size(), 1u);
  EXPECT_EQ(r["switch"][0]["batch"], 2);
  ASSERT_EQ(r["breakdown"].size(), 6u);
  for (const auto& b : r["breakdown"]) {
    const double step = b["step_ms"], sum = b["sum_ms"];
    EXPECT_NEAR(sum, step, 0.1 * step) << b["engine"] << " batch " << b["batch"];
    EXPECT_GT(b["eager_ms"].get<double>(), 0.0);
    double ops = 0, share = 0;
    for (const auto& op : b["ops"])
      ops += op["ms"].get<double>(), share += op["share"].get<double>();
    EXPECT_NEAR(ops, sum, 1e-9);
    EXPECT_NEAR(share, 1.0, 1e-9);
  }
  ASSERT_EQ(r["offline"].size(), 3u);
  for (const auto& off : r["offline"]) {
    EXPECT_GT(off["steps"].get<int>(), 0);
    EXPECT_NEAR(off["output_tok_s"].get<double>() * off["wall_s"].get<double>(), 18.0, 1e-6);
    EXPECT_LE(off["executor_s"].get<double>(), off["wall_s"].get<double>());
    EXPECT_GE(off["host_s"].get<double>(), 0.0);
  }
  ASSERT_EQ(r["memory"].size(), 2u);
  const auto& plain = r["memory"][0];
  const auto& nested = r["memory"][1];
  const double params = r["memory_from_config"]["linear_params"];
  EXPECT_EQ(plain["nested_linears"], 0);
  EXPECT_GE(plain["plain_linears"].get<double>(), 2 * params);
  EXPECT_GE(nested["nested_linears"].get<double>() + nested["plain_linears"].get<double>(),
            2 * params);
  EXPECT_LT(nested["weights"].get<double>(),
            plain["weights"].get<double>() + params);  // no second (FP8) copy
  EXPECT_EQ(nested["kv_blocks"], r["options"]["kv_blocks"]);
  EXPECT_EQ(r["goals"].size(), 7u);

  const std::string md = bench::engine_bench_markdown(r);
  for (const char* h : {"## Goals", "## Decode step time", "## Prefill", "## Precision switch",
                        "## Per-op breakdown", "## Offline throughput", "## Memory"})
    EXPECT_NE(md.find(h), std::string::npos) << h;
  const auto png = std::filesystem::temp_directory_path() / "nestedfp_engine_bench_test.png";
  bench::engine_bench_png(r, png.string());
  std::ifstream f(png, std::ios::binary);
  char sig[8] = {};
  f.read(sig, 8);
  EXPECT_EQ(std::string(sig + 1, 3), "PNG");
  std::filesystem::remove(png);
}

}  // namespace
}  // namespace nestedfp
