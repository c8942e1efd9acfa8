#pragma once
// Streaming nested GEMMs for few tokens (docs/KERNELS.md §2.6): the "mma128x<T>" configurations of
// both families. Below ~64 tokens a GEMM is the time to stream the weight once; the CUTLASS
// kernels reach ~60% of the copy bandwidth there (TMA tiles of 128 rows leave SMs idle on narrow
// layers, and the pipeline ramps up per tile). These kernels keep every SM's load queue full
// instead:
//  - a CTA of 8 warps owns 128 weight rows (16 per warp: one mma.sync m16 tile) and a slice of K;
//    thread-block clusters of S CTAs along K split K when there are too few row blocks to fill the
//    SMs, and reduce through distributed shared memory in a fixed order (deterministic, no
//    workspace, nothing to reset between graph replays);
//  - weight blocks stream kStages ahead of the math. FP16 (two planes): each lane copies its
//    16-byte pieces with cp.async into its own slots of a shared-memory ring and reads them back
//    itself (so cp.async.wait_group is all the ring needs). FP8 (one plane): each lane loads its
//    pieces into a register ring. Each measured faster for its family; neither reaches the depth
//    written (depths 2, 4 and 8 time the same; likely waits at each block's branch, see
//    kBranchFree and bench/nfp16/NOTES.md v3). FP16 merges (docs/DESIGN.md §1.3) in registers;
//  - a dot product does not depend on the order of k, so the k index inside a block is permuted:
//    lane t holds k = 16t..16t+15 (FP16: 4 mma k16 steps) or 32t..32t+31 (FP8: 4 mma k32 steps)
//    of its rows, and reads the activations with the same permutation from shared memory, where
//    the CTA stages them in chunks (cp.async, double-buffered; rows padded by 16 bytes, so the
//    32-byte fragment reads are free of bank conflicts).
// FP16: mma.sync m16n8k16 f16 x f16 -> f32. FP8: m16n8k32 e4m3 x e4m3 -> f32 (sm_89+). Epilogue as
// the CUTLASS kernels: FP16 y = fp16(acc * 2^-k_n); FP8 y = fp16(acc * 2^(-k_n - 8) * scale_m).
// Any M works (token tiles on grid z re-read the weight); the tuner decides where they win.
#include <cooperative_groups.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "backend/cuda/gemm_heuristics.hpp"

