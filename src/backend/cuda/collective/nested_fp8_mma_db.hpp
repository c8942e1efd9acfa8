#pragma once
// NestedFP8 mainloop with double-buffered FP32 promotion (docs/KERNELS.md §2.3, issue 12's "FP32
// promotion at large M"). CUTLASS's promoted FP8 mainloop accumulates a run of K tiles in one
// temporary accumulator, then waits for every wgmma in flight (`wgmma.wait_group 0`) and adds the
// temporary into the FP32 sums: each promotion drains the warpgroup's tensor pipe (promoting
// every K tile, its default, is 14% slower than every four, `p16`, on the H200).
// Here the runs of K tiles go into two temporaries in turn: while the wgmma of one run go into
// one, the other (its last K tile retired by `wgmma.wait_group 1`) is added into the sums, so the
// tensor pipe never drains inside the K loop. Costs one more accumulator tile of registers
// (3 x 64 floats per thread for 128x128 tiles on two consumer warpgroups: fits the cooperative
// kernel's 232). Bit-identical to CUTLASS's mainloop at the same interval.
// Only the consumer side changes: the producer, shared storage and pipeline are the base's.
// Used by the gemm_configs.def rows whose schedule is CoopDb or PingDb (fp8gemm::Kernel), and by
// bench/nfp8/epilogue_probe.cu (Promotion::DoubleBuffered). Measured on the H200: within 1% of
// CUTLASS's mainloop on 128x128 tiles at p16, but 0.84-0.94 of its time in geometric mean on the
// cooperative tiles of 16-64 tokens and 0.74-0.90 on the 64-row ping-pong tiles (pp64x64p8 up to
// 1.16x slower at M >= 1024 on wide layers; bench/results/2026-12-02-h200-nfp8-db-probe.md), and
// promoting after every K tile costs the same as CUTLASS's every four (`p16`, where CUTLASS's own
// every-tile promotion is 14% slower; -nfp8-mainloop-probe.md).
// The ping-pong kernel calls mma() for one warpgroup (thread_idx < 128): the same code with one
// warpgroup's slice; mma() retires every wgmma before it returns, so the next warpgroup's turn
// (the kernel's math order barrier) starts after this one's last K tile has finished.
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/gemm/collective/collective_builder.hpp"

namespace nestedfp::cuda {

// A temporary holds as many K tiles as the promotion interval covers (mma_promotion_interval
// k-blocks, a run-time argument: 4, 8, 16 = one, two, four K tiles of 128), so the sums are the
// same, in the same order, as CUTLASS's promoted mainloop at that interval (bit-identical
// outputs). Every K tile is its own commit group, so stages are released one K tile behind as in
// CUTLASS's mainloop; only the promotion waits for a whole temporary.
template <class Base>
struct NestedFp8MmaDoubleBuffered : Base {
  using typename Base::MainloopPipeline;
  using typename Base::Params;
  using typename Base::PipelineState;
  using typename Base::SmemLayoutA;
  using typename Base::SmemLayoutB;
  using typename Base::TensorStorage;
  using typename Base::TiledMma;

  template <class FrgTensorC>
  CUTLASS_DEVICE void mma(MainloopPipeline pipeline, PipelineState smem_pipe_read,
                          FrgTensorC& accum, int k_tile_count, int thread_idx,
                          TensorStorage& shared_tensors, Params const& params) {
    using namespace cute;
    static_assert(is_rmem<FrgTensorC>::value, "the accumulators must be in registers");
    clear(accum);
    if (k_tile_count <= 0) return;
    // The interval in K tiles, a compile-time constant inside run(): 4, 8 and 16 k-blocks (every
    // NestedFP8 variant's) are exact; other intervals round down to 1, 2 or 4 K tiles (valid sums,
    // but not CUTLASS's order then). ptxas serializes every
    // wgmma (C7514) unless each addition provably follows the wait that retires its registers,
    // which it cannot follow through loops of run-time length.
    constexpr int kBlocks = size<2>(typename Base::TileShape{}) / 32;  // wgmma k-blocks per K tile
    const int per = int(params.mma_promotion_interval) / (kBlocks > 0 ? kBlocks : 1);
    if (per >= 4)
      run<4>(pipeline, smem_pipe_read, accum, k_tile_count, thread_idx, shared_tensors);
    else if (per >= 2)
      run<2>(pipeline, smem_pipe_read, accum, k_tile_count, thread_idx, shared_tensors);
    else
      run<1>(pipeline, smem_pipe_read, accum, k_tile_count, thread_idx, shared_tensors);
  }

