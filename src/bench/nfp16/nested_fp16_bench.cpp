// NestedFP16 GEMM vs cuBLAS FP16 (cublasGemmEx), same shapes, in one run.
// CUDA-graph replays cycling over >= 4 weight copies whose total is larger than twice the L2;
// per-call time = median over timed replays / calls per graph.
// Usage: nested_fp16_bench [--shapes NxK,...] [--m 16,128,...] [--configs all|heur] [--reps R]
// Standalone (no CMake target): built and run by bench/nfp16/run_device.sh; findings in
// bench/nfp16/NOTES.md.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/nested_fp16_gemm.hpp"
#include "nestedfp/format.hpp"
#include "nestedfp/half.hpp"

namespace nc = nestedfp::cuda;

#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)
#define CB(x)                                                                           \
  do {                                                                                  \
    cublasStatus_t s_ = (x);                                                            \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                  \
      std::fprintf(stderr, "%s:%d %s: cublas status %d\n", __FILE__, __LINE__, #x, s_); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

static std::vector<int> parse_ints(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

template <class F>
static double time_graph(cudaStream_t st, int calls, int reps, F&& enqueue_call) {
  // enqueue_call(i) enqueues call i (cycling copies); warm-up outside capture first.
  for (int i = 0; i < calls; ++i) enqueue_call(i);
  CK(cudaStreamSynchronize(st));
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < calls; ++i) enqueue_call(i);
  CK(cudaStreamEndCapture(st, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 2; ++i) CK(cudaGraphLaunch(ge, st));
  std::vector<float> t;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(a, st));
    CK(cudaGraphLaunch(ge, st));
    CK(cudaEventRecord(b, st));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return 1000.0 * t[t.size() / 2] / calls;  // microseconds per call
}

int main(int argc, char** argv) {
  std::vector<std::pair<int, int>> shapes = {{28672, 4096}, {4096, 14336}};
  std::vector<int> ms = {16, 128, 1024, 4096};
  bool all_configs = true;
  bool sched_sweep = std::getenv("NFP16_SWEEP_SCHED") != nullptr;
  int reps = 15;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--m"))
      ms = parse_ints(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--configs"))
      all_configs = std::strcmp(argv[i + 1], "heur") != 0;
    else if (!std::strcmp(argv[i], "--reps"))
      reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--shapes")) {
      shapes.clear();
      for (const char* p = argv[i + 1]; *p;) {
        int n = std::atoi(p);
        while (*p && *p != 'x') ++p;
        int k = std::atoi(++p);
        shapes.push_back({n, k});
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
      }
    }
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  std::printf("device %s, %d SMs, L2 %d MB, driver %d, runtime %d\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, drv, rt);

  cudaStream_t st;
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cublasHandle_t h;
  CB(cublasCreate(&h));
  CB(cublasSetStream(h, st));
  void* cublas_ws = nullptr;
  const size_t cublas_ws_bytes = 64 << 20;
  CK(cudaMalloc(&cublas_ws, cublas_ws_bytes));
  CB(cublasSetWorkspace(h, cublas_ws, cublas_ws_bytes));
  CB(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));

  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<double> ratios_heur, ratios_best;
  std::printf("\n%-12s %5s | %9s | %9s %6s | %9s %6s %-34s | %7s %7s\n", "NxK", "M", "cuBLAS us",
              "nfp16 us", "ratio", "best us", "ratio", "best config", "TFLOP/s", "TB/s");
  for (auto [N, K] : shapes) {
    const size_t wn = size_t(N) * K;
    std::vector<uint16_t> w(wn);
    for (auto& x : w) x = nestedfp::float_to_fp16(u(rng) * 0.25f);
    std::vector<uint8_t> up(wn), lo(wn);
    nestedfp::format::split_planes(w.data(), up.data(), lo.data(), wn);
    std::vector<int8_t> kk(N, 0);
    const int copies = std::max<int>(4, int(std::ceil(2.0 * prop.l2CacheSize / (2.0 * wn))) + 1);
    std::vector<uint8_t*> dU(copies), dL(copies);
    std::vector<__half*> dW(copies);
    int8_t* dk;
    CK(cudaMalloc(&dk, N));
    CK(cudaMemcpy(dk, kk.data(), N, cudaMemcpyHostToDevice));
    for (int c = 0; c < copies; ++c) {
      CK(cudaMalloc(&dU[c], wn));
      CK(cudaMalloc(&dL[c], wn));
      CK(cudaMalloc(&dW[c], wn * 2));
      CK(cudaMemcpy(dU[c], up.data(), wn, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dL[c], lo.data(), wn, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dW[c], w.data(), wn * 2, cudaMemcpyHostToDevice));
    }
    for (int M : ms) {
      std::vector<uint16_t> x(size_t(M) * K);
      for (auto& v : x) v = nestedfp::float_to_fp16(u(rng));
      std::vector<__half*> dX(copies), dY(copies);
      for (int c = 0; c < copies; ++c) {
        CK(cudaMalloc(&dX[c], x.size() * 2));
        CK(cudaMalloc(&dY[c], size_t(M) * N * 2));
        CK(cudaMemcpy(dX[c], x.data(), x.size() * 2, cudaMemcpyHostToDevice));
      }
      const int calls = copies * std::max(1, 8 / copies);
      const float one = 1.f, zero = 0.f;
      auto cublas_call = [&](int i) {
        const int c = i % copies;
        CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, dW[c], CUDA_R_16F, K, dX[c],
                        CUDA_R_16F, K, &zero, dY[c], CUDA_R_16F, N, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT));
      };
      const double t_cublas = time_graph(st, calls, reps, cublas_call);
      // Reference output of copy 0 for a correctness spot check.
      std::vector<uint16_t> y_ref(size_t(M) * N), y(size_t(M) * N);
      CK(cudaStreamSynchronize(st));
      CK(cudaMemcpy(y_ref.data(), dY[0], y.size() * 2, cudaMemcpyDeviceToHost));

      auto nfp_time = [&](int cfg) {
        auto call = [&](int i) {
          const int c = i % copies;
          nc::nested_fp16_gemm(dU[c], dL[c], dk, dX[c], dY[c], M, N, K, st, cfg);
        };
        CK(cudaMemsetAsync(dY[0], 0xFF, size_t(M) * N * 2, st));
        const double t = time_graph(st, calls, reps, call);
        CK(cudaMemcpy(y.data(), dY[0], y.size() * 2, cudaMemcpyDeviceToHost));
        double e2 = 0, r2 = 0;
        for (size_t i = 0; i < y.size(); ++i) {
          const double a = nestedfp::fp16_to_float(y[i]), b = nestedfp::fp16_to_float(y_ref[i]);
          e2 += (a - b) * (a - b);
          r2 += b * b;
        }
        const double rel = std::sqrt(e2 / r2);
        if (!(rel < 2e-3))
          std::printf("  !! config %d: relative difference to cuBLAS %.3e\n", cfg, rel);
        return t;
      };
      const int heur = nc::nested_fp16_pick_config(M, N, K);
      // Scheduler settings (NFP16_SCHED, read by every call) on the heuristic configuration.
      if (sched_sweep) {
        std::string line;
        for (const char* sc : {"raster=0,swizzle=1", "raster=1,swizzle=1", "raster=1,swizzle=8",
                               "raster=2,swizzle=1", "raster=2,swizzle=8", "decomp=1", "decomp=3",
                               "decomp=2,splits=2", "decomp=2,splits=4", "decomp=2,splits=8"}) {
          setenv("NFP16_SCHED", sc, 1);
          char buf[96];
          std::snprintf(buf, sizeof buf, " [%s]:%.1f", sc, nfp_time(-1));
          line += buf;
        }
        unsetenv("NFP16_SCHED");
        std::printf("   sched us:%s\n", line.c_str());
      }
      const double t_heur = nfp_time(-1);
      double t_best = t_heur;
      int best = heur;
      std::string per_cfg;
      if (all_configs) {
        for (int cfg = 0; cfg < nc::kNfp16_NumConfigs; ++cfg) {
          const double t = nfp_time(cfg);
          char buf[64];
          std::snprintf(buf, sizeof buf, " %d:%.1f", cfg, t);
          per_cfg += buf;
          if (t < t_best) t_best = t, best = cfg;
        }
      }
      const double flops = 2.0 * M * N * K, bytes = 2.0 * N * K + 2.0 * M * K + 2.0 * M * N;
      char shape[32];
      std::snprintf(shape, sizeof shape, "%dx%d", N, K);
      std::printf("%-12s %5d | %9.1f | %9.1f %6.3f | %9.1f %6.3f %-34s | %7.1f %7.2f\n", shape, M,
                  t_cublas, t_heur, t_heur / t_cublas, t_best, t_best / t_cublas,
                  nc::nested_fp16_config_name(best), flops / t_best * 1e-6, bytes / t_best * 1e-6);
      if (all_configs) std::printf("   per config us:%s (heuristic %d)\n", per_cfg.c_str(), heur);
      ratios_heur.push_back(t_heur / t_cublas);
      ratios_best.push_back(t_best / t_cublas);
      for (int c = 0; c < copies; ++c) {
        CK(cudaFree(dX[c]));
        CK(cudaFree(dY[c]));
      }
    }
    for (int c = 0; c < copies; ++c) {
      CK(cudaFree(dU[c]));
      CK(cudaFree(dL[c]));
      CK(cudaFree(dW[c]));
    }
    CK(cudaFree(dk));
  }
  auto geo = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += std::log(x);
    return std::exp(s / v.size());
  };
  std::printf("\ngeomean NestedFP16/cuBLAS FP16: heuristic %.3f, best config per shape %.3f\n",
              geo(ratios_heur), geo(ratios_best));
  return 0;
}
