// Probes of the NestedFP8 CUTLASS kernels at large M (docs/KERNELS.md §2.3, §2.7), two sets:
//
// `epilogue` (session 26): the per-output-tile cost of the epilogue. One CUTLASS kernel under three
// epilogues: shared = CUTLASS's Sm90RowBroadcast for x_scale (the kernels' first version), reg =
// TokenScaleBroadcast (epilogue_token_scale.hpp: straight into registers), konly = no per-token
// scale at all (wrong results; the bound). Checks that `reg` and `shared` write bit-identical
// outputs on random data. Result: bench/results/2026-12-02-h200-nfp8-epilogue-probe.md.
//
// `mainloop`: what separates coop128x128p16 from cuBLASLt's kernel of the same tile: tile order
// (raster, swizzle), a 2x1 cluster (cuBLASLt's), FP32 promotion every K tile (p4), never (fa), or
// every K tile from two temporaries in turn (collective/nested_fp8_mma_db.hpp). The mainloop set
// checks the double-buffered kernel's outputs against the CUTLASS p4 kernel's (same sums; they
// may differ only in the last place of a few values).
//
// `db` (session 27): CUTLASS's promotion against the double-buffered one on each cooperative
// kernel of the variant list, at that variant's interval, from small to large M: which rows of
// gemm_configs.def run as CoopDb. Checks each pair bit-identical. `dbping`: the same for the
// ping-pong kernels (PingDb).
//
// Not part of the CMake build; built here and run on the device. -DNDEBUG matters: with CUTLASS's
// asserts compiled in, ptxas serializes every wgmma (C7510, "wgmma pipeline crossing function
// boundary"), and the first runs (session 26) timed such serialized kernels:
//   nvcc -std=c++20 -O3 -DNDEBUG -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr \
//        -DNESTEDFP_CUDA_KERNEL_SET_LEVEL=1 -Isrc -Iinclude -I.deps/cutlass/include \
//        bench/nfp8/epilogue_probe.cu -o nfp8-epi-probe -lcuda
//   nfp8-epi-probe [target_ms] [epilogue|mainloop|db|dbping]
// Timing as `bench kernels`: a CUDA graph of launches cycling over weight copies of >= 3x L2, the
// variants of a point interleaved in rounds, median of the rounds.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/nested_fp8_gemm.cuh"

#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace nestedfp::cuda {
void throw_cuda_error(cudaError_t e, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + " " + expr + ": " +
                           cudaGetErrorString(e));
}
void throw_error(const std::string& msg) { throw std::runtime_error(msg); }
namespace fp8gemm {
void* workspace_for(size_t bytes, cudaStream_t) {  // persistent kernels: none needed
  static void* p = nullptr;
  static size_t have = 0;
  if (bytes > have) {
    if (p) CK(cudaFree(p));
    CK(cudaMalloc(&p, bytes));
    have = bytes;
  }
  return p;
}
}  // namespace fp8gemm
}  // namespace nestedfp::cuda

namespace f8 = nestedfp::cuda::fp8gemm;
using Coop128 = f8::Config<cute::Shape<cute::_128, cute::_128, cute::_128>,
                           cute::Shape<cute::_1, cute::_1, cute::_1>,
                           cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                           cutlass::epilogue::TmaWarpSpecializedCooperative>;
using Sk128x64 =
    f8::Config<cute::Shape<cute::_128, cute::_64, cute::_128>,
               cute::Shape<cute::_1, cute::_1, cute::_1>,
               cutlass::gemm::KernelTmaWarpSpecializedCooperative,
               cutlass::epilogue::TmaWarpSpecializedCooperative, cutlass::gemm::StreamKScheduler>;

template <int Tokens, class Scheduler = cutlass::gemm::StreamKScheduler, int ClusterTokens = 1>
using Coop128xT = f8::Config<cute::Shape<cute::_128, cute::Int<Tokens>, cute::_128>,
                             cute::Shape<cute::_1, cute::Int<ClusterTokens>, cute::_1>,
                             cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                             cutlass::epilogue::TmaWarpSpecializedCooperative, Scheduler>;
using Coop128x64t2 = Coop128xT<64, cutlass::gemm::PersistentScheduler, 2>;
template <int Tokens, int ClusterTokens = 1>
using Ping64xT = f8::Config<cute::Shape<cute::_64, cute::Int<Tokens>, cute::_128>,
                            cute::Shape<cute::_1, cute::Int<ClusterTokens>, cute::_1>,
                            cutlass::gemm::KernelTmaWarpSpecializedPingpong,
                            cutlass::epilogue::TmaWarpSpecialized>;

