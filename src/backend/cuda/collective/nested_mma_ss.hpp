#pragma once
// NestedFP16 mainloop with the merge in shared memory (docs/KERNELS.md §2.2, issue 12's "merge
// cost at large M"): the producer side is the RS mainloop's (nested_mma_rs.hpp: TMA loads of
// the upper plane, the lower plane and the activations into a multi-stage ring). Each consumer
// warpgroup merges its own 64 weight rows of a K tile into an FP16 tile in shared memory (the
// GMMA K-major layout, double-buffered) and multiplies it with shared-memory-sourced wgmma (SS).
// The merge of K tile i+1 runs while the wgmma of tile i execute asynchronously, so the merge
// and the tensor cores overlap instead of the RS chain load -> merge -> exchange -> wgmma per
// k-block (ncu at 4096x4096, M = 256: 0.45 eligible warps per scheduler, tensor pipe 33%).
//
// Order per consumer warpgroup and K tile i (buffer b = i % 2):
//   issue the wgmma of tile i on A buffer b and the stage of tile i; commit;
//   wait until at most that batch is in flight (tile i-1's wgmma retired): tile i-1's stage and
//   A buffer b^1 are free; release the stage;
//   sync the warpgroup (each warp's wait covers only its own share of tile i-1's wgmma), wait for
//   tile i+1's stage, merge it into A buffer b^1, fence.proxy.async (the generic-proxy stores
//   become visible to wgmma), and sync the warpgroup again (a named barrier per warpgroup).
// The consumer holds two stages at once (tile i's B, tile i+1 being merged), so TMA runs
// Stages - 2 tiles ahead: the configurations need >= 3 stages.
// A warpgroup's wgmma read only its own rows of A (tile rows = 64 x warpgroups), so no barrier
// spans both warpgroups. Cooperative schedule only: ping-pong warpgroups work on different tiles
// at once and would need an A buffer each.
#include "backend/cuda/collective/nested_mma_rs.hpp"
#include "cute/arch/util.hpp"
#include "cutlass/arch/barrier.h"

namespace nestedfp::cuda {

// 16 packed weights: u, l = 16 upper and 16 lower bytes (byte i of each is weight i) ->
// weights 0..7 and 8..15 as FP16 (docs/DESIGN.md §1.3 merge, 4 at a time).
CUTLASS_DEVICE void merge16(uint4 u, uint4 l, uint4& lo, uint4& hi) {
  const uint32_t uw[4] = {u.x, u.y, u.z, u.w}, lw[4] = {l.x, l.y, l.z, l.w};
  uint32_t out[8];
  CUTLASS_PRAGMA_UNROLL
  for (int w = 0; w < 4; ++w) {
    const uint32_t hb = merge4_high_bytes(uw[w], lw[w]);
    out[2 * w] = __byte_perm(lw[w], hb, 0x5140u);      // [l0 h0 l1 h1]: weights 0, 1
    out[2 * w + 1] = __byte_perm(lw[w], hb, 0x7362u);  // [l2 h2 l3 h3]: weights 2, 3
  }
  lo = make_uint4(out[0], out[1], out[2], out[3]);
  hi = make_uint4(out[4], out[5], out[6], out[7]);
}

// 16-byte shared-memory load and store through 32-bit shared addresses (a generic pointer into
// shared memory would make ptxas use 64-bit generic ld/st).
CUTLASS_DEVICE uint4 lds128(void const* p) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(cute::cast_smem_ptr_to_uint(p)));
  return v;
}
CUTLASS_DEVICE void sts128(void* p, uint4 v) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};" ::"r"(cute::cast_smem_ptr_to_uint(p)),
               "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}

template <class DispatchPolicy_, class TileShape_, class TiledMma_, class SmemLayoutAtomA_,
          class SmemLayoutAtomB_, class GmemTiledCopyA_, class GmemTiledCopyB_,
          class SmemLayoutAtomA16_>