  template <int P, class FrgTensorC>
  CUTLASS_DEVICE void run(MainloopPipeline& pipeline, PipelineState smem_pipe_read,
                          FrgTensorC& accum, int k_tile_count, int thread_idx,
                          TensorStorage& shared_tensors) {
    using namespace cute;
    Tensor sA = make_tensor(make_smem_ptr(shared_tensors.smem_A.data()), SmemLayoutA{});
    Tensor sB = make_tensor(make_smem_ptr(shared_tensors.smem_B.data()), SmemLayoutB{});
    constexpr int kWarpGroups = size(TiledMma{}) / cutlass::NumThreadsPerWarpGroup;
    Layout wg_layout =
        make_layout(Int<kWarpGroups>{}, Int<cutlass::NumThreadsPerWarpGroup>{});
    const int wg = __shfl_sync(0xFFFFFFFF, thread_idx / cutlass::NumThreadsPerWarpGroup, 0);
    TiledMma tiled_mma;
    auto thr = tiled_mma.get_slice(wg_layout(wg));
    Tensor tCrA = thr.make_fragment_A(thr.partition_A(sA));  // (MMA,MMA_M,MMA_K,PIPE)
    Tensor tCrB = thr.make_fragment_B(thr.partition_B(sB));  // (MMA,MMA_N,MMA_K,PIPE)
    constexpr int kKBlocks = size<2>(tCrA);
    Tensor t0 = make_fragment_like(accum);
    Tensor t1 = make_fragment_like(accum);

    PipelineState release = smem_pipe_read;
    int issued = 0;
    // One K tile into t (the first of a temporary overwrites it); then wait until only it is in
    // flight (a no-op after the very first) and give the previous K tile's stage back.
    auto issue = [&](auto& t, bool first_of_temp) CUTLASS_LAMBDA_FUNC_INLINE {
      auto token = pipeline.consumer_try_wait(smem_pipe_read);
      pipeline.consumer_wait(smem_pipe_read, token);
      const int stage = smem_pipe_read.index();
      warpgroup_fence_operand(t);
      warpgroup_arrive();
      tiled_mma.accumulate_ = first_of_temp ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
      CUTLASS_PRAGMA_UNROLL
      for (int kb = 0; kb < kKBlocks; ++kb) {
        cute::gemm(tiled_mma, tCrA(_, _, kb, stage), tCrB(_, _, kb, stage), t);
        tiled_mma.accumulate_ = GMMA::ScaleOut::One;
      }
      warpgroup_commit_batch();
      ++smem_pipe_read;
      warpgroup_wait<1>();
      warpgroup_fence_operand(t);
      if (issued++ > 0) {
        pipeline.consumer_release(release);
        ++release;
      }
    };
    auto add = [&](auto& t) CUTLASS_LAMBDA_FUNC_INLINE {
      warpgroup_fence_operand(t);
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size(accum); ++i) accum(i) += t(i);
      warpgroup_fence_operand(accum);
    };
    // Everything retired: give the last stage back and add the temporary still pending.
    auto finish = [&](auto& t) CUTLASS_LAMBDA_FUNC_INLINE {
      warpgroup_wait<0>();
      pipeline.consumer_release(release);
      ++release;
      issued = 0;  // every stage is back: the next issue (a tail) has no previous one to release
      add(t);
    };
    // A run of fewer than P K tiles into t0 (t0 must not be pending), then finish.
    auto tail = [&](int n) CUTLASS_LAMBDA_FUNC_INLINE {
      CUTLASS_PRAGMA_NO_UNROLL
      for (int j = 0; j < n; ++j) issue(t0, j == 0);
      finish(t0);
    };

    warpgroup_fence_operand(accum);
    int left = k_tile_count;
    if (left < P) {
      tail(left);
      return;
    }
    CUTLASS_PRAGMA_UNROLL
    for (int j = 0; j < P; ++j) issue(t0, j == 0);
    left -= P;
    // Steady state: t0 pending at the top of each iteration.
    CUTLASS_PRAGMA_NO_UNROLL
    while (left >= 2 * P) {
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < P; ++j) {
        issue(t1, j == 0);
        if (j == 0) add(t0);  // t0's last K tile retired by the wait in issue()
      }
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < P; ++j) {
        issue(t0, j == 0);
        if (j == 0) add(t1);
      }
      left -= 2 * P;
    }
    if (left >= P) {
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < P; ++j) {
        issue(t1, j == 0);
        if (j == 0) add(t0);
      }
      left -= P;
      finish(t1);  // t0 is free again
    } else {
      finish(t0);
    }
    if (left > 0) tail(left);
  }

  // mma() has retired every wgmma and released every stage.
  CUTLASS_DEVICE void mma_tail(MainloopPipeline, PipelineState, int) {}
};

}  // namespace nestedfp::cuda
