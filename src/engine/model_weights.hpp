#pragma once
// Host-side weights of a Llama-family model, ready to hand to a backend: every eligible linear
// weight split into the nested planes (format::split_tensor), the rest plain FP16. lm_head and
// the embedding are never nested. Fused phi3 tensors (qkv_proj, gate_up_proj) are split here.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nestedfp/config.hpp"
#include "nestedfp/format.hpp"

namespace nestedfp::engine {

struct HostLinear {
  std::string name;
  int64_t rows = 0, cols = 0;                  // [out_features, in_features]
  std::optional<format::NestedTensor> nested;  // set when the weight is nested
  std::vector<uint16_t> fp16;                  // plain fp16 [rows, cols] otherwise
  std::vector<uint16_t> bias;                  // optional fp16 [rows]
  std::string plain_reason;                    // why it is plain (empty when nested)
};

struct HostLayer {
  HostLinear q, k, v, o, gate, up, down;
  std::vector<uint16_t> input_norm, post_norm;  // [hidden]
  std::vector<uint16_t> q_norm, k_norm;         // [head_dim] (qwen3), else empty
};

struct LoadReport {
  int nested = 0, plain = 0;
  std::vector<std::string> plain_tensors;  // "name: reason"
  int64_t bf16_overflow = 0, bf16_inexact = 0, bf16_underflow = 0;
};

struct ModelWeights {
  io::ModelConfig config;
  format::ScaleMode scale_mode = format::ScaleMode::None;
  std::vector<uint16_t> embed;  // [vocab, hidden]
  std::vector<HostLayer> layers;
  std::vector<uint16_t> final_norm;
  HostLinear lm_head;           // always plain fp16 (a copy of embed when tied)
  LoadReport report;

  // Reads config.json and the safetensors of `dir`; logs every tensor left plain and any BF16
  // conversion losses. Throws Error on missing files/tensors and shape mismatches.
  static ModelWeights load(const std::string& dir, format::ScaleMode mode);
  // Random weights for a config (tests, benchmarks): normal(0, std) linear weights, norms near 1.
  static ModelWeights random(const io::ModelConfig& config, format::ScaleMode mode, uint64_t seed,
                             float std = 0.05f);
};

// Splits `w` [rows, cols] into the nested format when eligible under `mode`, else keeps it plain.
HostLinear make_linear(std::string name, std::vector<uint16_t> w, int64_t rows, int64_t cols,
                       format::ScaleMode mode, bool allow_nesting = true);

}  // namespace nestedfp::engine
