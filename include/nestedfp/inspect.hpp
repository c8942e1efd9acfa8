#pragma once
// What `nestedfp inspect` reports: per weight tensor whether it can be stored in the nested format
// (docs/DESIGN.md §1.5), and what the format saves against keeping FP16 plus a separate FP8 copy.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nestedfp/format.hpp"
#include "nestedfp/safetensors.hpp"

namespace nestedfp::io {

enum class TensorKind {
  Linear,     // 2-D *_proj.weight: the nesting candidates
  Embedding,  // embed_tokens & co: never nested (docs/DESIGN.md §1.5)
  LmHead,     // lm_head: never nested (docs/DESIGN.md §1.5)
  Other,      // norms, biases, anything else: kept as is
};
const char* to_string(TensorKind k);

struct TensorInspection {
  std::string name, file;
  TensorKind kind = TensorKind::Other;
  DType dtype = DType::F16;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  size_t bytes = 0;     // on disk
  float max_abs = 0.f;  // of the FP16 values (after BF16/F32 rounding); Linear/Embedding/LmHead
  ConversionReport conversion;  // BF16/F32 -> FP16 rounding
  // Eligibility in both modes (Linear only; false for the others).
  bool nestable_none = false, nestable_channel = false;
  std::string reason_none, reason_channel;  // why not, when not
  int k_min = 0, k_max = 0;  // per-row exponent range under channel scales (when nestable)
  // Under the chosen mode: nested or not, and why not.
  bool nested = false;
  std::string reason;
};

struct ModelInspection {
  std::string dir;
  format::ScaleMode mode = format::ScaleMode::None;
  std::vector<TensorInspection> tensors;  // sorted by name
  // Summary under `mode`.
  int linear_layers = 0, layers_nested = 0;
  int64_t nested_params = 0;         // elements stored nested
  int64_t nested_rows = 0;           // rows of nested tensors (one int8 k each with channel scales)
  uint64_t fp16_bytes = 0;           // whole model as FP16 (floating tensors at 2 bytes/element)
  uint64_t fp16_plus_fp8_bytes = 0;  // FP16 model + a separate FP8 copy of the nested layers
  uint64_t nested_bytes = 0;         // the nested format: FP16-sized planes + k exponents
  int64_t conversion_overflow = 0, conversion_inexact = 0;  // BF16/F32 -> FP16 over all tensors
};

// Classifies a tensor by name and rank.
TensorKind classify_tensor(const std::string& name, size_t rank);

// Reads every weight of MODEL_DIR (see WeightStore::open_dir) and checks each linear layer.
// `progress(done_bytes, total_bytes)` is called from the calling thread as tensors finish.
ModelInspection inspect_model(const std::string& dir, format::ScaleMode mode,
                              const std::function<void(uint64_t, uint64_t)>& progress = {});

}  // namespace nestedfp::io