namespace nestedfp::cuda::mma_stream {

enum class Mode { Fp16, Fp8 };

struct Args {
  const uint8_t* upper;
  const uint8_t* lower;  // FP16 only
  const int8_t* k;       // per-row exponents; may be null (all 0)
  const uint8_t* x;      // FP16: __half [M, K]; FP8: e4m3 [M, K] (row-major, dense)
  const float* x_scale;  // FP8 only: [M]
  __half* y;             // [M, N]
  int M, N, K;
};

inline constexpr int kThreads = 256;  // 8 warps
inline constexpr int kRows = 128;     // weight rows per CTA, 16 per warp

// kTokens: the token tile (8, 16, 32 or 64: 1..8 mma n8 tiles). A block is 128 bytes of one
// activation row: 64 FP16 or 128 FP8 values of k.
// kSharedRing: weight blocks through a cp.async ring in shared memory (FP16) or straight into a
// register ring (FP8); each measured faster for its family (bench/nfp16/NOTES.md).
template <int kTokens, int kStagesWanted = 0, bool kSharedRing = true>
struct Shape {
  static_assert(kTokens % 8 == 0 && kTokens >= 8 && kTokens <= 64, "token tile of 8..64");
  static constexpr int kTiles = kTokens / 8;
  // Weight blocks in flight per warp: 2 KB of shared memory, or 16 registers, each (fewer where
  // the accumulators need the registers).
  static constexpr int kStages = kStagesWanted > 0               ? kStagesWanted
                                 : (!kSharedRing && kTiles >= 8) ? 2
                                                                 : 4;
  static_assert(kStages >= 2, "the ring needs two stages");
  static constexpr int kChunk = 2 * kStages;             // blocks per staged activation chunk
  static constexpr int kRowBytes = kChunk * 128 + 16;    // smem row stride (+16: no conflicts)
  static constexpr int kBufBytes = kTokens * kRowBytes;  // one of two chunk buffers
  static constexpr int kRingBytes = kSharedRing ? kStages * (kThreads / 32) * 2048 : 0;
  static constexpr int kRedStride = kRows + 4;  // floats; +4: no conflicts
  static constexpr int kMainBytes = 2 * kBufBytes + kRingBytes;
  static constexpr int kRedBytes = kTokens * kRedStride * 4;
  static constexpr int kSmemBytes = kMainBytes > kRedBytes ? kMainBytes : kRedBytes;
  static_assert(kSmemBytes <= 227 * 1024, "more shared memory than an sm_90 CTA may have");
};

__device__ __forceinline__ uint4 load_stream(const uint8_t* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// docs/DESIGN.md §1.3 on 4 packed weights (the same formula as the CUTLASS mainloop's
// merge4_high_bytes): the high bytes of the 4 FP16 values whose low bytes are l.
__device__ __forceinline__ uint32_t merge_high(uint32_t u, uint32_t l) {
  const uint32_t v = u - ((l >> 7) & 0x01010101u);
  return (v & 0x80808080u) | ((v >> 1) & 0x3F3F3F3Fu);
}

__device__ __forceinline__ void mma_f16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                        uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_e4m3(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  // src-size 0 writes 16 zero bytes and reads nothing.
  // "memory": the compiler must not move shared-memory reads across the copies and waits.
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem),
               "r"(valid ? 16 : 0)
               : "memory");
}

// kBranchFree (register ring only; a probe, bench/nfp16/NOTES.md v3): every block of the last
// chunk is computed (past the slice on zeros) and only the loads are predicated, so no branch
// separates a block's loads from its use.
// kSpan64 (FP8 register ring; a probe): lane t's 32 bytes of a 128-byte block are k 16t..16t+15
// and 64+16t..64+16t+15 instead of 32t..32t+31, so each 16-byte load instruction of a warp reads
// 64 contiguous bytes of each of its 8 rows (whole 32-byte sectors) instead of every other half
// sector; the activations are read with the same permutation.
template <Mode kMode, int kTokens, int kStagesWanted = 0, int kMinBlocks = 2,
          bool kBranchFree = false, bool kSpan64 = false>
