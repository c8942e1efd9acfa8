// Model loading: a model written to disk in Hugging Face layout (llama, qwen2 with biases, qwen3
// with qk-norm and tied embeddings, phi3 with fused qkv/gate_up) loads back to the same logits
// as the in-memory weights it was written from.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/safetensors.hpp"

using namespace nestedfp;
namespace fs = std::filesystem;

namespace {

std::vector<uint16_t> fp16_of(const engine::HostLinear& l) {
  return l.nested ? format::unscale_merge_tensor(*l.nested) : l.fp16;
}

// Writes `w` as a Hugging Face model directory of type `type` (phi3: fused tensors).
std::string write_model(const engine::ModelWeights& w, const std::string& type,
                        const std::string& name) {
  const auto& c = w.config;
  const fs::path dir = fs::path(NESTEDFP_BINARY_DIR) / "test-models" / name;
  fs::create_directories(dir);
  nlohmann::json j = {{"model_type", type},
                      {"architectures", {"X"}},
                      {"hidden_size", c.hidden_size},
                      {"intermediate_size", c.intermediate_size},
                      {"num_hidden_layers", c.num_layers},
                      {"num_attention_heads", c.num_heads},
                      {"num_key_value_heads", c.num_kv_heads},
                      {"head_dim", c.head_dim},
                      {"vocab_size", c.vocab_size},
                      {"max_position_embeddings", c.max_position_embeddings},
                      {"rms_norm_eps", c.rms_norm_eps},
                      {"rope_theta", c.rope_theta},
                      {"tie_word_embeddings", c.tie_word_embeddings},
                      {"hidden_act", "silu"},
                      {"torch_dtype", "float16"}};
  std::ofstream(dir / "config.json") << j.dump();
  std::vector<std::vector<uint16_t>> keep;  // owns the data until written
  std::vector<io::TensorToWrite> ts;
  auto add = [&](const std::string& n, std::vector<uint16_t> v, std::vector<int64_t> shape) {
    keep.push_back(std::move(v));
    ts.push_back({n, io::DType::F16, shape, keep.back().data(), keep.back().size() * 2});
  };
  keep.reserve(64);
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  add("model.embed_tokens.weight", w.embed, {c.vocab_size, H});
  add("model.norm.weight", w.final_norm, {H});
  if (!c.tie_word_embeddings) add("lm_head.weight", w.lm_head.fp16, {c.vocab_size, H});
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const auto& L = w.layers[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    auto lin = [&](const std::string& n, const engine::HostLinear& l) {
      add(p + n + ".weight", fp16_of(l), {l.rows, l.cols});
    };
    if (type == "phi3") {
      auto q = fp16_of(L.q), k = fp16_of(L.k), v = fp16_of(L.v), g = fp16_of(L.gate),
           u = fp16_of(L.up);
      q.insert(q.end(), k.begin(), k.end());
      q.insert(q.end(), v.begin(), v.end());
      g.insert(g.end(), u.begin(), u.end());
      add(p + "self_attn.qkv_proj.weight", q, {L.q.rows + L.k.rows + L.v.rows, H});
      add(p + "mlp.gate_up_proj.weight", g, {2 * I, H});
    } else {
      lin("self_attn.q_proj", L.q), lin("self_attn.k_proj", L.k), lin("self_attn.v_proj", L.v);
      lin("mlp.gate_proj", L.gate), lin("mlp.up_proj", L.up);
    }
    lin("self_attn.o_proj", L.o), lin("mlp.down_proj", L.down);
    if (c.attention_bias) {
      add(p + "self_attn.q_proj.bias", L.q.bias, {L.q.rows});
      add(p + "self_attn.k_proj.bias", L.k.bias, {L.k.rows});
      add(p + "self_attn.v_proj.bias", L.v.bias, {L.v.rows});
    }
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", L.q_norm, {c.head_dim});
      add(p + "self_attn.k_norm.weight", L.k_norm, {c.head_dim});
    }
    add(p + "input_layernorm.weight", L.input_norm, {H});
    add(p + "post_attention_layernorm.weight", L.post_norm, {H});
  }
  io::write_safetensors((dir / "model.safetensors").string(), ts);
  return dir.string();
}

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
