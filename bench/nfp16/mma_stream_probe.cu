// Probe of the streaming mma kernels (src/backend/cuda/nested_mma_stream.cuh): pipeline depth,
// CTAs per SM and cluster split against a plain streaming-read kernel over the same bytes, for a
// few weight shapes. Not part of the build: compile on the GPU machine with
//   nvcc -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a -Isrc \
//        -DNESTEDFP_CUDA_KERNEL_SET_LEVEL=1 bench/nfp16/mma_stream_probe.cu -o probe
// Timing: a CUDA graph of 20 launches cycling over weight copies of >= 3x L2; median of 7 replays.
// Values are random bytes (the time does not depend on them). Prints one line per point.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/cuda/nested_mma_stream.cuh"

#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

namespace ms = nestedfp::cuda::mma_stream;

__global__ void fill(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t x = uint32_t(i) * 2654435761u ^ seed;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    // Finite E4M3/FP16 bytes: clear the exponent's top bit (no NaN / Inf patterns).
    p[i] = uint8_t(x >> 24) & 0xBF;
  }
}

// The floor: every byte read once with 16-byte loads, grid-stride, many warps.
__global__ void stream_read(const uint4* p, size_t n16, uint32_t* out) {
  uint32_t acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n16;
       i += size_t(gridDim.x) * blockDim.x) {
    const uint4 v = ms::load_stream(reinterpret_cast<const uint8_t*>(p + i));
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) out[0] = acc;
}

struct Problem {
  int N, K, M;
  bool fp8;
  int copies;
  std::vector<uint8_t*> upper, lower;
  uint8_t* x;
  float* xs;
  __half* y;
  int8_t* k;
};

template <class F>
double time_graph(cudaStream_t s, F launch_one, int launches) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  launch_one(0);  // warm-up outside capture (attributes)
  CK(cudaStreamSynchronize(s));
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < launches; ++i) launch_one(i);
  CK(cudaStreamEndCapture(s, &g));
  CK(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  std::vector<float> ms_;
  for (int r = 0; r < 8; ++r) {
    CK(cudaEventRecord(a, s));
    CK(cudaGraphLaunch(ge, s));
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float t = 0;
    CK(cudaEventElapsedTime(&t, a, b));
    if (r > 0) ms_.push_back(t);
  }
  std::sort(ms_.begin(), ms_.end());
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  return ms_[ms_.size() / 2] * 1000.0 / launches;  // us per launch
}

template <ms::Mode kMode, int kTokens, int kStages, int kMinBlocks, bool kBranchFree = false,
          bool kSpan64 = false>
void run(Problem& p, cudaStream_t s, int sms, const char* splits_env) {
  if (splits_env)
    setenv("NFP_MMA_SPLITS", splits_env, 1);
  else
    unsetenv("NFP_MMA_SPLITS");
  auto one = [&](int i) {
    const int c = i % p.copies;
    const ms::Args a{p.upper[c], p.lower[c], p.k, p.x, p.xs, p.y, p.M, p.N, p.K};
    CK((ms::launch<kMode, kTokens, kStages, kMinBlocks, kBranchFree, kSpan64>(a, sms, s)));
  };
  const double us = time_graph(s, one, 20);
  const double bytes = double(p.N) * p.K * (kMode == ms::Mode::Fp16 ? 2 : 1);
  const ms::Args a0{p.upper[0], p.lower[0], p.k, p.x, p.xs, p.y, p.M, p.N, p.K};
  const int splits = ms::splits_for<kMode, kTokens, kStages>(a0, sms);
  std::printf(
      "%s%s%s tok%-2d stages %d minblk %d splits %d  N=%-6d K=%-6d M=%-3d  %8.2f us  %6.0f GB/s\n",
      kMode == ms::Mode::Fp16 ? "fp16" : "fp8 ", kBranchFree ? " branch-free" : "",
      kSpan64 ? " span64" : "", kTokens,
      ms::Shape<kTokens, kStages, kMode == ms::Mode::Fp16>::kStages, kMinBlocks, splits, p.N, p.K,
      p.M, us, bytes / us * 1e-3);
  std::fflush(stdout);
}

