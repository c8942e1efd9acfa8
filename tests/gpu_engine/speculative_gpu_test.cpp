// Self-speculative decoding on the cuda backend, pystd-16m (docs/DESIGN.md §3.13): the verify
// step's per-row device argmax (sample_all) equals the argmax of the same rows' logits, many
// rows at once (more than one logits group); speculative greedy decoding through the engine
// agrees with plain FP16 decoding on the GPU (the verify step's GEMM shape differs from a
// decode's, so near-ties may flip: most outputs must be identical, and all must be at the
// start), with real acceptance and no block leak. Needs a Hopper GPU.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "cpu/pystd_fixture.hpp"
#include "engine/model_runner.hpp"
#include "gpu_engine/cuda_pystd.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/sampler.hpp"

using namespace nestedfp;
using namespace nestedfp::testing_pystd;

namespace {

engine::ModelRunner& spec_gpu() {
  static std::unique_ptr<engine::ModelRunner> r = [] {
    engine::RunnerOptions ro;
    ro.max_num_batched_tokens = 512;
    ro.max_num_seqs = 8;
    ro.num_kv_blocks = 512;
    return load_cuda_pystd(ro);
  }();
  return *r;
}

std::vector<std::vector<int32_t>> run(engine::ModelRunner& r, const std::string& spec, int batch,
                                      EngineStats* stats = nullptr) {
  EngineConfig ec;
  ec.max_num_batched_tokens = 512;
  ec.max_num_seqs = 8;
  ec.speculative = spec;
  Engine eng(r, ec);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < batch; ++i)
    reqs.push_back(greedy_request(std::vector<int32_t>(text_ids().begin() + 300 * i,
                                                       text_ids().begin() + 300 * i + 40 + 5 * i),
                                  48));
  auto out = run_to_completion(eng, reqs);
  if (stats) *stats = eng.stats();
  return out;
}

}  // namespace

TEST(CudaSpeculative, SampleAllRowsAreTheRowsArgmax) {
  engine::ModelRunner& r = spec_gpu();
  StepInput in;
  in.precision = Precision::FP16;
  for (int s = 0; s < 3; ++s) {  // 3 x 40 rows: more than one group of 64 logits rows
    SeqChunk c;
    c.seq_id = s;
    c.tokens.assign(text_ids().begin() + 1000 * s, text_ids().begin() + 1000 * s + 40);
    for (int b = 0; b < 3; ++b) c.block_table.push_back(s * 3 + b);
    c.sample = c.sample_all = true;
    c.sampling.temperature = 0.f;
    c.need_all_logits = true;
    in.seqs.push_back(c);
  }
  const StepOutput out = r.execute(in);
  const size_t V = size_t(r.vocab_size());
  for (size_t s = 0; s < in.seqs.size(); ++s) {
    ASSERT_EQ(out.row_tokens[s].size(), 40u);
    ASSERT_EQ(out.logits[s].size(), 40 * V);
    for (size_t i = 0; i < 40; ++i)
      EXPECT_EQ(out.row_tokens[s][i],
                argmax(std::span<const float>(out.logits[s]).subspan(i * V, V)))
          << "sequence " << s << " row " << i;
    EXPECT_EQ(out.tokens[s], out.row_tokens[s].back());
  }
}

TEST(CudaSpeculative, GreedyAgreesWithFp16Decoding) {
  engine::ModelRunner& r = spec_gpu();
  for (int batch : {1, 4}) {
    const auto plain = run(r, "off", batch);
    for (const char* spec : {"fp8:k=2", "fp8:k=4", "fp8:k=auto"}) {
      EngineStats st;
      const auto sp = run(r, spec, batch, &st);
      ASSERT_EQ(sp.size(), plain.size());
      int identical = 0;
      for (size_t i = 0; i < sp.size(); ++i) {
        identical += sp[i] == plain[i];
        ASSERT_EQ(sp[i].size(), 48u);
        // Any flip comes from a near-tie; the first tokens must agree.
        EXPECT_TRUE(std::equal(sp[i].begin(), sp[i].begin() + 8, plain[i].begin()))
            << spec << " batch " << batch << " request " << i;
      }
      EXPECT_GE(identical * 4, int(sp.size()) * 3) << spec << " batch " << batch;
      EXPECT_GT(double(st.spec_accepted), 0.5 * double(st.spec_drafted)) << spec;
      EXPECT_EQ(st.kv_blocks_used, 0) << spec;
    }
  }
}
