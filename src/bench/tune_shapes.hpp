#pragma once
// The weight shapes `nestedfp tune` measures (docs/MEASURING.md §5.7), host code only: from a
// model's config.json at a tensor-parallel size, or from a list; with the argument checks.
#include <string>
#include <vector>

#include "nestedfp/config.hpp"

namespace nestedfp::bench {

struct GemmShape {
  int N = 0, K = 0;   // weight [N, K]: N outputs, K inputs
  std::string label;  // the projections that have it, e.g. "q_proj, o_proj"
};

// One rank's GEMM shapes at tensor-parallel size tp, as the engine runs them: q, k, v, gate and
// up column-parallel (N / tp, KV heads replicated past their count), o and down row-parallel
// (K / tp); plus the fused qkv and gate_up shapes that `bench kernels` measures (DESIGN.md §5.1).
// Equal shapes are merged (their labels joined); shapes the nested GEMMs cannot run (N % 8,
// K % 16: the engine keeps them FP16) are left out. Throws Error when tp does not divide the model
// (engine::check_tensor_parallel's message).
std::vector<GemmShape> model_gemm_shapes(const io::ModelConfig& c, int tp);

// "N,K;N,K;..." (or "NxK,NxK,..." as `bench kernels --shapes` takes them). Throws Error naming
// the bad item; N must be a multiple of 8 and K of 16 (the nested GEMMs' TMA alignment).
std::vector<GemmShape> parse_gemm_shapes(const std::string& s);

// `tune`'s choice between --model and --shapes: exactly one, --tp only with --model.
struct TuneShapeArgs {
  std::string model, shapes;
  int tp = 1;
};
std::vector<GemmShape> tune_shapes(const TuneShapeArgs& a);

}  // namespace nestedfp::bench
