#pragma once
// config.json of the Llama family (llama, mistral, qwen2, qwen3, phi3) normalised to one struct.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace nestedfp::io {

struct RopeScaling {
  std::string type = "default";  // "default" | "llama3" | "linear" (others rejected with an Error)
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type;    // llama | mistral | qwen2 | qwen3 | phi3
  std::string architecture;  // e.g. LlamaForCausalLM
  int hidden_size = 0, intermediate_size = 0, num_layers = 0;
  int num_heads = 0, num_kv_heads = 0, head_dim = 0, vocab_size = 0;
  int max_position_embeddings = 0;
  double rms_norm_eps = 1e-5;
  double initializer_range = 0.02;  // std of the random weights of --load-format dummy
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool attention_bias = false;  // q/k/v biases (qwen2)
  bool qk_norm = false;         // per-head RMSNorm on q and k (qwen3)
  bool tie_word_embeddings = false;
  bool fused_qkv = false, fused_gate_up = false;  // phi3 stores qkv_proj / gate_up_proj
  std::string hidden_act = "silu";
  std::string torch_dtype = "float16";
  std::vector<int> eos_token_ids;
  int bos_token_id = -1, pad_token_id = -1;
};

// Both throw Error naming the file (or "config.json") and the missing/invalid field.
ModelConfig parse_config(const nlohmann::json& j, const std::string& source = "config.json");
ModelConfig load_config(const std::string& model_dir);

}  // namespace nestedfp::io
