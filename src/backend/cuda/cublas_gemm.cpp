// cuBLAS FP16 GEMM (tensors that cannot be nested; FP16 baseline) and the cuBLASLt FP8 baseline.
// Handles, workspaces and cuBLASLt plans are cached per thread and device, created on first use, so
// later calls allocate nothing and can be captured into CUDA graphs.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <atomic>
#include <map>
#include <memory>
#include <tuple>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;
std::atomic<size_t> g_workspace_total{0};  // over every thread's handles

void check_cublas(cublasStatus_t s, const char* expr, int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail("cuBLAS error {} ({}) in `{}` at cublas_gemm.cpp:{}", int(s), cublasGetStatusString(s),
         expr, line);
}
#define NFP_CUBLAS_CHECK(expr) check_cublas((expr), #expr, __LINE__)

struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;
  ~LtPlan() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (d) cublasLtMatrixLayoutDestroy(d);
  }
};

struct Handles {
  int device = -1;
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  // (N, K, M, per_row, fp32 out) -> plan; the scale pointers are set per call on the cached
  // descriptor (fp32 out: none, scales 1).
  std::map<std::tuple<int, int, int, bool, bool>, std::unique_ptr<LtPlan>> plans;
};

Handles& handles() {
  thread_local Handles h;
  int dev = 0;
  NFP_CUDA_CHECK(cudaGetDevice(&dev));
  if (h.device != dev) {
    if (h.device >= 0) fail("cuBLAS wrappers: one thread may use one device only");
    NFP_CUBLAS_CHECK(cublasCreate(&h.blas));
    NFP_CUBLAS_CHECK(cublasLtCreate(&h.lt));
    NFP_CUDA_CHECK(cudaMalloc(&h.workspace, kWorkspaceBytes));
    g_workspace_total += kWorkspaceBytes;
    NFP_CUBLAS_CHECK(cublasSetWorkspace(h.blas, h.workspace, kWorkspaceBytes));
    h.device = dev;
  }
  return h;
}

LtPlan& lt_plan(Handles& h, int N, int K, int M, bool per_row, bool f32_out = false) {
  auto key = std::make_tuple(N, K, M, per_row, f32_out);
  auto it = h.plans.find(key);
  if (it != h.plans.end()) return *it->second;
  auto p = std::make_unique<LtPlan>();
  NFP_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  NFP_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  NFP_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  if (per_row) {
    const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    NFP_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE,
                                                    &mode, sizeof mode));
    NFP_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE,
                                                    &mode, sizeof mode));
  }
  // Column-major view: A = Wᵀ stored K×N (ld K), B = Xqᵀ stored K×M (ld K), D = Yᵀ N×M (ld N).
  NFP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_8F_E4M3, K, N, K));
  NFP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_8F_E4M3, K, M, K));
  NFP_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->d, f32_out ? CUDA_R_32F : CUDA_R_16F, N, M, N));
  cublasLtMatmulPreference_t pref = nullptr;
  NFP_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const size_t ws = kWorkspaceBytes;
  NFP_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(h.lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0) {
    p->algo = res.algo;
    p->ok = true;
  }
  auto& ref = *p;
  h.plans.emplace(key, std::move(p));
  return ref;
}

}  // namespace

void cublas_fp16_gemm(const __half* W, int N, int K, const __half* X, __half* Y, int M,
                      cudaStream_t stream) {
  if (M < 1 || N < 1 || K < 1) fail("cublas_fp16_gemm: bad shape M={} N={} K={}", M, N, K);
  auto& h = handles();
  NFP_CUBLAS_CHECK(cublasSetStream(h.blas, stream));
  const float alpha = 1.f, beta = 0.f;
  // Column-major: Yᵀ[N, M] = (W as K×N)ᵀ · (X as K×M).
  NFP_CUBLAS_CHECK(cublasGemmEx(h.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, CUDA_R_16F, K,
                                X, CUDA_R_16F, K, &beta, Y, CUDA_R_16F, N, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
}

// lm_head: the same GEMM with fp32 output, so logits skip a rounding to fp16 (ops.hpp).
void cublas_fp16_gemm_f32out(const __half* W, int N, int K, const __half* X, float* Y, int M,
                             cudaStream_t stream) {
  if (M < 1 || N < 1 || K < 1) fail("cublas_fp16_gemm_f32out: bad shape M={} N={} K={}", M, N, K);
  if (!W || !X || !Y) fail("cublas_fp16_gemm_f32out: null pointer (W, X or Y)");
  auto& h = handles();
  NFP_CUBLAS_CHECK(cublasSetStream(h.blas, stream));
  const float alpha = 1.f, beta = 0.f;
  NFP_CUBLAS_CHECK(cublasGemmEx(h.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, CUDA_R_16F, K,
                                X, CUDA_R_16F, K, &beta, Y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
}

void cublaslt_fp8_gemm(const uint8_t* wq, int N, int K, const uint8_t* xq, __half* Y, int M,
                       const float* a_scale, const float* b_scale, LtScaling scaling,
                       cudaStream_t stream) {
  if (M < 1 || N < 1 || K < 1 || K % 16 != 0 || N % 8 != 0)
    fail("cublaslt_fp8_gemm: unsupported shape M={} N={} K={} (FP8 needs K % 16 == 0, N % 8 == 0)",
         M, N, K);
  auto& h = handles();
  const bool per_row = scaling == LtScaling::PerRow;
  LtPlan& p = lt_plan(h, N, K, M, per_row);
  if (!p.ok)
    fail(
        "cublaslt_fp8_gemm: cuBLASLt {} has no algorithm for E4M3 x E4M3 -> FP16 with {} scales "
        "(M={} N={} K={})",
        cublasLtGetVersion(), per_row ? "outer-vector (per-row)" : "per-tensor", M, N, K);
  NFP_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                  &a_scale, sizeof a_scale));
  NFP_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                  &b_scale, sizeof b_scale));
  const float alpha = 1.f, beta = 0.f;
  NFP_CUBLAS_CHECK(cublasLtMatmul(h.lt, p.desc, &alpha, wq, p.a, xq, p.b, &beta, Y, p.d, Y, p.d,
                                  &p.algo, h.workspace, kWorkspaceBytes, stream));
}

bool cublaslt_fp8_gemm_f32(const uint8_t* wq, int N, int K, const uint8_t* xq, float* Y, int M,
                           cudaStream_t stream) {
  if (M < 1 || N < 1 || K < 1 || K % 16 != 0 || N % 8 != 0)
    fail(
        "cublaslt_fp8_gemm_f32: unsupported shape M={} N={} K={} (FP8 needs K % 16 == 0, N % 8 "
        "== 0)",
        M, N, K);
  auto& h = handles();
  LtPlan& p = lt_plan(h, N, K, M, false, true);
  if (!p.ok) return false;
  const float alpha = 1.f, beta = 0.f;
  NFP_CUBLAS_CHECK(cublasLtMatmul(h.lt, p.desc, &alpha, wq, p.a, xq, p.b, &beta, Y, p.d, Y, p.d,
                                  &p.algo, h.workspace, kWorkspaceBytes, stream));
  return true;
}

bool cublaslt_fp8_per_row_supported(int N, int K, int M) {
  auto& h = handles();
  return lt_plan(h, N, K, M, true).ok;
}

size_t cublas_workspace_bytes() { return g_workspace_total.load(); }

}  // namespace nestedfp::cuda