using Coop128c2 = f8::Config<cute::Shape<cute::_128, cute::_128, cute::_128>,
                             cute::Shape<cute::_2, cute::_1, cute::_1>,
                             cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                             cutlass::epilogue::TmaWarpSpecializedCooperative>;
using Coop128fa = f8::Config<cute::Shape<cute::_128, cute::_128, cute::_128>,
                             cute::Shape<cute::_1, cute::_1, cute::_1>,
                             cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum,
                             cutlass::epilogue::TmaWarpSpecializedCooperative>;

struct Variant {
  const char* name;
  void (*run)(const f8::Problem&);
  int promotion, raster = 0, swizzle = 1;
};
// Every variant names its promotion (the kernels use CUTLASS's; nested_fp8_gemm.cuh).
constexpr auto kCut = f8::Promotion::Cutlass;
constexpr auto kDb = f8::Promotion::DoubleBuffered;
constexpr auto kReg = f8::Epi::RegisterRowScale;
const Variant kEpilogue[] = {
    {"coop128x128p16/shared", &f8::run<Coop128, f8::Epi::SharedRowScale, kCut>, 16},
    {"coop128x128p16/reg", &f8::run<Coop128, kReg, kCut>, 16},
    {"coop128x128p16/konly", &f8::run<Coop128, f8::Epi::KOnly, kCut>, 16},
    {"sk128x64p8/shared", &f8::run<Sk128x64, f8::Epi::SharedRowScale, kCut>, 8},
    {"sk128x64p8/reg", &f8::run<Sk128x64, kReg, kCut>, 8},
};
const Variant kMainloop[] = {
    {"coop128x128p16", &f8::run<Coop128, kReg, kCut>, 16},
    {"p16 raster-rows", &f8::run<Coop128, kReg, kCut>, 16, 1},
    {"p16 raster-tokens", &f8::run<Coop128, kReg, kCut>, 16, 2},
    {"p16 swizzle4", &f8::run<Coop128, kReg, kCut>, 16, 0, 4},
    {"c2x1 p16", &f8::run<Coop128c2, kReg, kCut>, 16},
    {"p4", &f8::run<Coop128, kReg, kCut>, 4},
    {"fa (no promotion)", &f8::run<Coop128fa>, 0},
    {"double-buffered p4", &f8::run<Coop128, kReg, kDb>, 4},
    {"double-buffered p8", &f8::run<Coop128, kReg, kDb>, 8},
    {"double-buffered p16", &f8::run<Coop128, kReg, kDb>, 16},
    {"p8", &f8::run<Coop128, kReg, kCut>, 8},
    {"sk128x64p8", &f8::run<Sk128x64, kReg, kCut>, 8},
    {"sk128x64p8 double-buffered", &f8::run<Sk128x64, kReg, kDb>, 8},
};

// Pairs (CUTLASS, double-buffered) at the interval each variant runs (0: CUTLASS's 4).
const Variant kDbSet[] = {
    {"sk128x16", &f8::run<Coop128xT<16>, kReg, kCut>, 0},
    {"sk128x16 db", &f8::run<Coop128xT<16>, kReg, kDb>, 0},
    {"sk128x32", &f8::run<Coop128xT<32>, kReg, kCut>, 0},
    {"sk128x32 db", &f8::run<Coop128xT<32>, kReg, kDb>, 0},
    {"sk128x64", &f8::run<Sk128x64, kReg, kCut>, 0},
    {"sk128x64 db", &f8::run<Sk128x64, kReg, kDb>, 0},
    {"sk128x64p8", &f8::run<Sk128x64, kReg, kCut>, 8},
    {"sk128x64p8 db", &f8::run<Sk128x64, kReg, kDb>, 8},
    {"sk128x128p16", &f8::run<Coop128xT<128>, kReg, kCut>, 16},
    {"sk128x128p16 db", &f8::run<Coop128xT<128>, kReg, kDb>, 16},
    {"coop128x64t2p8", &f8::run<Coop128x64t2, kReg, kCut>, 8},
    {"coop128x64t2p8 db", &f8::run<Coop128x64t2, kReg, kDb>, 8},
};