struct NestedFp16MmaSs : NestedFp16MmaRs<DispatchPolicy_, TileShape_, TiledMma_, SmemLayoutAtomA_,
                                         SmemLayoutAtomB_, GmemTiledCopyA_, GmemTiledCopyB_> {
  using Base = NestedFp16MmaRs<DispatchPolicy_, TileShape_, TiledMma_, SmemLayoutAtomA_,
                               SmemLayoutAtomB_, GmemTiledCopyA_, GmemTiledCopyB_>;
  using Base::kBlkK;
  using Base::kBlkM;
  using typename Base::MainloopPipeline;
  using typename Base::Params;
  using typename Base::PipelineState;
  using typename Base::SmemLayoutA;
  using typename Base::SmemLayoutB;
  using typename Base::TiledMma;
  using typename Base::TileShape;

  static_assert(
      cute::is_base_of<cute::GMMA::DescriptorIterator, typename TiledMma::FrgTypeA>::value &&
          cute::is_base_of<cute::GMMA::DescriptorIterator, typename TiledMma::FrgTypeB>::value,
      "both operands from shared memory (SS wgmma)");
  static_assert(cute::is_same_v<typename DispatchPolicy_::Schedule,
                                cutlass::gemm::KernelTmaWarpSpecializedCooperative>,
                "the shared-memory merge needs the cooperative schedule (one A buffer per tile)");
  static constexpr int kMmaWarpGroups = cute::size(TiledMma{}) / cutlass::NumThreadsPerWarpGroup;
  static_assert(kBlkM == 64 * kMmaWarpGroups,
                "each consumer warpgroup merges the 64 rows its wgmma read (tile rows = 64 x "
                "warpgroups)");
  static_assert(kBlkK % 16 == 0, "the merge works on 16-byte units of the byte planes");

  // The merged FP16 weight tile, two buffers.
  using SmemLayoutA16 = decltype(cute::tile_to_shape(
      SmemLayoutAtomA16_{},
      cute::make_shape(cute::shape<0>(TileShape{}), cute::shape<2>(TileShape{}), cute::_2{}),
      cute::Step<cute::_1, cute::_2, cute::_3>{}));
  static constexpr int kA16Bytes = int(cute::cosize_v<SmemLayoutA16>) * 2;

  struct SharedStorage {
    struct TensorStorage {
      alignas(1024) cute::array_aligned<uint8_t, cute::cosize_v<SmemLayoutA>> smem_U;
      alignas(1024) cute::array_aligned<uint8_t, cute::cosize_v<SmemLayoutA>> smem_L;
      alignas(1024) cute::array_aligned<cutlass::half_t, cute::cosize_v<SmemLayoutB>> smem_B;
      alignas(1024) cute::array_aligned<cutlass::half_t, cute::cosize_v<SmemLayoutA16>> smem_A;
    } tensors;
    using PipelineStorage = typename MainloopPipeline::SharedStorage;
    PipelineStorage pipeline;
  };
  using TensorStorage = typename SharedStorage::TensorStorage;
  using PipelineStorage = typename SharedStorage::PipelineStorage;

  template <class FrgTensorC>
  CUTLASS_DEVICE void mma(MainloopPipeline pipeline, PipelineState smem_pipe_read,
                          FrgTensorC& accum, int k_tile_count, int thread_idx,
                          TensorStorage& shared_tensors, Params const& /*params*/) {
    using namespace cute;
    static_assert(is_rmem<FrgTensorC>::value, "C tensor must be rmem resident.");
    if (k_tile_count <= 0) return;

    Tensor sU = make_tensor(make_smem_ptr(shared_tensors.smem_U.data()), SmemLayoutA{});
    Tensor sL = make_tensor(make_smem_ptr(shared_tensors.smem_L.data()), SmemLayoutA{});
    Tensor sA = make_tensor(make_smem_ptr(shared_tensors.smem_A.data()), SmemLayoutA16{});
    Tensor sB = make_tensor(make_smem_ptr(shared_tensors.smem_B.data()), SmemLayoutB{});

    Layout warp_group_thread_layout =
        make_layout(Int<kMmaWarpGroups>{}, Int<cutlass::NumThreadsPerWarpGroup>{});
    const int warp_group_idx =
        __shfl_sync(0xFFFFFFFF, thread_idx / cutlass::NumThreadsPerWarpGroup, 0);
    TiledMma tiled_mma;
    auto wg_mma = tiled_mma.get_slice(warp_group_thread_layout(warp_group_idx));
    Tensor tCsA = wg_mma.partition_A(sA);        // (MMA,MMA_M,MMA_K,2)
    Tensor tCsB = wg_mma.partition_B(sB);        // (MMA,MMA_N,MMA_K,PIPE)
    Tensor tCrA = wg_mma.make_fragment_A(tCsA);  // descriptors
    Tensor tCrB = wg_mma.make_fragment_B(tCsB);
    CUTE_STATIC_ASSERT_V(size<1>(tCsA) == size<1>(accum));  // MMA_M
    CUTE_STATIC_ASSERT_V(size<1>(tCsB) == size<2>(accum));  // MMA_N
    constexpr int K_BLOCK_MAX = size<2>(tCrA);

    // This warpgroup's rows [64 w, 64 w + 64), in 16-byte units of each plane: a unit (row r,
    // k0..k0+15) stays contiguous and 16-byte aligned under the GMMA swizzles (they permute whole
    // 16-byte units), and so do the two 8-value FP16 units it becomes.
    constexpr int kUnitsPerRow = kBlkK / 16;
    constexpr int kUnits = 64 * kUnitsPerRow;
    static_assert(kUnits % cutlass::NumThreadsPerWarpGroup == 0, "whole units per thread");
    const int wg_thread = thread_idx % cutlass::NumThreadsPerWarpGroup;
    const int row0 = warp_group_idx * 64;
    auto merge_tile = [&](int stage, int buf) CUTLASS_LAMBDA_FUNC_INLINE {
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < kUnits / cutlass::NumThreadsPerWarpGroup; ++j) {
        const int unit = j * cutlass::NumThreadsPerWarpGroup + wg_thread;
        const int r = row0 + unit / kUnitsPerRow, k0 = (unit % kUnitsPerRow) * 16;
        const uint4 u = lds128(&sU(r, k0, stage));
        const uint4 l = lds128(&sL(r, k0, stage));
        uint4 lo, hi;
        merge16(u, l, lo, hi);
        sts128(&sA(r, k0, buf), lo);
        sts128(&sA(r, k0 + 8, buf), hi);
      }
      // The stores came from the generic proxy; wgmma reads through the async proxy.
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(cutlass::NumThreadsPerWarpGroup, warp_group_idx);
    };
    auto wait = [&](PipelineState st) CUTLASS_LAMBDA_FUNC_INLINE {
      auto token = pipeline.consumer_try_wait(st);
      pipeline.consumer_wait(st, token);
    };

    PipelineState smem_pipe_release = smem_pipe_read;
    tiled_mma.accumulate_ = GMMA::ScaleOut::Zero;  // the first MMA overwrites the accumulators
    warpgroup_fence_operand(accum);
    // A CTA runs mma() once per work unit: the previous unit's last wgmma read buffer 0 or 1, and
    // each warp's wait in mma_tail covered only its own share, so sync before the first merge.
    cutlass::arch::NamedBarrier::sync(cutlass::NumThreadsPerWarpGroup, warp_group_idx);
    wait(smem_pipe_read);
    merge_tile(smem_pipe_read.index(), 0);

    int buf = 0;
    CUTLASS_PRAGMA_NO_UNROLL
    for (int i = 0; i < k_tile_count; ++i) {
      const int read_stage = smem_pipe_read.index();
      ++smem_pipe_read;
      warpgroup_fence_operand(accum);
      warpgroup_arrive();
      CUTLASS_PRAGMA_UNROLL
      for (int k_block = 0; k_block < K_BLOCK_MAX; ++k_block) {
        cute::gemm(tiled_mma, tCrA(_, _, k_block, buf), tCrB(_, _, k_block, read_stage), accum);
        tiled_mma.accumulate_ = GMMA::ScaleOut::One;
      }
      warpgroup_commit_batch();
      // Tile i-1's wgmma (the batch before) have retired: its stage and A buffer buf^1 are free.
      warpgroup_wait<1>();
      warpgroup_fence_operand(accum);
      if (i > 0) {
        pipeline.consumer_release(smem_pipe_release);
        ++smem_pipe_release;
      }
      if (i + 1 < k_tile_count) {
        // wgmma.wait_group speaks for the executing warp's share of the batch only, and a warp
        // merges rows that other warps' shares of tile i-1 read: all four must have waited
        // before anyone overwrites buffer buf^1.
        cutlass::arch::NamedBarrier::sync(cutlass::NumThreadsPerWarpGroup, warp_group_idx);
        wait(smem_pipe_read);
        merge_tile(smem_pipe_read.index(), buf ^ 1);
      }
      buf ^= 1;
    }
    warpgroup_fence_operand(accum);
  }
  // mma_tail (the base's): retires the last batch and releases the last stage.
};

}  // namespace nestedfp::cuda