__global__ void __launch_bounds__(kThreads, kMinBlocks) stream_gemm_kernel(Args a) {
  static_assert(!kSpan64 || kMode == Mode::Fp8, "kSpan64 permutes the FP8 register ring only");
  constexpr bool kShared = kMode == Mode::Fp16;
  using S = Shape<kTokens, kStagesWanted, kShared>;
  constexpr int kBlockK = kMode == Mode::Fp16 ? 64 : 128;  // k per block
  extern __shared__ __align__(16) uint8_t smem[];
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int g = lane / 4, t = lane % 4;
  const int row0 = int(blockIdx.x) * kRows, tok0 = int(blockIdx.z) * kTokens;
  const int splits = int(gridDim.y), slice = int(blockIdx.y);
  const int blocks = (a.K + kBlockK - 1) / kBlockK;
  const int b_begin = int(int64_t(blocks) * slice / splits);
  const int nb = int(int64_t(blocks) * (slice + 1) / splits) - b_begin;

  // This lane's two weight rows (g and g + 8 of its warp's 16) and where its bytes of a block are.
  const int ra = row0 + warp * 16 + g, rb = ra + 8;
  const bool va = ra < a.N, vb = rb < a.N;
  const int64_t K = a.K;
  const uint8_t* ua = a.upper + (va ? ra : 0) * K;
  const uint8_t* ub = a.upper + (vb ? rb : 0) * K;
  const uint8_t* la = kMode == Mode::Fp16 ? a.lower + (va ? ra : 0) * K : nullptr;
  const uint8_t* lb = kMode == Mode::Fp16 ? a.lower + (vb ? rb : 0) * K : nullptr;
  // Shared ring (FP16): a block's 4 pieces of 16 bytes per lane go to the lane's own slots of ring
  // stage i % kStages (piece p at p * 512 + lane * 16 of the warp's 2 KB: conflict-free both
  // ways); only this thread reads them back, so cp.async.wait_group is the only synchronization
  // the ring needs. Pieces: upper a, upper b, lower a, lower b (16 bytes = k 16t..16t+15 each).
  // Register ring (FP8): upper a [0, 16), a [16, 32), b [0, 16), b [16, 32) (k 32t..32t+31).
  uint8_t* ring = smem + 2 * S::kBufBytes + warp * 2048 + lane * 16;  // shared ring only
  auto issue_block = [&](int i) {  // block i of the slice; nothing past the slice
    if (i >= nb) return;
    uint8_t* dst = ring + (i % S::kStages) * (kThreads / 32) * 2048;
    const int64_t c = int64_t(b_begin + i) * 64 + 16 * t;
    const bool in = c < K;
    cp_async16(dst, ua + (in ? c : 0), va && in);
    cp_async16(dst + 512, ub + (in ? c : 0), vb && in);
    cp_async16(dst + 1024, la + (in ? c : 0), va && in);
    cp_async16(dst + 1536, lb + (in ? c : 0), vb && in);
  };

  auto load_block = [&](int b, uint4(&w)[4], bool ok = true) {  // the register ring (FP8)
    const int64_t c = int64_t(b) * 128 + (kSpan64 ? 16 * t : 32 * t);
    const int64_t c1 = c + (kSpan64 ? 64 : 16);  // K % 16 == 0: a piece is all in or all out
    const bool in0 = ok && c < K, in1 = ok && c1 < K;
    const uint4 z = make_uint4(0, 0, 0, 0);
    w[0] = va && in0 ? load_stream(ua + c) : z;
    w[1] = va && in1 ? load_stream(ua + c1) : z;
    w[2] = vb && in0 ? load_stream(ub + c) : z;
    w[3] = vb && in1 ? load_stream(ub + c1) : z;
  };

  // Activation chunk ci (blocks b_begin + ci*kChunk ...) into buffer ci & 1: kTokens rows of
  // kChunk 128-byte blocks; tokens past M, blocks past the slice and bytes past K are zeros.
  const int64_t x_row_bytes = kMode == Mode::Fp16 ? 2 * K : K;
  auto stage = [&](int ci) {
    uint8_t* buf = smem + (ci & 1) * S::kBufBytes;
    constexpr int kPieces = kTokens * S::kChunk * 8;
    for (int p = int(threadIdx.x); p < kPieces; p += kThreads) {
      const int tok = p / (S::kChunk * 8), rest = p % (S::kChunk * 8);
      const int bl = rest / 8, piece = rest % 8;
      const int b = ci * S::kChunk + bl;  // within the slice
      const int64_t byte = int64_t(b_begin + b) * 128 + 16 * piece;
      const bool valid = tok0 + tok < a.M && b < nb && byte < x_row_bytes;
      const uint8_t* src = valid ? a.x + int64_t(tok0 + tok) * x_row_bytes + byte : a.x;
      cp_async16(buf + tok * S::kRowBytes + bl * 128 + 16 * piece, src, valid);
    }
  };

  float acc[S::kTiles][4];
#pragma unroll
  for (int j = 0; j < S::kTiles; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

  // One block: 4 mma k-steps for every token tile. xs points at the block in the staged chunk.
  auto compute = [&](const uint4(&w)[4], const uint8_t* xs) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // 16 bytes of activations per token tile: 2 k-steps
      uint4 xf[S::kTiles];
#pragma unroll
      for (int j = 0; j < S::kTiles; ++j)
        xf[j] = *reinterpret_cast<const uint4*>(xs + (j * 8 + g) * S::kRowBytes +
                                                (kSpan64 && kMode == Mode::Fp8 ? 16 * t + 64 * h
                                                                               : 32 * t + 16 * h));
#pragma unroll
      for (int c = 2 * h; c < 2 * h + 2; ++c) {
        uint32_t a0, a1, a2, a3;
        if constexpr (kMode == Mode::Fp16) {
          // Word c of each plane: k 16t+4c .. +3 of rows a (w[0], w[2]) and b (w[1], w[3]).
          const uint32_t lwa = word(w[2], c), lwb = word(w[3], c);
          const uint32_t ha = merge_high(word(w[0], c), lwa), hb = merge_high(word(w[1], c), lwb);
          a0 = __byte_perm(lwa, ha, 0x5140), a2 = __byte_perm(lwa, ha, 0x7362);
          a1 = __byte_perm(lwb, hb, 0x5140), a3 = __byte_perm(lwb, hb, 0x7362);
        } else {
          // Words 2c, 2c+1 of row a (w[0..1]) and row b (w[2..3]): k 32t+8c .. +7.
          a0 = word(w[h], (2 * c) % 4), a2 = word(w[h], (2 * c + 1) % 4);
          a1 = word(w[2 + h], (2 * c) % 4), a3 = word(w[2 + h], (2 * c + 1) % 4);
        }
#pragma unroll
        for (int j = 0; j < S::kTiles; ++j) {
          const uint32_t b0 = word(xf[j], (2 * c) % 4), b1 = word(xf[j], (2 * c + 1) % 4);
          if constexpr (kMode == Mode::Fp16)
            mma_f16(acc[j], a0, a1, a2, a3, b0, b1);
          else
            mma_e4m3(acc[j], a0, a1, a2, a3, b0, b1);
        }
      }
    }
  };

  if constexpr (!kShared) {
    // Register ring: block i's loads are issued kStages blocks ahead into w[i % kStages]; the
    // activation chunks have their own cp.async groups.
    uint4 w[S::kStages][4];
#pragma unroll
    for (int j = 0; j < S::kStages; ++j) {
      if constexpr (kBranchFree)
        load_block(b_begin + j, w[j], j < nb);  // zeros past the slice: they are computed
      else if (j < nb)
        load_block(b_begin + j, w[j]);
    }
    const int chunks = (nb + S::kChunk - 1) / S::kChunk;
    if (chunks > 0) {
      stage(0);
      asm volatile("cp.async.commit_group;" ::: "memory");
    }
    for (int ci = 0; ci < chunks; ++ci) {
      if (ci + 1 < chunks) {
        stage(ci + 1);
        asm volatile("cp.async.commit_group;" ::: "memory");
        asm volatile("cp.async.wait_group 1;" ::: "memory");
      } else {
        asm volatile("cp.async.wait_group 0;" ::: "memory");
      }
      __syncthreads();
      const uint8_t* xs = smem + (ci & 1) * S::kBufBytes;
#pragma unroll
      for (int bb = 0; bb < S::kChunk; bb += S::kStages) {
#pragma unroll
        for (int j = 0; j < S::kStages; ++j) {
          const int i = ci * S::kChunk + bb + j;  // ring slot i % kStages = j
          if constexpr (kBranchFree) {
            compute(w[j], xs + (bb + j) * 128);  // zeros past the slice: weights and activations
            load_block(b_begin + i + S::kStages, w[j], i + S::kStages < nb);
          } else if (i < nb) {
            compute(w[j], xs + (bb + j) * 128);
            if (i + S::kStages < nb) load_block(b_begin + i + S::kStages, w[j]);
          }
        }
      }
      __syncthreads();  // the buffer is restaged two chunks on
    }
  } else {
    // One cp.async group per block: group i holds weight block i; the group issued at the start of
    // chunk c also carries activation chunk c + 1 (chunk 0 rides with block 0). Waiting until
    // kStages - 2 groups are pending completes block i and leaves the next ones in flight; the
    // barrier at each chunk start makes the chunk visible to all and frees the other buffer.
    stage(0);
#pragma unroll
    for (int i = 0; i < S::kStages - 1; ++i) {
      issue_block(i);
      asm volatile("cp.async.commit_group;" ::: "memory");
    }
    for (int i = 0; i < nb; ++i) {
      const int ci = i / S::kChunk, bl = i % S::kChunk;
      asm volatile("cp.async.wait_group %0;" ::"n"(S::kStages - 2) : "memory");
      if (bl == 0) {
        __syncthreads();
        if ((ci + 1) * S::kChunk < nb) stage(ci + 1);
      }
      issue_block(i + S::kStages - 1);
      asm volatile("cp.async.commit_group;" ::: "memory");
      const uint8_t* src = ring + (i % S::kStages) * (kThreads / 32) * 2048;
      uint4 w[4];
#pragma unroll
      for (int q = 0; q < 4; ++q) w[q] = *reinterpret_cast<const uint4*>(src + q * 512);
      compute(w, smem + (ci & 1) * S::kBufBytes + bl * 128);
    }
  }
  asm volatile("cp.async.wait_group 0;" ::: "memory");
  __syncthreads();  // the partial sums below overwrite the staging buffers

  // Partial sums to shared memory as [token][row], then the cluster's CTAs each reduce a share of
  // the tile over all S partials in rank order and write it.
  float* red = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int j = 0; j < S::kTiles; ++j) {
    const int tok = j * 8 + 2 * t, r = warp * 16 + g;
    red[tok * S::kRedStride + r] = acc[j][0];
    red[(tok + 1) * S::kRedStride + r] = acc[j][1];
    red[tok * S::kRedStride + r + 8] = acc[j][2];
    red[(tok + 1) * S::kRedStride + r + 8] = acc[j][3];
  }
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  if (splits > 1)
    cluster.sync();
  else
    __syncthreads();
  constexpr int kPairs = kTokens * kRows / 2;
  const int p_end = int(int64_t(kPairs) * (slice + 1) / splits);
  for (int p = int(int64_t(kPairs) * slice / splits) + int(threadIdx.x); p < p_end; p += kThreads) {
    const int tok = p / (kRows / 2), r = (p % (kRows / 2)) * 2;
    const int m = tok0 + tok, n = row0 + r;
    if (m >= a.M || n >= a.N) continue;  // N % 8 == 0: n + 1 < N too
    const int off = tok * S::kRedStride + r;
    float2 s = make_float2(0.f, 0.f);
    for (int q = 0; q < splits; ++q) {
      const float* part = splits > 1 ? cluster.map_shared_rank(red, q) : red;
      const float2 v = *reinterpret_cast<const float2*>(part + off);
      s.x += v.x, s.y += v.y;
    }
    int e0 = a.k ? -int(a.k[n]) : 0, e1 = a.k ? -int(a.k[n + 1]) : 0;
    float y0, y1;
    if constexpr (kMode == Mode::Fp16) {
      y0 = ldexpf(s.x, e0), y1 = ldexpf(s.y, e1);
    } else {
      const float xs = a.x_scale[m];
      y0 = ldexpf(s.x, e0 - 8) * xs, y1 = ldexpf(s.y, e1 - 8) * xs;
    }
    *reinterpret_cast<__half2*>(a.y + int64_t(m) * a.N + n) =
        __halves2half2(__float2half_rn(y0), __float2half_rn(y1));
  }
  if (splits > 1) cluster.sync();  // no CTA leaves while another still reads its partials
}

