#pragma once
// Low-level kernels of the cpu backend: E4M3 quantization, the blocked GEMM (one fp32 FMA
// micro-kernel serves FP16 and FP8, see gemm.cpp), attention helpers. Each has a scalar version
// and an AVX2+FMA+F16C version chosen at run time; the GEMM's two versions are bit-identical
// (same per-output FMA order), so results never depend on the ISA, thread count or batch shape.
#include <cstdint>
#include <vector>

#include "nestedfp/backend.hpp"

namespace nestedfp::cpu {

class ThreadPool;

// ---- ISA selection ---------------------------------------------------------------------------
enum class Isa { Scalar, Avx2 };
Isa detected_isa();        // what the CPU supports
Isa active_isa();          // what runs (NESTEDFP_CPU_ISA=scalar forces the fallback)
void set_active_isa(Isa);  // tests; clamps to detected_isa()
const char* to_string(Isa);

// ---- E4M3 ------------------------------------------------------------------------------------
// Round-to-nearest-even, saturating to +-448; NaN -> 0x7F.
uint8_t e4m3_rne(float x);
const float* e4m3_values();  // 256 exact decoded values (0x7F/0xFF, NaN, decode to 0)

// Per-token quantization of one fp16 row: scale = rowmax / 448, q = e4m3_rne(x / scale).
// An all-zero row gets scale 0 and q = 0.
void quantize_row_fp16(const uint16_t* x, int64_t n, uint8_t* q, float* scale);
void quantize_row_f32(const float* x, int64_t n, uint8_t* q, float* scale);
// Its two halves (a tensor-parallel rank's slice of a row takes the whole row's scale):
// rowmax / 448 alone, and q = e4m3_rne(x / scale) under a given scale (q = 0 when it is 0).
float token_scale_fp16(const uint16_t* x, int64_t n);
void quantize_row_fp16_scaled(const uint16_t* x, int64_t n, float scale, uint8_t* q);

// ---- GEMM ------------------------------------------------------------------------------------
inline constexpr int kPanel = 16;  // output columns per packed panel

// A weight [N, K] tiled in panels of 16 rows: element (n, k) at ((n/16)*K + k)*16 + n%16.
// Nested weights keep both byte planes (one copy; FP16 merges them, FP8 reads `upper`); FP8
// baseline weights keep only their E4M3 bytes in `upper`; plain weights keep fp16 bits.
// E4M3 bytes always decode to e4m3 * 2^-8 (the nested convention), and `col_scale` is the
// per-row fp32 factor of the epilogue: 2^-k_r (nested), s_r * 2^8 (FP8: the 2^8 cancels the
// decode's 2^-8 exactly), 1 (plain). Rows past N are zero.
struct PackedWeight {
  int64_t N = 0, K = 0, panels = 0;
  backend::WeightFormat format = backend::WeightFormat::FP16;
  std::vector<uint8_t> upper, lower;
  std::vector<uint16_t> f16;
  std::vector<float> col_scale;  // per-row epilogue factor, padded to panels*16
  std::vector<float> bias;       // empty or N values (fp16 bias as float)
  bool has_e4m3() const { return format != backend::WeightFormat::FP16; }
  bool has_fp16() const { return format != backend::WeightFormat::FP8; }
};
PackedWeight pack_nested(const uint8_t* upper, const uint8_t* lower, const int8_t* k, int64_t N,
                         int64_t K);
// E4M3 bytes q [N, K] with weight ≈ e4m3(q) * scale[n].
PackedWeight pack_fp8(const uint8_t* q, const float* scale, int64_t N, int64_t K);
PackedWeight pack_plain(const uint16_t* w, int64_t N, int64_t K);

// Y[M, N] (fp16 bits) = fp16((A · Bᵀ) * row_scale[m] * col_scale[n] + bias[n]), with
// A fp32 [M, K] and B the packed weight decoded exactly to fp32: merged fp16 (fp8 = false) or
// e4m3(upper) * 2^-8 (fp8 = true on nested weights, always on FP8 weights; plain weights always
// decode fp16). row_scale may be null (1). With Y32, Y32[M, N] gets the accumulators A · Bᵀ
// instead (no scales, no bias, unrounded; Y unused): finish_gemm completes them.
void gemm(ThreadPool& pool, const float* A, int64_t M, const PackedWeight& w, bool fp8,
          const float* row_scale, uint16_t* Y, float* Y32 = nullptr);
// gemm's epilogue on accumulators acc [M, N]: Y = fp16(acc * row_scale[m] * col_scale[n] + bias).
void finish_gemm(ThreadPool& pool, const float* acc, int64_t M, const PackedWeight& w,
                 const float* row_scale, uint16_t* Y);

// ---- vector helpers (attention) ----------------------------------------------------------------
float dot_f32(const float* a, const float* b, int64_t n);
void axpy_f32(float alpha, const float* x, float* y, int64_t n);  // y += alpha * x
void fp16_to_f32(const uint16_t* src, float* dst, int64_t n);

// ---- ISA-specific pieces (kernels_avx2.cpp / kernels.cpp) --------------------------------------
namespace detail {
// Decodes panel rows [k0, k0 + kc) to fp32 [kc][16].
void decode_panel_scalar(const PackedWeight& w, int64_t panel, int64_t k0, int64_t kc, bool fp8,
                         float* out);
void decode_panel_avx2(const PackedWeight& w, int64_t panel, int64_t k0, int64_t kc, bool fp8,
                       float* out);
// C[rows][16] (ldc) = (zero ? 0 : C) + A[rows][kc] (lda) · B[kc][16], FMA in k order.
void micro_scalar(const float* A, int64_t lda, const float* B, int64_t kc, float* C, int64_t ldc,
                  int rows, bool zero);
void micro_avx2(const float* A, int64_t lda, const float* B, int64_t kc, float* C, int64_t ldc,
                int rows, bool zero);
float dot_avx2(const float* a, const float* b, int64_t n);
void axpy_avx2(float alpha, const float* x, float* y, int64_t n);
void fp16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n);
}  // namespace detail

}  // namespace nestedfp::cpu