int main() {
  int dev = 0, sms = 0;
  CK(cudaSetDevice(dev));
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  uint32_t* sink;
  CK(cudaMalloc(&sink, 4));
  const int shapes[][2] = {{1024, 4096}, {4096, 4096}, {6144, 4096}, {28672, 4096}, {4096, 14336}};
  for (const auto& sh : shapes) {
    for (int M : {1, 16}) {
      Problem p{sh[0], sh[1], M, false, 0, {}, {}, nullptr, nullptr, nullptr, nullptr};
      const size_t plane = size_t(p.N) * p.K;
      p.copies = int(std::max<size_t>(4, (size_t(200) << 20) / plane + 1));
      for (int c = 0; c < p.copies; ++c) {
        uint8_t *u, *l;
        CK(cudaMalloc(&u, plane));
        CK(cudaMalloc(&l, plane));
        fill<<<1024, 256, 0, s>>>(u, plane, 17u * c + 1);
        fill<<<1024, 256, 0, s>>>(l, plane, 31u * c + 7);
        p.upper.push_back(u), p.lower.push_back(l);
      }
      CK(cudaMalloc(&p.x, size_t(M) * p.K * 2));
      fill<<<256, 256, 0, s>>>(p.x, size_t(M) * p.K * 2, 99);
      CK(cudaMalloc(&p.xs, M * 4));
      CK(cudaMemset(p.xs, 0, M * 4));
      CK(cudaMalloc(&p.y, size_t(M) * p.N * 2));
      CK(cudaMalloc(&p.k, p.N));
      CK(cudaMemset(p.k, 0, p.N));
      CK(cudaStreamSynchronize(s));
      // Floor: the same bytes (both planes) read by a plain streaming kernel.
      const double us_read = time_graph(
          s,
          [&](int i) {
            const int c = i % p.copies;
            stream_read<<<sms * 8, 256, 0, s>>>(reinterpret_cast<const uint4*>(p.upper[c]),
                                                plane / 16, sink);
            stream_read<<<sms * 8, 256, 0, s>>>(reinterpret_cast<const uint4*>(p.lower[c]),
                                                plane / 16, sink);
          },
          10);
      std::printf("read both planes (2 kernels)     N=%-6d K=%-6d        %8.2f us  %6.0f GB/s\n",
                  p.N, p.K, us_read, 2.0 * plane / us_read * 1e-3);
      if (M == 1) {
        run<ms::Mode::Fp16, 8, 0, 2>(p, s, sms, nullptr);
        run<ms::Mode::Fp16, 8, 8, 1>(p, s, sms, nullptr);
        run<ms::Mode::Fp16, 8, 2, 2>(p, s, sms, nullptr);
        run<ms::Mode::Fp16, 8, 0, 2>(p, s, sms, "8");
        run<ms::Mode::Fp16, 8, 0, 2>(p, s, sms, "1");
        run<ms::Mode::Fp8, 8, 0, 2>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 8, 2, 2>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 8, 0, 2>(p, s, sms, "1");
        run<ms::Mode::Fp8, 8, 0, 2, true>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 8, 8, 1, true>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 8, 8, 1>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 8, 0, 2>(p, s, sms, "8");
        // session 26: whole-sector loads (kSpan64), and 4 CTAs per SM (2 stages: no spills)
        run<ms::Mode::Fp8, 8, 0, 2, false, true>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 8, 2, 2, false, true>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 8, 0, 2, false, true>(p, s, sms, "resident");
        run<ms::Mode::Fp8, 8, 2, 4, false, true>(p, s, sms, "8");
        run<ms::Mode::Fp8, 8, 2, 4, false, true>(p, s, sms, nullptr);
      } else {
        run<ms::Mode::Fp16, 16, 0, 2>(p, s, sms, nullptr);
        run<ms::Mode::Fp16, 16, 8, 1>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 16, 0, 2>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 16, 8, 1>(p, s, sms, nullptr);
        run<ms::Mode::Fp16, 32, 0, 2>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 32, 0, 2>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 16, 0, 2, false, true>(p, s, sms, nullptr);
        run<ms::Mode::Fp8, 16, 0, 2, false, true>(p, s, sms, "resident");
        run<ms::Mode::Fp8, 32, 0, 2, false, true>(p, s, sms, nullptr);
      }
      for (int c = 0; c < p.copies; ++c) {
        CK(cudaFree(p.upper[c]));
        CK(cudaFree(p.lower[c]));
      }
      for (void* q : {(void*)p.x, (void*)p.xs, (void*)p.y, (void*)p.k}) CK(cudaFree(q));
    }
  }
  return 0;
}