// Cluster size along K: the smallest power of two (<= 8, the portable cluster limit) that gives
// every SM a CTA, as long as each slice keeps at least kStages blocks. NFP_MMA_SPLITS=S overrides
// (experiments; "resident" is handled in launch()).
template <Mode kMode, int kTokens, int kStagesWanted = 0>
int splits_for(const Args& a, int sms) {
  using S = Shape<kTokens, kStagesWanted, kMode == Mode::Fp16>;
  constexpr int kBlockK = kMode == Mode::Fp16 ? 64 : 128;
  if (const char* env = std::getenv("NFP_MMA_SPLITS")) {
    const int s = std::atoi(env);
    if (s == 1 || s == 2 || s == 4 || s == 8) return s;
  }
  const int64_t ctas = int64_t((a.N + kRows - 1) / kRows) * ((a.M + kTokens - 1) / kTokens);
  const int blocks = (a.K + kBlockK - 1) / kBlockK;
  return heuristic::mma_stream_splits(ctas, blocks, S::kStages, sms);
}

// The most tokens one call takes: grid z holds the token tiles (at most 65535). The tuner and
// the heuristics use these kernels at a few tiles only; a forced configuration may go further.
constexpr int64_t max_tokens(int tokens) { return int64_t(65535) * tokens; }

