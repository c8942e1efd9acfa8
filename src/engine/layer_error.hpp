#pragma once
// Per-layer FP8 error on real activations (`nestedfp eval layers`): the model runs FP16 on the
// first chunks of a text while every decoder linear's fp16 input is captured; each linear is
// then run on exactly those inputs in each FP8 weight format (activations quantized per token,
// as in the FP8 steps) and compared with its FP16 output: ‖Y_mode − Y_fp16‖ / ‖Y_fp16‖.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/model_weights.hpp"
#include "nestedfp/backend.hpp"

namespace nestedfp::engine {

struct Fp8Mode {
  std::string name;  // nested-none | nested-channel | fp8-per-tensor | fp8-per-channel
  LinearStorage storage = LinearStorage::Nested;
  format::ScaleMode scale = format::ScaleMode::None;
};
// The four FP8 formats compared, in report order.
const std::vector<Fp8Mode>& fp8_modes();

struct LinearError {
  int layer = 0;
  std::string linear;  // q, k, v, o, gate, up, down
  int64_t out_features = 0, in_features = 0;
  std::vector<double> rel_error;  // per fp8_modes() entry
  std::vector<bool> fp8;          // false where the weight stays plain FP16 in that mode (error 0)
};

struct LayerErrorReport {
  int chunks = 0;
  int64_t tokens = 0;                  // input rows per linear
  std::vector<LinearError> linears;    // layer-major, in forward order
  std::vector<double> mean_rel_error;  // per mode, over all linears
};

// `weights` must be loaded with LinearStorage::Nested (any scale mode): FP16 weights are taken
// from them. Runs the first `chunks` chunks of `chunk_len` ids (each fed alone, FP16).
// The activations are captured on the backend `device` picks (make_backend); the FP8 formats'
// errors are computed on the host.
LayerErrorReport layer_errors(const ModelWeights& weights, std::span<const int32_t> ids, int chunks,
                              int chunk_len = 512, const backend::BackendOptions& device = {});

}  // namespace nestedfp::engine
