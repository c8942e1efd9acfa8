#pragma once
// Host API of the Hopper (sm_90a) kernels: the nested-format split/merge, per-token E4M3
// quantization (standalone and fused into RMSNorm and SiLU·mul), the NestedFP8 and NestedFP16
// GEMMs, and the cuBLAS baselines. docs/DESIGN.md §1-2.
//
// Conventions shared by every function here:
//  - Weights W[N, K] are row-major (Hugging Face layout, K contiguous); activations X[M, K] and
//    outputs Y[M, N] are row-major. Y = X · Wᵀ.
//  - All work is enqueued on the given stream; nothing synchronizes unless it says so. No function
//    allocates device memory while a stream is being captured, so all GEMMs and activation kernels
//    can be captured into CUDA graphs (call each once outside capture first: the first call sets up
//    handles and function attributes).
//  - Every CUDA/cuBLAS error, and every unsupported shape or alignment, throws nestedfp::Error with
//    a message that says what is wrong.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace nestedfp::cuda {

// ---- errors ---------------------------------------------------------------------------------
[[noreturn]] void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line);
inline void check_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  if (e != cudaSuccess) throw_cuda_error(e, expr, file, line);
}
#define NFP_CUDA_CHECK(expr) ::nestedfp::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
// After a kernel launch: reports launch-configuration errors (not asynchronous faults).
#define NFP_CUDA_CHECK_LAUNCH() NFP_CUDA_CHECK(cudaGetLastError())

// Throws nestedfp::Error(msg). For .cu files, which must not include fmt (fmt 9 does not compile
// under nvcc in C++20 mode): cuda_fail("text ", value, " more text") concatenates its arguments.
[[noreturn]] void throw_error(const std::string& msg);
namespace detail {
inline void cat(std::string&) {}
template <typename T, typename... R>
void cat(std::string& s, const T& t, const R&... r) {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    s += std::string_view(t);
  } else {
    s += std::to_string(t);
  }
  cat(s, r...);
}
}  // namespace detail
template <typename... Args>
[[noreturn]] void cuda_fail(const Args&... args) {
  std::string s;
  detail::cat(s, args...);
  throw_error(s);
}

// ---- the nested weight ----------------------------------------------------------------------
// One FP16 weight W[N, K] in the nested format (docs/DESIGN.md §1): two byte planes on the device.
//   upper[n*K + c]: E4M3 bits of RNE(w[n,c] · 2^k[n] · 2^8)   (sign | e3..e0 | m9 m8 m7)
//   lower[n*K + c]: the low byte of the FP16 bits of w[n,c] · 2^k[n]
//   k[n]          : per-row power-of-two exponent (all zero for --nested-scale none)
// Both GEMMs multiply output row n (= output feature n) by 2^-k[n] in FP32 in their epilogue.
struct NestedWeight {
  const uint8_t* upper = nullptr;  // [N, K] row-major
  const uint8_t* lower = nullptr;  // [N, K] row-major
  const int8_t* k = nullptr;       // [N]
  int N = 0, K = 0;
};

// Selects a kernel configuration. variant < 0: the built-in heuristic (M buckets); otherwise an
// index into the kernel's own configuration table (see *_variant_names()). Reserved for the tuner.
struct GemmConfig {
  int variant = -1;
};

// ---- split / merge (model load; merge is for tests) -------------------------------------------
struct SplitStatus {
  bool ok = true;
  int64_t bad_row = -1;  // first row that cannot be nested (when !ok)
};
// Splits W[N, K] (FP16, row-major) into the nested planes, bit-identical to the CPU codec
// (nestedfp::format::split_tensor). channel_scale: per-row k_r as docs/DESIGN.md §1.4 (largest k
// with max|w_r|·2^k <= 1.75; negative k only when no value loses a bit); else k = 0 and every value
// must be representable (|w| < 1.875). NaN/Inf make a row ineligible. Synchronizes `stream` to read
// the status; when !ok the planes' contents are unspecified.
SplitStatus split_weight(const __half* W, int N, int K, bool channel_scale, uint8_t* upper,
                         uint8_t* lower, int8_t* k, cudaStream_t stream);
