#pragma once
// The op kinds ModelRunner marks for per-op profiling (Backend::profile_mark), shared with
// `bench engine`, which turns GEMM times into achieved weight bandwidth. docs/MEASURING.md §5.5.
namespace nestedfp::engine::op {

inline constexpr const char* kSetup = "step setup";  // validate, layout, upload, attention plan
inline constexpr const char* kEmbedding = "embedding";
inline constexpr const char* kRmsnorm = "rmsnorm";    // (+ residual add, + E4M3 quantization)
inline constexpr const char* kQuantize = "quantize";  // standalone: o's input (and down's, TP)
inline constexpr const char* kQkv = "qkv GEMM";
inline constexpr const char* kQkvSplit = "qkv split";  // a fused qkv output into q, k, v
inline constexpr const char* kRopeKv = "rope + kv write";
inline constexpr const char* kAttention = "attention";
inline constexpr const char* kO = "o GEMM";
inline constexpr const char* kGateUp = "gate_up GEMM";
inline constexpr const char* kSiluMul = "silu_mul";  // (+ E4M3 quantization)
inline constexpr const char* kDown = "down GEMM";
inline constexpr const char* kFinalNorm = "final norm";  // last residual add, row gather, norm
inline constexpr const char* kLmHead = "lm_head";
inline constexpr const char* kSampling = "sampling";  // device sampling + the copy back (sync)
inline constexpr const char* kLogitsToHost = "logits to host";

}  // namespace nestedfp::engine::op
