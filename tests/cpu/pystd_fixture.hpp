#pragma once
// Shared by the tests that run the bundled pystd-16m model against its REFERENCE.json.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "engine/tp_executor.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::testing_pystd {

inline const std::string kModel = NESTEDFP_SOURCE_DIR "/models/pystd-16m";
inline const std::string kText = NESTEDFP_SOURCE_DIR "/../shared/data/eval/pystd_public.txt.gz";

inline const nlohmann::json& reference() {
  static const nlohmann::json j = [] {
    std::ifstream f(kModel + "/REFERENCE.json");
    return nlohmann::json::parse(f);
  }();
  return j;
}

// REFERENCE.json's greedy prompts whose top-2 margin at the last prompt token is clear (> 0.05),
// each with its FP16 greedy tokens up to the first near-tie (margin < 0.05, where summation order
// may pick either), at least 8.
struct GreedyCase {
  std::vector<int32_t> prompt, want;
  std::string label;  // the prompt's first 60 characters, for failure messages
};
inline std::vector<GreedyCase> clear_margin_greedy_cases() {
  std::vector<GreedyCase> out;
  for (const auto& g : reference()["greedy"]) {
    const auto top5 = g["last_logits_top5"];
    if (top5[0][1].get<double>() - top5[1][1].get<double>() <= 0.05) continue;
    const auto want = g["greedy_ids"].get<std::vector<int32_t>>();
    const auto margin = g["step_top2_margin_fp16"].get<std::vector<double>>();
    size_t n = 0;
    while (n < want.size() && margin[n] >= 0.05) ++n;
    n = std::max<size_t>(n, 8);
    out.push_back({g["prompt_ids"].get<std::vector<int32_t>>(),
                   std::vector<int32_t>(want.begin(), want.begin() + ptrdiff_t(n)),
                   g["prompt"].get<std::string>().substr(0, 60)});
  }
  return out;
}

// pystd-16m on the cpu backend with `o` (k = 0 planes); one per test binary that asks, kept for
// the whole run since loading is the slow part.
inline std::unique_ptr<engine::ModelRunner> make_runner(const engine::RunnerOptions& o) {
  return std::make_unique<engine::ModelRunner>(
      backend::make_cpu_backend(), engine::ModelWeights::load(kModel, format::ScaleMode::None), o);
}

// Small step limits for the exactness tests (48 KV blocks, 256-token steps, 8 sequences).
inline engine::RunnerOptions small_runner_options(bool fp8_activations = true) {
  engine::RunnerOptions o;
  o.fp8_activations = fp8_activations;
  o.num_kv_blocks = 48;
  o.max_num_batched_tokens = 256;
  o.max_num_seqs = 8;
  return o;
}

// The model in `dir` streamed from its checkpoint: whole on a cpu backend of `threads` threads
// (tp 1), or sharded over `tp` in-process ranks of one thread each.
inline std::unique_ptr<ModelExecutor> load_cpu_executor(const std::string& dir, int tp,
                                                        format::ScaleMode mode,
                                                        const engine::RunnerOptions& o,
                                                        bool dummy = false, int threads = 1) {
  engine::LoadOptions lo;
  lo.model_dir = dir, lo.scale_mode = mode, lo.dummy = dummy;
  if (tp == 1) return engine::ModelRunner::load(backend::make_cpu_backend(threads), lo, o);
  return engine::load_tensor_parallel(
      tp, [](int) { return backend::make_cpu_backend(1); }, lo, o);
}

inline const Tokenizer& tokenizer() {
  static const Tokenizer t = Tokenizer::load(kModel);
  return t;
}

// Token ids of the start of the public text: the first 8 chunks need 4096; 64 KB of text is plenty.
inline const std::vector<int32_t>& text_ids() {
  static const std::vector<int32_t> ids = [] {
    // NESTEDFP_PYSTD_TEXT: a copy elsewhere (the GPU machine has no ../shared).
    const char* env = std::getenv("NESTEDFP_PYSTD_TEXT");
    const std::string text = engine::read_text_file(env && *env ? env : kText);
    auto v = Tokenizer::load(kModel).encode(std::string_view(text).substr(0, 65536), false);
    if (v.size() < 8u * 512) throw std::runtime_error("text too short for 8 chunks of 512");
    const auto first = reference()["perplexity"]["first_ids"].get<std::vector<int32_t>>();
    if (!std::equal(first.begin(), first.end(), v.begin()))
      throw std::runtime_error("tokenizer disagrees with REFERENCE.json first_ids");
    return v;
  }();
  return ids;
}

// Mean NLL of each of the first 8 chunks of 512 ids (the REFERENCE.json protocol).
inline std::vector<double> first8_chunk_nll(engine::ModelRunner& r, Precision p) {
  const auto& ids = text_ids();
  std::vector<double> out;
  for (int i = 0; i < 8; ++i)
    out.push_back(engine::chunk_mean_nll(r, std::span(ids).subspan(size_t(i) * 512, 512), p));
  return out;
}

inline std::vector<double> reference_first8(const char* mode) {
  return reference()["perplexity"]["results"][mode]["chunk_mean_nll_first8"]
      .get<std::vector<double>>();
}

inline double mean(const std::vector<double>& v) {
  return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}

// Adds `reqs` to `eng`, steps it on this thread until it drains, and returns each request's
// generated token ids (the engine tests' common run).
inline std::vector<std::vector<int32_t>> run_to_completion(
    Engine& eng, const std::vector<GenerationRequest>& reqs) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& r : reqs) streams.push_back(eng.add_request(r));
  while (eng.step()) {
  }
  std::vector<std::vector<int32_t>> out;
  for (auto& s : streams) {
    std::vector<int32_t> ids;
    while (auto ev = s->next(std::chrono::milliseconds(0)))
      ids.insert(ids.end(), ev->token_ids.begin(), ev->token_ids.end());
    out.push_back(std::move(ids));
  }
  return out;
}

// A greedy request for `max_tokens` tokens that ignores EOS.
inline GenerationRequest greedy_request(std::vector<int32_t> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.sampling.temperature = 0.f;
  return r;
}

}  // namespace nestedfp::testing_pystd