const Variant kDbPingSet[] = {
    {"pp64x16p8", &f8::run<Ping64xT<16>, kReg, kCut>, 8},
    {"pp64x16p8 db", &f8::run<Ping64xT<16>, kReg, kDb>, 8},
    {"pp64x32", &f8::run<Ping64xT<32>, kReg, kCut>, 0},
    {"pp64x32 db", &f8::run<Ping64xT<32>, kReg, kDb>, 0},
    {"pp64x64p8", &f8::run<Ping64xT<64>, kReg, kCut>, 8},
    {"pp64x64p8 db", &f8::run<Ping64xT<64>, kReg, kDb>, 8},
    {"pp64x16t2p8", &f8::run<Ping64xT<16, 2>, kReg, kCut>, 8},
    {"pp64x16t2p8 db", &f8::run<Ping64xT<16, 2>, kReg, kDb>, 8},
    {"pp64x32t2p8", &f8::run<Ping64xT<32, 2>, kReg, kCut>, 8},
    {"pp64x32t2p8 db", &f8::run<Ping64xT<32, 2>, kReg, kDb>, 8},
};

__global__ void fill_bytes(uint8_t* p, size_t n, uint32_t seed, uint8_t mask) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t x = uint32_t(i) * 2654435761u ^ seed;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    p[i] = uint8_t(x >> 24) & mask;  // 0xBF: finite E4M3 (no exponent-all-ones NaN pattern)
  }
}
__global__ void fill_scales(float* p, int n, uint32_t seed) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    p[i] = 1e-3f * float(1 + ((uint32_t(i) * 2654435761u ^ seed) >> 22));
}

