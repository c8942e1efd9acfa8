#pragma once
// Block-wide reductions and scans for the row kernels of ops.hpp (sampling, log-probabilities,
// attention). Every function is called by all threads of the block, blockDim.x a multiple of 32
// and <= 1024, and leaves the shared scratch free for reuse (it ends with a barrier). The
// combination order depends only on blockDim.x, so results are deterministic.
#include <cuda_runtime.h>

#include <cstdint>

namespace nestedfp::cuda::blk {

inline constexpr unsigned kFull = 0xffffffffu;

template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

// Reduces v over the block; every thread gets the result. `scratch` holds 32 T.
template <typename T, typename Op>
__device__ T reduce(T v, T identity, Op op, T* scratch) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  v = warp_reduce(v, op);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < warps ? scratch[lane] : identity;
    w = warp_reduce(w, op);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  const T r = scratch[0];
  __syncthreads();
  return r;
}

struct Sum {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct Max {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};
struct Min {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a < b ? a : b;
  }
};

// (value, index) with the order "larger value first, lower index on ties"; index -1 = none.
struct ArgMax {
  float v;
  int32_t i;
};
__device__ __forceinline__ bool better(float va, int32_t ia, float vb, int32_t ib) {
  if (ib < 0) return ia >= 0;
  if (ia < 0) return false;
  return va > vb || (va == vb && ia < ib);
}
__device__ __forceinline__ ArgMax warp_argmax(ArgMax a) {
  for (int o = 16; o > 0; o >>= 1) {
    const float v = __shfl_xor_sync(kFull, a.v, o);
    const int32_t i = __shfl_xor_sync(kFull, a.i, o);
    if (better(v, i, a.v, a.i)) a = {v, i};
  }
  return a;
}
// `scratch` holds 32 ArgMax.
__device__ inline ArgMax reduce_argmax(ArgMax a, ArgMax* scratch) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  a = warp_argmax(a);
  if (lane == 0) scratch[warp] = a;
  __syncthreads();
  if (warp == 0) {
    ArgMax w = lane < warps ? scratch[lane] : ArgMax{0.f, -1};
    w = warp_argmax(w);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  const ArgMax r = scratch[0];
  __syncthreads();
  return r;
}

// Inclusive prefix sum of v in thread order; *total gets the block's sum. `scratch` holds 32 T.
template <typename T>
__device__ T inclusive_scan(T v, T* total, T* scratch) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int o = 1; o < 32; o <<= 1) {
    const T u = __shfl_up_sync(kFull, v, o);
    if (lane >= o) v += u;
  }
  if (lane == 31) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < warps ? scratch[lane] : T(0);
    for (int o = 1; o < 32; o <<= 1) {
      const T u = __shfl_up_sync(kFull, w, o);
      if (lane >= o) w += u;
    }
    scratch[lane] = w;  // inclusive scan of the warp totals
  }
  __syncthreads();
  if (warp > 0) v += scratch[warp - 1];
  *total = scratch[warps - 1];
  __syncthreads();
  return v;
}

}  // namespace nestedfp::cuda::blk
