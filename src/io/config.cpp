// config.json of the Llama family normalised to ModelConfig. Family differences handled here:
// qwen2 always has q/k/v biases, qwen3 has per-head q/k RMSNorm, phi3 stores fused qkv_proj and
// gate_up_proj. RoPE comes either as rope_theta + rope_scaling (transformers <= 4.x) or as one
// rope_parameters object (transformers 5).
#include "nestedfp/config.hpp"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nestedfp/error.hpp"

namespace nestedfp::io {

namespace {

using json = nlohmann::json;
constexpr const char* kSupported = "llama, mistral, qwen2, qwen3, phi3";

struct Reader {
  const json& j;
  const std::string& src;

  const json* get(const char* key) const {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  }
  int req_int(const char* key) const {
    const json* v = get(key);
    if (!v) fail("{}: missing required field '{}'", src, key);
    return to_int(*v, key);
  }
  int opt_int(const char* key, int def) const {
    const json* v = get(key);
    return v ? to_int(*v, key) : def;
  }
  int to_int(const json& v, const char* key) const {
    if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
      fail("{}: field '{}' must be an integer, found {}", src, key, v.dump());
    return v.get<int>();
  }
  double opt_num(const json& obj, const char* key, double def) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return def;
    if (!it->is_number()) fail("{}: field '{}' must be a number, found {}", src, key, it->dump());
    return it->get<double>();
  }
  bool opt_bool(const char* key, bool def) const {
    const json* v = get(key);
    if (!v) return def;
    if (!v->is_boolean()) fail("{}: field '{}' must be true or false", src, key);
    return v->get<bool>();
  }
  std::string opt_str(const char* key, const std::string& def) const {
    const json* v = get(key);
    if (!v) return def;
    if (!v->is_string()) fail("{}: field '{}' must be a string", src, key);
    return v->get<std::string>();
  }
};

// Reads a rope_scaling / rope_parameters object (either spelling of the type key).
void parse_rope(const Reader& r, const json& obj, const char* field, ModelConfig& c) {
  if (!obj.is_object()) fail("{}: field '{}' must be an object", r.src, field);
  std::string type = "default";
  for (const char* k : {"rope_type", "type"}) {
    auto it = obj.find(k);
    if (it != obj.end() && !it->is_null()) {
      if (!it->is_string()) fail("{}: field '{}.{}' must be a string", r.src, field, k);
      type = it->get<std::string>();
      break;
    }
  }
  if (type != "default" && type != "llama3" && type != "linear")
    fail("{}: {} type '{}' is not supported (supported: default, linear, llama3)", r.src, field,
         type);
  RopeScaling& s = c.rope_scaling;
  s.type = type;
  s.factor = r.opt_num(obj, "factor", 1.0);
  s.low_freq_factor = r.opt_num(obj, "low_freq_factor", s.low_freq_factor);
  s.high_freq_factor = r.opt_num(obj, "high_freq_factor", s.high_freq_factor);
  s.original_max_position_embeddings =
      int(r.opt_num(obj, "original_max_position_embeddings", s.original_max_position_embeddings));
  if (type != "default" && !(s.factor > 0))
    fail("{}: field '{}.factor' must be positive", r.src, field);
  if (type == "llama3" && !(s.high_freq_factor > s.low_freq_factor))
    fail("{}: llama3 {} needs high_freq_factor > low_freq_factor", r.src, field);
}

}  // namespace

