#pragma once
// Host-side weights of a Llama-family model, ready to hand to a backend: every eligible linear
// weight split into the nested planes (format::split_tensor), the rest plain FP16. lm_head and
// the embedding are never nested. Fused phi3 tensors (qkv_proj, gate_up_proj) are split here.
// For comparisons the linear weights can instead be stored as plain FP8 (LinearStorage).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nestedfp/config.hpp"
#include "nestedfp/format.hpp"
#include "nestedfp/fp8_weight.hpp"

namespace nestedfp::engine {

// How the decoder's linear weights are stored (lm_head and embeddings always stay FP16).
enum class LinearStorage {
  Nested,         // the nested format (eligible weights), ScaleMode none|channel
  Fp8PerTensor,   // baseline: E4M3 with scale max|W| / 448, no FP16 copy
  Fp8PerChannel,  // baseline: E4M3 with scale max|W_row| / 448 per output row, no FP16 copy
};
const char* to_string(LinearStorage s);

struct HostLinear {
  std::string name;
  int64_t rows = 0, cols = 0;                  // [out_features, in_features]
  std::optional<format::NestedTensor> nested;  // set when the weight is nested
  std::optional<format::Fp8Tensor> fp8;        // set when stored as an FP8 baseline
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
  int nested = 0, plain = 0, fp8 = 0;
  std::vector<std::string> plain_tensors;  // "name: reason"
  int64_t bf16_overflow = 0, bf16_inexact = 0, bf16_underflow = 0;
};

struct ModelWeights {
  io::ModelConfig config;
  format::ScaleMode scale_mode = format::ScaleMode::None;
  LinearStorage storage = LinearStorage::Nested;
  std::vector<uint16_t> embed;  // [vocab, hidden]
  std::vector<HostLayer> layers;
  std::vector<uint16_t> final_norm;
  HostLinear lm_head;  // always plain fp16 (a copy of embed when tied)
  LoadReport report;

  // Reads config.json and the safetensors of `dir`; logs every tensor left plain and any BF16
  // conversion losses. Throws Error on missing files/tensors and shape mismatches.
  // `storage` other than Nested quantizes every decoder linear weight to FP8 (mode is unused).
  static ModelWeights load(const std::string& dir, format::ScaleMode mode,
                           LinearStorage storage = LinearStorage::Nested);
  // Random weights for a config (tests, benchmarks): normal(0, std) linear weights, norms near 1.
  static ModelWeights random(const io::ModelConfig& config, format::ScaleMode mode, uint64_t seed,
                             float std = 0.05f);
};

// Splits `w` [rows, cols] into the nested format when eligible under `mode`, else keeps it plain;
// with an FP8 `storage`, quantizes it instead (any finite weight). allow_nesting = false keeps
// it plain FP16 regardless (lm_head).
HostLinear make_linear(std::string name, std::vector<uint16_t> w, int64_t rows, int64_t cols,
                       format::ScaleMode mode, bool allow_nesting = true,
                       LinearStorage storage = LinearStorage::Nested);

}  // namespace nestedfp::engine