// Enqueues one GEMM; returns the launch's error (the callers turn it into their family's Error).
// kStagesWanted / kMinBlocks: pipeline depth and CTAs per SM other than the defaults (probes).
template <Mode kMode, int kTokens, int kStagesWanted = 0, int kMinBlocks = 2,
          bool kBranchFree = false, bool kSpan64 = false>
cudaError_t launch(const Args& a, int sms, cudaStream_t stream) {
  using S = Shape<kTokens, kStagesWanted, kMode == Mode::Fp16>;
  auto* kernel =
      &stream_gemm_kernel<kMode, kTokens, kStagesWanted, kMinBlocks, kBranchFree, kSpan64>;
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  // The shared-memory opt-in is per device; set once per device (bit per ordinal < 64).
  static std::atomic<uint64_t> configured{0};
  const uint64_t bit = device < 64 ? uint64_t(1) << device : 0;
  if (!bit || !(configured.load() & bit)) {
    if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             S::kSmemBytes);
        e != cudaSuccess)
      return e;
    configured.fetch_or(bit);
  }
  // Grid z holds the token tiles; the callers refuse larger M with a message (max_tokens).
  if (a.M > max_tokens(kTokens)) return cudaErrorInvalidConfiguration;
  const int splits = splits_for<kMode, kTokens, kStagesWanted>(a, sms);
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned((a.N + kRows - 1) / kRows), unsigned(splits),
                     unsigned((a.M + kTokens - 1) / kTokens));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = S::kSmemBytes;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 1;
  attr[0].val.clusterDim.y = unsigned(splits);
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  // NFP_MMA_SPLITS=resident (an experiment, docs/KERNELS.md §2.4): halve the split while the
  // grid's clusters cannot all be resident at once, so no second wave of clusters starts (the
  // hypothesis behind the 2-stage kernels' wins on 4096-row layers).
  if (const char* env = std::getenv("NFP_MMA_SPLITS"); env && std::string_view(env) == "resident") {
    const int64_t clusters = int64_t(cfg.gridDim.x) * cfg.gridDim.z;
    for (int s = splits; s > 1; s /= 2) {
      attr[0].val.clusterDim.y = unsigned(s);
      cfg.gridDim.y = unsigned(s);
      int resident = 0;
      // A failed query (an experiment only) launches at the split it asked about.
      if (cudaOccupancyMaxActiveClusters(&resident, kernel, &cfg) != cudaSuccess) break;
      if (clusters <= resident) break;
      if (s == 2) attr[0].val.clusterDim.y = cfg.gridDim.y = 1;
    }
  }
  return cudaLaunchKernelEx(&cfg, kernel, a);
}

}  // namespace nestedfp::cuda::mma_stream