// Merges n bytes of planes back to the FP16 bits of w · 2^k (bit exact); no unscaling.
void merge_planes(const uint8_t* upper, const uint8_t* lower, __half* out, int64_t n,
                  cudaStream_t stream);

// ---- per-token E4M3 quantization --------------------------------------------------------------
// For each row m of an FP16 matrix: amax_m = max|x[m, :]|, scale[m] = amax_m / 448 (IEEE fp32
// division), q[m, c] = E4M3_RNE_satfinite(x[m, c] / scale[m]) (IEEE fp32 division); an all-zero
// row gets scale 0 and q = 0. This is the CPU backend's quantize_row_fp16, bit for bit.
// q is written densely as [M, K] (row stride K). Inputs have row stride ld (elements).
// K <= 65536 for all three kernels (a row is kept in shared memory).
void quantize_e4m3_per_token(const __half* X, int64_t ld, int M, int K, uint8_t* q, float* scale,
                             cudaStream_t stream);
// Its two halves, for a tensor-parallel rank's slice of each row: scale[m] = amax_m / 448 alone,
// and q under given scales (the max over the ranks'); together on whole rows, the same bits.
void token_scales_e4m3(const __half* X, int64_t ld, int M, int K, float* scale,
                       cudaStream_t stream);
void quantize_e4m3_scaled(const __half* X, int64_t ld, int M, int K, const float* scale, uint8_t* q,
                          cudaStream_t stream);

// RMSNorm (Llama): if residual != nullptr, first x = fp16(x + residual) and residual := x.
// Then r = 1 / sqrt(mean_fp32(x²) + eps), y = fp16(fp16(x · r) · w). Writes y to Y (if not null,
// row stride K) and/or its per-token quantization to q/scale (if q not null), which is
// bit-identical to quantize_e4m3_per_token applied to y.
void rmsnorm(const __half* X, int64_t ld, const __half* weight, float eps, int M, int K, __half* Y,
             uint8_t* q, float* scale, cudaStream_t stream, __half* residual = nullptr);

// SwiGLU activation: y = fp16(fp16(silu(gate)) · up), silu(g) = g / (1 + exp(-g)) in fp32.
// gate and up have row stride ld (for a fused [M, 2I] gate_up output: up = gate + I, ld = 2I).
// Writes y to Y (if not null, row stride I) and/or its quantization to q/scale (if q not null),
// bit-identical to quantize_e4m3_per_token applied to y.
void silu_mul(const __half* gate, const __half* up, int64_t ld, int M, int I, __half* Y, uint8_t* q,
              float* scale, cudaStream_t stream);

// ---- NestedFP8 GEMM (CUTLASS 4.2, sm90 TMA warp-specialized, swap AB) -------------------------
// Y[M, N] = fp16( (Σ_c e4m3(xq[m,c]) · e4m3(upper[n,c])) · 2^-k[n] · 2^-8 · x_scale[m] ), FP32
// accumulation and epilogue. xq/x_scale as produced by the quantization kernels above.
// Requirements (TMA: 16-byte aligned rows), checked, Error otherwise:
//   K % 16 == 0, N % 8 == 0, M >= 1; all pointers 16-byte aligned (cudaMalloc gives 256).
void nested_fp8_gemm(const NestedWeight& w, const uint8_t* xq, const float* x_scale, __half* Y,
                     int M, cudaStream_t stream, const GemmConfig* cfg = nullptr);
const std::vector<std::string>& nested_fp8_gemm_variant_names();
// False for variants this build leaves out (CMake's NESTEDFP_CUDA_KERNEL_SET: default builds the
// heuristic's picks, ci one kernel, all every one); running one throws an Error saying how to
// rebuild.
bool nested_fp8_gemm_variant_built(int variant);
// The smallest kernel set that contains a variant: NFP_TIER_CI 0, _DEFAULT 1, _ALL 2
// (gemm_kernel_set.hpp); -1 outside the table.
int nested_fp8_gemm_variant_tier(int variant);
int nested_fp8_gemm_heuristic(int M, int N, int K);  // the variant index the heuristic picks

