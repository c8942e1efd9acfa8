// Row copies (embedding lookup, row gather, column split) and the residual add: memory-bound,
// grid-stride, 16-byte accesses whenever the row length and the pointers allow them.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"

namespace nestedfp::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // grid-stride beyond this: enough to fill any Hopper

unsigned grid_for(int64_t work) {
  return unsigned(std::clamp<int64_t>((work + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// dst[i, :] = src[idx[i], :]. T is the access unit (uint4 = 8 halves, or __half); `units` the
// row length in T. A negative index (never produced by the engine) leaves the row untouched
// rather than reading outside the table.
template <typename T>
__global__ void copy_rows_kernel(const T* __restrict__ src, int64_t units,
                                 const int32_t* __restrict__ idx, int64_t rows,
                                 T* __restrict__ dst) {
  const int64_t total = rows * units;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = t / units, c = t - r * units;
    const int32_t s = idx[r];
    if (s >= 0) dst[t] = src[int64_t(s) * units + c];
  }
}

void copy_rows(const char* op, const __half* src, int64_t cols, const int32_t* idx, int R,
               __half* dst, cudaStream_t stream) {
  if (R < 0 || cols < 0) cuda_fail(op, ": negative shape (rows ", R, ", cols ", cols, ")");
  if (R == 0 || cols == 0) return;
  if (!src || !idx || !dst) cuda_fail(op, ": null pointer (src, index array or dst)");
  if (src == dst)
    cuda_fail(op,
              ": src and dst are the same buffer; rows are copied in parallel, use another buffer");
  if (cols % 8 == 0 && aligned16(src) && aligned16(dst)) {
    const int64_t units = cols / 8;
    copy_rows_kernel<<<grid_for(R * units), kThreads, 0, stream>>>(
        reinterpret_cast<const uint4*>(src), units, idx, R, reinterpret_cast<uint4*>(dst));
  } else {
    copy_rows_kernel<<<grid_for(R * cols), kThreads, 0, stream>>>(src, cols, idx, R, dst);
  }
  NFP_CUDA_CHECK_LAUNCH();
}

union H8 {
  uint4 u;
  __half h[8];
};

__device__ __forceinline__ __half add_round(__half a, __half b) {
  return __float2half_rn(__half2float(a) + __half2float(b));
}

// x[i] = fp16(x[i] + y[i]) for i < n: 8 per thread on the 16-byte-aligned body, then the tail.
__global__ void add_kernel(__half* __restrict__ x, const __half* __restrict__ y, int64_t n,
                           bool vec) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x,
                first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  int64_t body = 0;
  if (vec) {
    body = n / 8 * 8;
    for (int64_t v = first; v < n / 8; v += stride) {
      H8 a, b;
      a.u = reinterpret_cast<const uint4*>(x)[v];
      b.u = reinterpret_cast<const uint4*>(y)[v];
#pragma unroll
      for (int j = 0; j < 8; ++j) a.h[j] = add_round(a.h[j], b.h[j]);
      reinterpret_cast<uint4*>(x)[v] = a.u;
    }
  }
  for (int64_t i = body + first; i < n; i += stride) x[i] = add_round(x[i], y[i]);
}

// Destinations of split_columns, by value in the kernel's parameters: part p owns the columns
// [end[p-1], end[p]) of a row (in access units; end[-1] = 0).
struct ColumnSplit {
  void* dst[kMaxColumnParts];
  int64_t end[kMaxColumnParts];
  int n;
};

template <typename T>
__global__ void split_columns_kernel(const T* __restrict__ x, int64_t rows, ColumnSplit a) {
  const int64_t width = a.end[a.n - 1], total = rows * width;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = t / width, c = t - r * width;
    int p = 0;
    while (c >= a.end[p]) ++p;
    const int64_t c0 = p ? a.end[p - 1] : 0;
    static_cast<T*>(a.dst[p])[r * (a.end[p] - c0) + (c - c0)] = x[t];
  }
}

}  // namespace

void split_columns(const __half* x, int M, int nparts, __half* const* dst, const int64_t* widths,
                   cudaStream_t stream) {
  if (nparts < 1 || nparts > kMaxColumnParts)
    cuda_fail("split_columns: ", nparts, " parts (1 to ", kMaxColumnParts, ")");
  if (M < 0) cuda_fail("split_columns: negative row count ", M);
  if (!x) cuda_fail("split_columns: null source");
  bool vec = aligned16(x);
  for (int p = 0; p < nparts; ++p) {
    if (!dst[p] || widths[p] <= 0) cuda_fail("split_columns: part ", p, " has no buffer or width");
    if (dst[p] == x) cuda_fail("split_columns: part ", p, " is the source buffer");
    vec = vec && widths[p] % 8 == 0 && aligned16(dst[p]);
  }
  if (M == 0) return;
  ColumnSplit a{};
  a.n = nparts;
  int64_t end = 0;
  for (int p = 0; p < nparts; ++p) a.dst[p] = dst[p], a.end[p] = end += widths[p] / (vec ? 8 : 1);
  if (vec)
    split_columns_kernel<<<grid_for(M * end), kThreads, 0, stream>>>(
        reinterpret_cast<const uint4*>(x), M, a);
  else
    split_columns_kernel<<<grid_for(M * end), kThreads, 0, stream>>>(x, M, a);
  NFP_CUDA_CHECK_LAUNCH();
}

void embedding(const __half* table, int64_t hidden, const int32_t* ids, int M, __half* out,
               cudaStream_t stream) {
  copy_rows("embedding", table, hidden, ids, M, out, stream);
}

void gather_rows(const __half* src, int64_t cols, const int32_t* rows, int R, __half* dst,
                 cudaStream_t stream) {
  copy_rows("gather_rows", src, cols, rows, R, dst, stream);
}

void add_inplace(__half* x, const __half* y, int64_t n, cudaStream_t stream) {
  if (n < 0) cuda_fail("add_inplace: negative length ", n);
  if (n == 0) return;
  if (!x || !y) cuda_fail("add_inplace: null pointer");
  const bool vec = aligned16(x) && aligned16(y);
  add_kernel<<<grid_for(vec ? (n + 7) / 8 : n), kThreads, 0, stream>>>(x, y, n, vec);
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda
