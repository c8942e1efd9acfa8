// Model loading: a model written to disk in Hugging Face layout (llama, qwen2 with biases, qwen3
// with qk-norm and tied embeddings, phi3 with fused qkv/gate_up) loads back to the same logits
// as the in-memory weights it was written from.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cpu/model_writer.hpp"
#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/safetensors.hpp"

using namespace nestedfp;
namespace fs = std::filesystem;
using testing_models::write_model;

namespace {

std::vector<float> logits_of(const engine::ModelWeights& w, Precision p) {
  engine::RunnerOptions o;
  o.num_kv_blocks = 8;
  engine::ModelRunner r(backend::make_cpu_backend(2), w, o);
  std::vector<int32_t> t;
  for (int i = 0; i < 40; ++i) t.push_back((i * 13 + 1) % w.config.vocab_size);
  engine::SingleSequence s(r);
  return s.feed(t, p, true);
}

}  // namespace

class LoaderRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(LoaderRoundTrip, SameLogitsAsInMemoryWeights) {
  const std::string type = GetParam();
  io::ModelConfig c;
  c.model_type = type;
  c.hidden_size = 32, c.intermediate_size = 48, c.num_layers = 2, c.num_heads = 4,
  c.num_kv_heads = 2;
  c.head_dim = 8, c.vocab_size = 100, c.max_position_embeddings = 128, c.rms_norm_eps = 1e-6;
  c.attention_bias = type == "qwen2";
  c.qk_norm = type == "qwen3";
  c.tie_word_embeddings = type == "qwen3";
  c.fused_qkv = c.fused_gate_up = type == "phi3";
  const auto mem = engine::ModelWeights::random(c, format::ScaleMode::Channel, 11);
  const std::string dir = write_model(mem, type, type);
  const auto disk = engine::ModelWeights::load(dir, format::ScaleMode::Channel);
  EXPECT_EQ(disk.report.nested, 7 * c.num_layers);
  EXPECT_FALSE(disk.lm_head.nested);
  for (Precision p : {Precision::FP16, Precision::FP8})
    EXPECT_EQ(logits_of(mem, p), logits_of(disk, p)) << type;
}

INSTANTIATE_TEST_SUITE_P(Types, LoaderRoundTrip,
                         ::testing::Values("llama", "qwen2", "qwen3", "phi3"));

TEST(Loader, TensorsThatCannotBeNestedStayPlain) {
  std::vector<uint16_t> w(4 * 8, 0x3C00);  // 1.0
  w[5] = 0x4400;                           // 4.0: too large for ScaleMode::None
  auto l = engine::make_linear("t", w, 4, 8, format::ScaleMode::None);
  EXPECT_FALSE(l.nested);
  EXPECT_FALSE(l.plain_reason.empty());
  EXPECT_EQ(l.fp16, w);
  auto l2 = engine::make_linear("t", w, 4, 8, format::ScaleMode::Channel);  // k = -2 fixes it
  EXPECT_TRUE(l2.nested);
}

TEST(Loader, MissingTensorIsAClearError) {
  io::ModelConfig c;
  c.model_type = "llama";
  c.hidden_size = 16, c.intermediate_size = 16, c.num_layers = 1, c.num_heads = 2,
  c.num_kv_heads = 2;
  c.head_dim = 8, c.vocab_size = 10, c.max_position_embeddings = 32;
  auto w = engine::ModelWeights::random(c, format::ScaleMode::None, 1);
  w.config.tie_word_embeddings = true;  // so no lm_head.weight is written
  const std::string dir = write_model(w, "llama", "missing-lm-head");
  std::string cfg;
  {
    std::ifstream f(dir + "/config.json");
    auto j = nlohmann::json::parse(f);
    j["tie_word_embeddings"] = false;
    cfg = j.dump();
  }
  std::ofstream(dir + "/config.json") << cfg;
  try {
    engine::ModelWeights::load(dir, format::ScaleMode::None);
    FAIL() << "loaded a model without lm_head.weight";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lm_head.weight"), std::string::npos) << e.what();
  }
}