// ---- NestedFP16 GEMM (implemented in nested_fp16_gemm.cu, declared here for all callers) -------
// Y[M, N] = fp16( (Σ_c x[m,c] · merge(upper, lower)[n,c]) · 2^-k[n] ), FP16 operands merged in
// registers, FP32 accumulation, FP32 epilogue scale, FP16 out. X row-major [M, K] (row stride K).
// Exact FP16 semantics: the result for --nested-scale none and channel is bit-identical.
// Same alignment contract as the FP8 GEMM (K % 16 == 0, N % 8 == 0), checked with an Error.
void nested_fp16_gemm(const NestedWeight& w, const __half* X, __half* Y, int M, cudaStream_t stream,
                      const GemmConfig* cfg = nullptr);

// ---- cuBLAS baselines / fallbacks --------------------------------------------------------------
// Plain FP16 GEMM for tensors that cannot be nested: Y[M, N] = X[M, K] · W[N, K]ᵀ, FP32 accumulate.
// Uses one cuBLAS handle per (thread, device) with a fixed workspace, so it is graph-capturable.
void cublas_fp16_gemm(const __half* W, int N, int K, const __half* X, __half* Y, int M,
                      cudaStream_t stream);

// cuBLASLt FP8 (E4M3 × E4M3 → FP16) baseline with the same operand roles as nested_fp8_gemm:
// Y = (xq · wqᵀ) · a_scale · b_scale. PerTensor: a_scale/b_scale point to one float each.
// PerRow: a_scale has N floats (weight rows) and b_scale M floats (tokens), through cuBLASLt's
// outer-vector scale mode; throws Error when this cuBLASLt has no kernel for it.
enum class LtScaling { PerTensor, PerRow };
void cublaslt_fp8_gemm(const uint8_t* wq, int N, int K, const uint8_t* xq, __half* Y, int M,
                       const float* a_scale, const float* b_scale, LtScaling scaling,
                       cudaStream_t stream);
bool cublaslt_fp8_per_row_supported(int N, int K, int M);  // probes once per shape class
// The same GEMM unscaled into fp32, Y[M, N] = xq · wqᵀ (FP32 accumulation, with the FP8 tensor
// cores' ~14 bits between promotions); false, with nothing launched, when this cuBLASLt has no
// kernel for E4M3 x E4M3 -> FP32. One cached plan per (N, K, M).
bool cublaslt_fp8_gemm_f32(const uint8_t* wq, int N, int K, const uint8_t* xq, float* Y, int M,
                           cudaStream_t stream);

// ---- tensor-parallel partial sums (one-GPU FP8 numerics, docs/DESIGN.md §3.14) -----------------
// nested_fp8_gemm in two halves. The accumulators: acc[M, N] fp32 = Σ_c e4m3(xq[m,c]) ·
// e4m3(upper[n,c]), cuBLASLt FP8 into fp32 (a plain kernel where cuBLASLt has none, or with
// use_cublaslt = false: tests); returns false when it ran the plain kernel (slow: the caller says
// so). cuBLASLt groups the products otherwise than the NestedFP8 kernels, so the two agree within
// the tensor cores' accumulation (~2e-4 of the largest output measured on the H200), not bit for
// bit. The epilogue on (summed) accumulators: Y[m, n] = fp16((acc · 2^-(k[n]+8)) · x_scale[m]),
// nested_fp8_gemm's operations (the power of two is exact).
bool nested_fp8_gemm_acc(const NestedWeight& w, const uint8_t* xq, float* acc, int M,
                         cudaStream_t stream, bool use_cublaslt = true);
void nested_fp8_finish(const float* acc, const int8_t* k, const float* x_scale, __half* Y, int M,
                       int N, cudaStream_t stream);

// ---- device info ---------------------------------------------------------------------------
struct DeviceInfo {
  std::string name, driver, runtime;
  int sms = 0, cc_major = 0, cc_minor = 0;
  int64_t l2_bytes = 0, mem_bytes = 0;
};
DeviceInfo device_info();

// Device memory the GEMM wrappers allocated for themselves so far (reported by `bench engine`):
// cuBLAS handles' workspaces, the NestedFP16 stream-K and NestedFP8 workspaces (outgrown ones
// included: graphs may still point into them).
size_t cublas_workspace_bytes();
size_t nested_fp16_workspace_bytes();
size_t nested_fp8_workspace_bytes();

}  // namespace nestedfp::cuda
