// Paged KV cache writes: this step's k and v rows go to their slots in the [block, head, 16, dim]
// ("HND") layer cache. Memory-bound, grid-stride, 16-byte accesses when head_dim % 8 == 0.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"

namespace nestedfp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

// T: access unit (uint4 = 8 halves, or __half); `units` = head_dim in T. A slot outside the
// cache (never produced by the engine, which validates slots) is skipped instead of corrupting
// memory.
template <typename T>
__global__ void write_kv_kernel(T* __restrict__ kc, T* __restrict__ vc, const T* __restrict__ k,
                                const T* __restrict__ v, const int32_t* __restrict__ slots,
                                int64_t M, int nkv, int units, int num_blocks) {
  const int64_t per_token = int64_t(nkv) * units, total = M * per_token;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = t / per_token, r = t - m * per_token;
    const int h = int(r / units), c = int(r - int64_t(h) * units);
    const int32_t slot = slots[m];
    const int32_t block = slot / kPageSize, off = slot % kPageSize;
    if (slot < 0 || block >= num_blocks) continue;
    const int64_t dst = ((int64_t(block) * nkv + h) * kPageSize + off) * units + c;
    kc[dst] = k[t];
    vc[dst] = v[t];
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void write_kv(const PagedKv& cache, const __half* k, const __half* v, const int32_t* slots, int M,
              cudaStream_t stream) {
  if (M < 0) cuda_fail("write_kv: negative token count ", M);
  if (cache.num_blocks <= 0 || cache.nkv <= 0 || cache.head_dim <= 0)
    cuda_fail("write_kv: empty cache (", cache.num_blocks, " blocks, ", cache.nkv,
              " kv heads, head_dim ", cache.head_dim, ")");
  if (M == 0) return;
  if (!cache.k || !cache.v || !k || !v || !slots)
    cuda_fail("write_kv: null pointer (cache k/v, k, v or slots)");
  const int hd = cache.head_dim;
  const bool vec =
      hd % 8 == 0 && aligned16(cache.k) && aligned16(cache.v) && aligned16(k) && aligned16(v);
  const int units = vec ? hd / 8 : hd;
  const int64_t total = int64_t(M) * cache.nkv * units;
  const unsigned grid =
      unsigned(std::clamp<int64_t>((total + kThreads - 1) / kThreads, 1, kMaxBlocks));
  if (vec) {
    write_kv_kernel<<<grid, kThreads, 0, stream>>>(
        reinterpret_cast<uint4*>(cache.k), reinterpret_cast<uint4*>(cache.v),
        reinterpret_cast<const uint4*>(k), reinterpret_cast<const uint4*>(v), slots, M, cache.nkv,
        units, cache.num_blocks);
  } else {
    write_kv_kernel<<<grid, kThreads, 0, stream>>>(cache.k, cache.v, k, v, slots, M, cache.nkv,
                                                   units, cache.num_blocks);
  }
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
