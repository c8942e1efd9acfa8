// config.json normalisation for each supported family, both RoPE spellings, and the errors.
#include "nestedfp/config.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io_test_util.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::io {
namespace {

using nlohmann::json;

json base(const char* type) {
  return json{{"model_type", type},     {"architectures", {"XForCausalLM"}},
              {"hidden_size", 512},     {"intermediate_size", 1536},
              {"num_hidden_layers", 4}, {"num_attention_heads", 8},
              {"vocab_size", 1000},     {"max_position_embeddings", 4096},
              {"rms_norm_eps", 1e-6}};
}

std::string error_of(const json& j, const std::string& src = "cfg/config.json") {
  try {
    parse_config(j, src);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Config, LlamaDefaults) {
  const ModelConfig c = parse_config(base("llama"));
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.architecture, "XForCausalLM");
  EXPECT_EQ(c.hidden_size, 512);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_EQ(c.num_heads, 8);
  EXPECT_EQ(c.num_kv_heads, 8);  // defaults to the number of heads
  EXPECT_EQ(c.head_dim, 64);     // defaults to hidden / heads
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_FALSE(c.attention_bias || c.qk_norm || c.fused_qkv || c.fused_gate_up);
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.bos_token_id, -1);
}

TEST(Config, Llama3RopeScalingOldForm) {
  json j = base("llama");
  j["num_key_value_heads"] = 2;
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  j["eos_token_id"] = {128001, 128008, 128009};
  j["bos_token_id"] = 128000;
  const ModelConfig c = parse_config(j);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{128001, 128008, 128009}));
  EXPECT_EQ(c.bos_token_id, 128000);

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};  // older key spelling
  const ModelConfig l = parse_config(j);
  EXPECT_EQ(l.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(l.rope_scaling.factor, 2.0);
}

TEST(Config, RopeParametersNewForm) {
  json j = base("llama");
  j["rope_parameters"] = {{"rope_type", "llama3"},   {"rope_theta", 500000.0},
                          {"factor", 32.0},          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  const ModelConfig c = parse_config(j);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
}

TEST(Config, Mistral) {
  json j = base("mistral");
  j["num_key_value_heads"] = 2;
  j["head_dim"] = 128;  // explicit head_dim differs from hidden / heads (Mistral-Nemo style)
  j["rope_theta"] = 1e6;
  j["sliding_window"] = nullptr;
  j["eos_token_id"] = 2;
  const ModelConfig c = parse_config(j);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
  EXPECT_FALSE(c.attention_bias);
}

TEST(Config, Qwen2HasAttentionBias) {
  json j = base("qwen2");
  j["tie_word_embeddings"] = true;
  j["torch_dtype"] = "bfloat16";
  const ModelConfig c = parse_config(j);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(Config, Qwen3HasQkNorm) {
  json j = base("qwen3");
  j["head_dim"] = 128;
  j["attention_bias"] = false;
  const ModelConfig c = parse_config(j);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.head_dim, 128);
}

TEST(Config, Phi3IsFused) {
  json j = base("phi3");
  j["rope_scaling"] = nullptr;
  const ModelConfig c = parse_config(j);
  EXPECT_TRUE(c.fused_qkv);
  EXPECT_TRUE(c.fused_gate_up);
  EXPECT_FALSE(c.qk_norm);
}

TEST(Config, ErrorsNameSourceAndField) {
  std::string msg = error_of(base("gpt2"));
  EXPECT_NE(msg.find("cfg/config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gpt2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("llama, mistral, qwen2, qwen3, phi3"), std::string::npos) << msg;

  for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "vocab_size", "model_type"}) {
    json j = base("llama");
    j.erase(field);
    msg = error_of(j);
    EXPECT_NE(msg.find("cfg/config.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(fmt::format("'{}'", field)), std::string::npos) << msg;
  }
  json j = base("llama");
  j["hidden_size"] = "512";
  EXPECT_NE(error_of(j).find("'hidden_size'"), std::string::npos);
  j = base("llama");
  j["num_key_value_heads"] = 3;  // 8 heads are not a multiple of 3
  EXPECT_NE(error_of(j).find("num_key_value_heads"), std::string::npos);
  j = base("llama");
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(error_of(j).find("yarn"), std::string::npos);
  j = base("llama");
  j["eos_token_id"] = {1, "x"};
  EXPECT_NE(error_of(j).find("eos_token_id"), std::string::npos);
  EXPECT_NE(error_of(json::array()).find("cfg/config.json"), std::string::npos);
}

TEST(Config, LoadFromDirectory) {
  test::TempDir d;
  std::string msg;
  try {
    load_config(d.path.string());
  } catch (const Error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  std::ofstream(d.file("config.json")) << R"({"model_type": "llama", "hidden_size": )";
  try {
    load_config(d.path.string());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(d.file("config.json")), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
}

TEST(Config, TinyModel) {
  const ModelConfig c = load_config(std::string(NESTEDFP_SOURCE_DIR) + "/models/pystd-16m");
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  EXPECT_EQ(c.hidden_size, 384);
  EXPECT_EQ(c.intermediate_size, 1024);
  EXPECT_EQ(c.num_layers, 6);
  EXPECT_EQ(c.num_heads, 6);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 8192);
  EXPECT_EQ(c.max_position_embeddings, 1024);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);  // from rope_parameters
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{1});
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.pad_token_id, 2);
  EXPECT_EQ(c.torch_dtype, "float16");  // from the newer "dtype" key
  EXPECT_FALSE(c.tie_word_embeddings);
}

}  // namespace
}  // namespace nestedfp::io
