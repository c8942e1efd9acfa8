#pragma once
// Writes in-memory weights as a Hugging Face model directory (config.json + one safetensors
// file), so that tests can load them through the streaming loader like a real checkpoint.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/model_weights.hpp"
#include "nestedfp/safetensors.hpp"

namespace nestedfp::testing_models {

inline std::vector<uint16_t> fp16_of(const engine::HostLinear& l) {
  return l.nested ? format::unscale_merge_tensor(*l.nested) : l.fp16;
}

// Writes `w` under build/test-models/<name> as a model of type `type` (phi3: fused tensors).
inline std::string write_model(const engine::ModelWeights& w, const std::string& type,
                               const std::string& name) {
  namespace fs = std::filesystem;
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

}  // namespace nestedfp::testing_models