ModelConfig parse_config(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: must be a JSON object", source);
  Reader r{j, source};
  ModelConfig c;
  c.model_type = r.opt_str("model_type", "");
  if (c.model_type.empty()) fail("{}: missing required field 'model_type'", source);
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2" &&
      c.model_type != "qwen3" && c.model_type != "phi3")
    fail("{}: model_type '{}' is not supported (supported: {})", source, c.model_type, kSupported);

  if (const json* a = r.get("architectures")) {
    if (!a->is_array()) fail("{}: field 'architectures' must be a list", source);
    if (!a->empty() && (*a)[0].is_string()) c.architecture = (*a)[0].get<std::string>();
  }
  c.hidden_size = r.req_int("hidden_size");
  c.intermediate_size = r.req_int("intermediate_size");
  c.num_layers = r.req_int("num_hidden_layers");
  c.num_heads = r.req_int("num_attention_heads");
  c.vocab_size = r.req_int("vocab_size");
  c.num_kv_heads = r.opt_int("num_key_value_heads", c.num_heads);
  c.max_position_embeddings = r.opt_int("max_position_embeddings", 2048);
  for (auto [name, v] : std::initializer_list<std::pair<const char*, int>>{
           {"hidden_size", c.hidden_size},
           {"intermediate_size", c.intermediate_size},
           {"num_hidden_layers", c.num_layers},
           {"num_attention_heads", c.num_heads},
           {"num_key_value_heads", c.num_kv_heads},
           {"vocab_size", c.vocab_size},
           {"max_position_embeddings", c.max_position_embeddings}})
    if (v <= 0) fail("{}: field '{}' must be positive, found {}", source, name, v);
  if (c.num_heads % c.num_kv_heads != 0)
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source,
         c.num_heads, c.num_kv_heads);
  if (r.get("head_dim")) {
    c.head_dim = r.req_int("head_dim");
    if (c.head_dim <= 0) fail("{}: field 'head_dim' must be positive", source);
  } else {
    if (c.hidden_size % c.num_heads != 0)
      fail(
          "{}: hidden_size {} is not a multiple of num_attention_heads {} and head_dim is not "
          "given",
          source, c.hidden_size, c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  c.rms_norm_eps = r.opt_num(j, "rms_norm_eps", c.rms_norm_eps);
  c.initializer_range = r.opt_num(j, "initializer_range", c.initializer_range);
  if (!(c.initializer_range > 0)) fail("{}: field 'initializer_range' must be positive", source);

  // RoPE: rope_parameters (new) wins; otherwise rope_theta + optional rope_scaling.
  c.rope_theta = r.opt_num(j, "rope_theta", c.rope_theta);
  if (const json* rp = r.get("rope_parameters")) {
    parse_rope(r, *rp, "rope_parameters", c);
    c.rope_theta = r.opt_num(*rp, "rope_theta", c.rope_theta);
  } else if (const json* rs = r.get("rope_scaling")) {
    parse_rope(r, *rs, "rope_scaling", c);
  }
  if (!(c.rope_theta > 0)) fail("{}: field 'rope_theta' must be positive", source);

  c.tie_word_embeddings = r.opt_bool("tie_word_embeddings", false);
  c.hidden_act = r.opt_str("hidden_act", c.hidden_act);
  if (c.hidden_act != "silu")
    fail("{}: hidden_act '{}' is not supported (only silu)", source, c.hidden_act);
  c.torch_dtype = r.opt_str("torch_dtype", r.opt_str("dtype", c.torch_dtype));

  c.attention_bias = r.opt_bool("attention_bias", false);
  if (c.model_type == "qwen2") c.attention_bias = true;  // Qwen2 always has q/k/v biases
  if (c.model_type == "qwen3") c.qk_norm = true;
  if (c.model_type == "phi3") c.fused_qkv = c.fused_gate_up = true;

  if (const json* e = r.get("eos_token_id")) {
    if (e->is_array()) {
      for (auto& x : *e) c.eos_token_ids.push_back(r.to_int(x, "eos_token_id"));
    } else {
      c.eos_token_ids.push_back(r.to_int(*e, "eos_token_id"));
    }
  }
  c.bos_token_id = r.opt_int("bos_token_id", -1);
  c.pad_token_id = r.opt_int("pad_token_id", -1);
  return c;
}

ModelConfig load_config(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  std::ifstream in(path);
  if (!in) fail("{}: cannot read (is {} a model directory?)", path, model_dir);
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
  return parse_config(j, path);
}

}  // namespace nestedfp::io