int main(int argc, char** argv) {
  int dev = 0, sms = 0;
  CK(cudaGetDevice(&dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  int l2 = 0;
  CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  const double target_ms = argc > 1 ? std::atof(argv[1]) : 10.0;
  const std::string set = argc > 2 ? argv[2] : "epilogue";
  if (set != "epilogue" && set != "mainloop" && set != "db" && set != "dbping") {
    std::fprintf(stderr, "unknown set %s: epilogue, mainloop, db or dbping\n", set.c_str());
    return 2;
  }
  const bool epilogue_set = set == "epilogue", db_set = set == "db" || set == "dbping";
  const Variant* kVariants = epilogue_set      ? kEpilogue
                             : set == "db"     ? kDbSet
                             : set == "dbping" ? kDbPingSet
                                               : kMainloop;
  const int kNumVariants = epilogue_set      ? int(std::size(kEpilogue))
                           : set == "db"     ? int(std::size(kDbSet))
                           : set == "dbping" ? int(std::size(kDbPingSet))
                                             : int(std::size(kMainloop));
  struct Shape {
    int N, K;
  };
  std::vector<Shape> shapes = {
      {4096, 1024}, {4096, 4096}, {4096, 14336}, {28672, 4096}, {6144, 4096}};
  std::vector<int> ms_list = {256, 512, 1024, 4096, 8192};
  if (db_set) {
    shapes = {{4096, 4096}, {6144, 4096}, {5120, 4096}, {4096, 14336}, {28672, 4096}};
    ms_list = {16, 64, 128, 256, 512, 1024, 4096};
  } else if (!epilogue_set) {
    // 4096 x 4288: 33.5 K tiles (a partial one, and a run shorter than the interval at the end).
    shapes = {{4096, 4096}, {6144, 4096}, {28672, 4096}, {4096, 4288}};
    ms_list = {256, 1024, 4096, 8192};
  }
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::printf("| N | K | M | %s |\n|---|---|---|", "variant times in µs, median of rounds");
  std::printf("\n");
  std::printf("variants:");
  for (int v = 0; v < kNumVariants; ++v) std::printf(" %s;", kVariants[v].name);
  std::printf("\n");
  int mismatches = 0;
  for (const Shape& sh : shapes) {
    const size_t wbytes = size_t(sh.N) * sh.K;
    const int copies = std::max<int>(2, int((3.0 * l2 + wbytes - 1) / wbytes) + 1);
    std::vector<uint8_t*> up(copies);
    for (int c = 0; c < copies; ++c) {
      CK(cudaMalloc(&up[c], wbytes));
      fill_bytes<<<1024, 256, 0, s>>>(up[c], wbytes, 17u + c, 0xBF);
    }
    int8_t* k;
    CK(cudaMalloc(&k, sh.N));
    fill_bytes<<<64, 256, 0, s>>>(reinterpret_cast<uint8_t*>(k), sh.N, 5u, 0x03);
    for (int M : ms_list) {
      uint8_t* xq;
      float* xs;
      __half *y, *y_ref;
      CK(cudaMalloc(&xq, size_t(M) * sh.K));
      CK(cudaMalloc(&xs, size_t(M) * 4));
      CK(cudaMalloc(&y, size_t(M) * sh.N * 2));
      CK(cudaMalloc(&y_ref, size_t(M) * sh.N * 2));
      fill_bytes<<<1024, 256, 0, s>>>(xq, size_t(M) * sh.K, 99u + M, 0xBF);
      fill_scales<<<64, 256, 0, s>>>(xs, M, 7u + M);
      std::vector<nestedfp::cuda::NestedWeight> w(copies);
      for (int c = 0; c < copies; ++c) w[c] = {up[c], nullptr, k, sh.N, sh.K};
      auto problem = [&](int v, int c, __half* out) {
        return f8::Problem{&w[c],
                           xq,
                           xs,
                           out,
                           M,
                           s,
                           dev,
                           sms,
                           kVariants[v].name,
                           0,
                           0,
                           kVariants[v].promotion,
                           kVariants[v].raster,
                           kVariants[v].swizzle};
      };
      // Bitwise checks: reg against shared (epilogue set), double-buffered against CUTLASS's p4
      // (mainloop set: both promote after every K tile, in the same order).
      std::vector<std::pair<int, int>> pairs =
          epilogue_set ? std::vector<std::pair<int, int>>{{0, 1}, {3, 4}}
                       : std::vector<std::pair<int, int>>{{5, 7}, {10, 8}, {0, 9}, {11, 12}};
      if (db_set) {
        pairs.clear();
        for (int v = 0; v + 1 < kNumVariants; v += 2) pairs.push_back({v, v + 1});
      }
      for (const auto& [ref, v] : pairs) {
        kVariants[ref].run(problem(ref, 0, y_ref));
        kVariants[v].run(problem(v, 0, y));
        CK(cudaStreamSynchronize(s));
        std::vector<uint16_t> a(size_t(M) * sh.N), b(a.size());
        CK(cudaMemcpy(a.data(), y_ref, a.size() * 2, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(b.data(), y, b.size() * 2, cudaMemcpyDeviceToHost));
        size_t bad = 0;
        for (size_t i = 0; i < a.size(); ++i) bad += a[i] != b[i];
        if (bad) {
          ++mismatches;
          std::printf("MISMATCH %s vs %s at %dx%d M=%d: %zu of %zu values differ\n",
                      kVariants[v].name, kVariants[ref].name, sh.N, sh.K, M, bad, a.size());
        }
      }
      // One graph per variant: `launches` calls cycling over the weight copies.
      std::vector<cudaGraphExec_t> exec(kNumVariants);
      std::vector<int> launches(kNumVariants);
      for (int v = 0; v < kNumVariants; ++v) {
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        CK(cudaEventRecord(e0, s));
        for (int c = 0; c < copies; ++c) kVariants[v].run(problem(v, c, y));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        const int per = std::max(copies, int(target_ms / 5 / std::max(ms / copies, 1e-3f)));
        launches[v] = std::min(per, 400);
        cudaGraph_t g;
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        for (int i = 0; i < launches[v]; ++i) kVariants[v].run(problem(v, i % copies, y));
        CK(cudaStreamEndCapture(s, &g));
        CK(cudaGraphInstantiate(&exec[v], g, 0));
        CK(cudaGraphDestroy(g));
        CK(cudaGraphLaunch(exec[v], s));  // warm
      }
      std::vector<std::vector<float>> t(kNumVariants);
      std::vector<int> order(kNumVariants);
      for (int v = 0; v < kNumVariants; ++v) order[v] = v;
      cudaEvent_t e0, e1;
      CK(cudaEventCreate(&e0));
      CK(cudaEventCreate(&e1));
      for (int round = 0; round < 5; ++round) {
        std::rotate(order.begin(), order.begin() + 2, order.end());
        if (round % 2) std::reverse(order.begin(), order.end());
        for (int v : order) {
          CK(cudaEventRecord(e0, s));
          CK(cudaGraphLaunch(exec[v], s));
          CK(cudaEventRecord(e1, s));
          CK(cudaEventSynchronize(e1));
          float ms = 0;
          CK(cudaEventElapsedTime(&ms, e0, e1));
          t[v].push_back(1000.f * ms / launches[v]);
        }
      }
      std::printf("| %d | %d | %d |", sh.N, sh.K, M);
      for (int v = 0; v < kNumVariants; ++v) {
        std::sort(t[v].begin(), t[v].end());
        std::printf(" %.2f |", t[v][t[v].size() / 2]);
        CK(cudaGraphExecDestroy(exec[v]));
      }
      std::printf("\n");
      std::fflush(stdout);
      CK(cudaFree(xq));
      CK(cudaFree(xs));
      CK(cudaFree(y));
      CK(cudaFree(y_ref));
    }
    for (auto* p : up) CK(cudaFree(p));
    CK(cudaFree(k));
  }
  std::printf("bitwise checks (%s): %s\n",
              epilogue_set ? "reg == shared" : "double-buffered == CUTLASS at the same interval",
              mismatches ? "FAILED" : "ok");
  return mismatches ? 1 : 0;
}
