#pragma once
// Walks a Llama-family checkpoint tensor by tensor, in a fixed order, handing each to a visitor
// as fp16 values (or as a RandomFill for --load-format dummy). One walk serves both the host
// ModelWeights (which splits on the host) and the streaming loader of the model runner (which
// hands each tensor to the backend at once, so host memory stays bounded by about one tensor).
// Fused phi3 tensors (qkv_proj, gate_up_proj) are split into q/k/v and gate/up here.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "nestedfp/backend.hpp"
#include "nestedfp/config.hpp"

namespace nestedfp::engine {

enum class Slot {
  Embed,
  FinalNorm,
  LmHead,
  Q,
  K,
  V,
  O,
  Gate,
  Up,
  Down,
  InputNorm,
  PostNorm,
  QNorm,
  KNorm
};
const char* to_string(Slot s);
inline bool is_linear(Slot s) { return s == Slot::LmHead || (s >= Slot::Q && s <= Slot::Down); }

struct TensorItem {
  Slot slot = Slot::Embed;
  int layer = -1;  // -1 for embed, final norm, lm_head
  std::string name;
  int64_t rows = 0, cols = 0;                 // vectors (norms): rows = 1
  std::vector<uint16_t> values;               // fp16 bits [rows, cols]; empty when random
  std::optional<backend::RandomFill> random;  // dummy weights: generated where they are stored
  std::vector<uint16_t> bias;                 // q/k/v biases (qwen2), fp16 [rows]
  std::optional<backend::RandomFill> random_bias;
};
using TensorVisitor = std::function<void(TensorItem&&)>;

// BF16/F32 -> FP16 conversion losses over the whole checkpoint.
struct ConversionTotals {
  int64_t overflow = 0, inexact = 0, underflow = 0;
};

// Reads `dir`'s safetensors (config already parsed into `c`). Throws Error on missing tensors
// and shape mismatches, naming the file and tensor.
void walk_checkpoint(const std::string& dir, const io::ModelConfig& c, const TensorVisitor& visit,
                     ConversionTotals* totals = nullptr);
// The same tensors, random: linear weights and the embedding N(0, initializer_range), norms 1,
// biases 0. `seed` makes every tensor's values reproducible.
void walk_dummy(const io::ModelConfig& c, uint64_t seed, const TensorVisitor& visit);

}  // namespace nestedfp::engine
