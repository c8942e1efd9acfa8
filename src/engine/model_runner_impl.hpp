#pragma once
// ModelRunner's private types, shared by model_runner.cpp (the step) and model_runner_load.cpp
// (building the weights). Not part of the engine's interface.
#include "engine/model_runner.hpp"

namespace nestedfp::engine {

// A fused qkv (gate_up) replaces q, k, v (gate, up), which are then null (engine/fusion.hpp).
struct ModelRunner::Layer {
  std::unique_ptr<backend::LinearWeight> q, k, v, o, gate, up, down, qkv, gate_up;
  backend::BufferPtr input_norm, post_norm, q_norm, k_norm;
};

// Allocated once for the largest step: pointers never move between steps. `fused` takes the
// fused GEMMs' outputs (qkv's is split into q, k, v before gate_up's is written); gate and up
// exist only for layers that run them apart.
struct ModelRunner::Scratch {
  backend::BufferPtr h, x, q, k, v, attn, o, gate, up, fused, act, q8, scale, xl, logits;
  backend::BufferPtr o32;  // tensor parallelism, one-GPU FP8 numerics: fp32 partial sums
};

}  // namespace nestedfp::engine
