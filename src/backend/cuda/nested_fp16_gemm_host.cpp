// Host-side helpers of the NestedFP16 GEMM that need no device compiler: errors (nestedfp::Error
// via fmt, which nvcc cannot compile), SM counts, and the cached stream-K workspaces.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/sched_env.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::cuda::nfp16 {

[[noreturn]] void raise(const std::string& msg) { throw Error("nested_fp16_gemm: " + msg); }

namespace {
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) raise(std::string(what) + " failed: " + cudaGetErrorString(e));
}
struct Buffer {
  void* ptr = nullptr;
  size_t bytes = 0;
};
std::mutex g_mutex;
std::map<int, int> g_sm_count;
// One workspace per (device, stream): GEMMs on one stream are ordered, so they may share it.
std::map<std::pair<int, cudaStream_t>, Buffer> g_workspaces;
// Outgrown buffers are kept, not freed: a captured CUDA graph may still point into them.
std::vector<void*> g_retired;
size_t g_total_bytes = 0;  // live and retired workspaces
}  // namespace

struct SchedChoice {
  int raster = 0;
  int swizzle = 1;
  int decomposition = 0;
  int splits = 1;
};

// Defaults, then NFP16_SCHED overrides for tuning experiments, e.g.
// NFP16_SCHED="raster=2,swizzle=8,decomp=2,splits=4". Arguments are in GEMM coordinates
// (M' = weight rows, N' = tokens).
SchedChoice sched_choice(int tile_m, int tile_n, int tile_k, int M, int N, int K, int sms) {
  SchedChoice c;
  const long tiles = long((M + tile_m - 1) / tile_m) * ((N + tile_n - 1) / tile_n);
  const long k_tiles = (K + tile_k - 1) / tile_k;
  if (2 * tiles <= sms && k_tiles >= 16) {
    // Few output tiles (narrow layers at small M): plain split-K over ~all SMs measured a few
    // percent faster than the stream-K heuristic (4096x14336, M=16: 39.5 vs 41.2 us on an H200).
    c.decomposition = 2;
    c.splits = int(std::min<long>(std::min<long>(8, sms / tiles), k_tiles / 4));
  }
  // Read on every call: tests and the benchmark set it per scope.
  const SchedOverride o = sched_override("NFP16_SCHED");
  if (o.raster >= 0) c.raster = o.raster;
  if (o.swizzle >= 0) c.swizzle = o.swizzle;
  if (o.decomp >= 0) {
    c.decomposition = o.decomp;
    // Splits belong to split-K only: data-parallel and stream-K reject splits > 1.
    if (c.decomposition != 2 && c.decomposition != 0) c.splits = 1;
  }
  if (o.splits >= 0) c.splits = o.splits;
  return c;
}

int sm_count(int device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto it = g_sm_count.find(device);
  if (it != g_sm_count.end()) return it->second;
  int n = 0;
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device),
        "cudaDeviceGetAttribute");
  g_sm_count[device] = n;
  return n;
}

void* workspace(int device, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  Buffer& b = g_workspaces[{device, stream}];
  if (b.bytes >= bytes) return b.ptr;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(stream, &cap), "cudaStreamIsCapturing");
  if (cap != cudaStreamCaptureStatusNone)
    fail(
        "nested_fp16_gemm: needs {} bytes of stream-K workspace while the stream is being "
        "captured; "
        "run the same shape once on this stream before capturing",
        bytes);
  if (b.ptr) g_retired.push_back(b.ptr);
  b = {};
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc(stream-K workspace)");
  b = {p, bytes};
  g_total_bytes += bytes;
  return p;
}

}  // namespace nestedfp::cuda::nfp16

namespace nestedfp::cuda {
size_t nested_fp16_workspace_bytes() {
  std::lock_guard<std::mutex> lock(nfp16::g_mutex);
  return nfp16::g_total_bytes;
}
}  // namespace nestedfp::cuda
