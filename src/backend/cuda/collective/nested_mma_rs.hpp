#pragma once
// NestedFP16 mainloop for Hopper (sm_90a), docs/KERNELS.md §2.2.
//
// Operand A is the weight, held as two byte planes (upper, lower) of shape [M', K] (K-major);
// operand B is the FP16 activation [N', K] (K-major). A producer warp loads the upper, lower and
// activation tiles with TMA into a multi-stage shared-memory ring (PipelineTmaAsync). Consumer
// warpgroups load the byte fragments with 32-bit shared-memory loads, merge them to FP16 in
// registers (docs/DESIGN.md §1.3 merge, 4 bytes at a time), exchange half of each merged word with
// the neighbouring lane to obtain the wgmma A-operand layout, and issue register-sourced wgmma (RS)
// with FP32 accumulators that start from zero on the first MMA.
//
// The structure follows the contract of CUTLASS's sm90 warp-specialized kernels
// (GemmUniversal with KernelTmaWarpSpecializedCooperative / Pingpong): load_init, load,
// load_tail, mma, mma_tail. The register pipelining mirrors what CUTLASS's own RS mainloops
// do so that ptxas can keep wgmma asynchronous: each k-block of a K tile has its own A
// registers, and a k-block's registers are rewritten only after warpgroup_wait has retired
// the wgmma that read them.
#include <cstdint>

#include "cute/algorithm/functional.hpp"
#include "cute/algorithm/gemm.hpp"
#include "cute/arch/cluster_sm90.hpp"
#include "cute/arch/copy_sm90.hpp"
#include "cute/atom/copy_traits_sm90_tma.hpp"
#include "cute/atom/mma_atom.hpp"
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/gemm.h"
#include "cutlass/pipeline/pipeline.hpp"

namespace nestedfp::cuda {

// Dispatch policy: what GemmUniversal reads (Stages, ClusterShape, ArchTag, Schedule).
template <int Stages_, class ClusterShape_, class KernelSchedule_>
struct MainloopNestedFp16Rs {
  static constexpr int Stages = Stages_;
  using ClusterShape = ClusterShape_;
  using ArchTag = cutlass::arch::Sm90;
  using Schedule = KernelSchedule_;
};

// docs/DESIGN.md §1.3 merge on 4 packed weights: u = 4 upper bytes, l = 4 lower bytes (byte i of
// each belongs to weight i). Returns the 4 high bytes of the FP16 values
// (fp16_i = hb_i << 8 | l_i):
//   hb = sign(u) | (((u - m7) >> 1) & 0x3F), m7 = l >> 7.
// u - m7 never borrows across bytes: m7 = 1 implies |u| >= 1 (docs/DESIGN.md §1.3).
CUTLASS_DEVICE uint32_t merge4_high_bytes(uint32_t u, uint32_t l) {
  const uint32_t m7 = (l >> 7) & 0x01010101u;
  const uint32_t v = u - m7;
  return (v & 0x80808080u) | ((v >> 1) & 0x3F3F3F3Fu);
}

template <class DispatchPolicy_, class TileShape_, class TiledMma_, class SmemLayoutAtomA_,
          class SmemLayoutAtomB_, class GmemTiledCopyA_, class GmemTiledCopyB_>
struct NestedFp16MmaRs {
  using DispatchPolicy = DispatchPolicy_;
  using TileShape = TileShape_;
  using TiledMma = TiledMma_;
  using ClusterShape = typename DispatchPolicy::ClusterShape;
  using ArchTag = typename DispatchPolicy::ArchTag;
  using KernelSchedule = typename DispatchPolicy::Schedule;

  // A: the byte planes (the same type and stride for upper and lower); B: FP16 activations.
  using ElementA = uint8_t;
  using ElementB = cutlass::half_t;
  using StrideA = cute::Stride<int64_t, cute::_1, int64_t>;  // [M', K] K-major
  using StrideB = cute::Stride<int64_t, cute::_1, int64_t>;  // [N', K] K-major
  using ElementAccumulator = typename TiledMma::ValTypeC;
  using GmemTiledCopyA = GmemTiledCopyA_;
  using GmemTiledCopyB = GmemTiledCopyB_;
  using SmemLayoutAtomA = SmemLayoutAtomA_;
  using SmemLayoutAtomB = SmemLayoutAtomB_;

  using MainloopPipeline = cutlass::PipelineTmaAsync<DispatchPolicy::Stages>;
  using PipelineState = cutlass::PipelineState<DispatchPolicy::Stages>;
  using PipelineParams = typename MainloopPipeline::Params;
  static constexpr int NumProducerThreadEvents = 1;

  static_assert(cute::is_same_v<typename TiledMma::ValTypeA, cutlass::half_t> &&
                    cute::is_same_v<typename TiledMma::ValTypeB, cutlass::half_t>,
                "NestedFP16 merges to FP16 and multiplies FP16 x FP16");
  using SmemLayoutA = decltype(cute::tile_to_shape(
      SmemLayoutAtomA{},
      cute::make_shape(cute::shape<0>(TileShape{}), cute::shape<2>(TileShape{}),
                       cute::Int<DispatchPolicy::Stages>{}),
      cute::Step<cute::_1, cute::_2, cute::_3>{}));
  using SmemLayoutB = decltype(cute::tile_to_shape(
      SmemLayoutAtomB{},
      cute::make_shape(cute::shape<1>(TileShape{}), cute::shape<2>(TileShape{}),
                       cute::Int<DispatchPolicy::Stages>{}),
      cute::Step<cute::_1, cute::_2, cute::_3>{}));

  static constexpr int kBlkM = cute::size<0>(TileShape{});
  static constexpr int kBlkN = cute::size<1>(TileShape{});
  static constexpr int kBlkK = cute::size<2>(TileShape{});
  // Two byte planes of the weight tile plus the FP16 activation tile per stage.
  static constexpr uint32_t TmaTransactionBytesMK = uint32_t(2 * kBlkM * kBlkK);
  static constexpr uint32_t TmaTransactionBytesNK = uint32_t(2 * kBlkN * kBlkK);
  static constexpr uint32_t TmaTransactionBytes = TmaTransactionBytesMK + TmaTransactionBytesNK;
  static constexpr int StageBytes = int(TmaTransactionBytes);

  struct SharedStorage {
    struct TensorStorage {
      // 1024-byte alignment: the 128B swizzle pattern repeats every 1024 bytes.
      alignas(1024) cute::array_aligned<uint8_t, cute::cosize_v<SmemLayoutA>> smem_U;
      alignas(1024) cute::array_aligned<uint8_t, cute::cosize_v<SmemLayoutA>> smem_L;
      alignas(1024) cute::array_aligned<cutlass::half_t, cute::cosize_v<SmemLayoutB>> smem_B;
    } tensors;
    using PipelineStorage = typename MainloopPipeline::SharedStorage;
    PipelineStorage pipeline;
  };
  using TensorStorage = typename SharedStorage::TensorStorage;
  using PipelineStorage = typename SharedStorage::PipelineStorage;

  struct Arguments {
    uint8_t const* ptr_U = nullptr;
    uint8_t const* ptr_L = nullptr;
    StrideA dA{};
    cutlass::half_t const* ptr_B = nullptr;
    StrideB dB{};
  };

  struct Params {
    using TMA_A = decltype(make_tma_copy_A_sm90(
        GmemTiledCopyA{},
        cute::make_tensor(static_cast<uint8_t const*>(nullptr),
                          cute::repeat_like(StrideA{}, int32_t(0)), StrideA{}),
        SmemLayoutA{}(cute::_, cute::_, cute::Int<0>{}), TileShape{}, ClusterShape{}));
    using TMA_B = decltype(make_tma_copy_B_sm90(
        GmemTiledCopyB{},
        cute::make_tensor(static_cast<uint16_t const*>(nullptr),
                          cute::repeat_like(StrideB{}, int32_t(0)), StrideB{}),
        SmemLayoutB{}(cute::_, cute::_, cute::Int<0>{}), TileShape{}, ClusterShape{}));
    TMA_A tma_load_u;
    TMA_A tma_load_l;
    TMA_B tma_load_b;
    uint32_t tma_transaction_bytes = TmaTransactionBytes;
  };

  template <class ProblemShape>
  static constexpr Params to_underlying_arguments(ProblemShape const& problem_shape,
                                                  Arguments const& args, void* /*workspace*/) {
    auto [M, N, K, L] = cute::append<4>(problem_shape, 1);
    auto tU = cute::make_tensor(args.ptr_U, cute::make_layout(cute::make_shape(M, K, L), args.dA));
    auto tL = cute::make_tensor(args.ptr_L, cute::make_layout(cute::make_shape(M, K, L), args.dA));
    auto tB = cute::make_tensor(reinterpret_cast<uint16_t const*>(args.ptr_B),
                                cute::make_layout(cute::make_shape(N, K, L), args.dB));
    auto sA0 = SmemLayoutA{}(cute::_, cute::_, cute::Int<0>{});
    auto sB0 = SmemLayoutB{}(cute::_, cute::_, cute::Int<0>{});
    return {make_tma_copy_A_sm90(GmemTiledCopyA{}, tU, sA0, TileShape{}, ClusterShape{}),
            make_tma_copy_A_sm90(GmemTiledCopyA{}, tL, sA0, TileShape{}, ClusterShape{}),
            make_tma_copy_B_sm90(GmemTiledCopyB{}, tB, sB0, TileShape{}, ClusterShape{}),
            TmaTransactionBytes};
  }

  // TMA needs 16-byte aligned bases and row strides: K % 16 == 0 for the byte planes (which
  // also covers K % 8 == 0 for the FP16 activations).
  template <class ProblemShape>
  static bool can_implement(ProblemShape const& problem_shape, Arguments const& args) {
    auto [M, N, K, L] = cute::append<4>(problem_shape, 1);
    auto aligned = [](void const* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; };
    return K % 16 == 0 && K > 0 && aligned(args.ptr_U) && aligned(args.ptr_L) &&
           aligned(args.ptr_B) && cute::get<0>(args.dA) % 16 == 0 && cute::get<0>(args.dB) % 8 == 0;
  }

  CUTLASS_DEVICE static void prefetch_tma_descriptors(Params const& params) {
    cute::prefetch_tma_descriptor(params.tma_load_u.get_tma_descriptor());
    cute::prefetch_tma_descriptor(params.tma_load_l.get_tma_descriptor());
    cute::prefetch_tma_descriptor(params.tma_load_b.get_tma_descriptor());
  }

  // Returns (gA_mkl, gB_nkl) as the kernel expects; the upper and lower planes share the
  // coordinate tensor (their TMA descriptors differ only in the base address).
  template <class ProblemShape_MNKL>
  CUTLASS_DEVICE auto load_init(ProblemShape_MNKL const& problem_shape_MNKL,
                                Params const& params) const {
    using X = cute::Underscore;
    auto [M, N, K, L] = problem_shape_MNKL;
    auto mA = params.tma_load_u.get_tma_tensor(cute::make_shape(M, K, L));
    auto mB = params.tma_load_b.get_tma_tensor(cute::make_shape(N, K, L));
    auto gA = cute::local_tile(mA, TileShape{}, cute::make_coord(cute::_, cute::_, cute::_),
                               cute::Step<cute::_1, X, cute::_1>{});
    auto gB = cute::local_tile(mB, TileShape{}, cute::make_coord(cute::_, cute::_, cute::_),
                               cute::Step<X, cute::_1, cute::_1>{});
    return cute::make_tuple(gA, gB);
  }

  // Producer: one elected thread issues the three TMA loads of each stage. `Storage`: this
  // collective's TensorStorage or a derived collective's (nested_mma_ss.hpp adds a buffer).
  template <class TensorA, class TensorB, class KTileIterator, class BlockCoord, class Storage>
  CUTLASS_DEVICE void load(Params const& params, MainloopPipeline pipeline,
                           PipelineState smem_pipe_write,
                           cute::tuple<TensorA, TensorB> const& load_inputs,
                           BlockCoord const& blk_coord, KTileIterator k_tile_iter, int k_tile_count,
                           int /*thread_idx*/, uint32_t block_rank_in_cluster,
                           Storage& shared_tensors) {
    using namespace cute;
    if (!cute::elect_one_sync()) return;
    Tensor sU = make_tensor(make_smem_ptr(shared_tensors.smem_U.data()), SmemLayoutA{});
    Tensor sL = make_tensor(make_smem_ptr(shared_tensors.smem_L.data()), SmemLayoutA{});
    Tensor sB = make_tensor(make_smem_ptr(shared_tensors.smem_B.data()), SmemLayoutB{});

    constexpr uint32_t cluster_shape_x = get<0>(ClusterShape{});
    uint2 cluster_local_block_id = {block_rank_in_cluster % cluster_shape_x,
                                    block_rank_in_cluster / cluster_shape_x};
    auto block_tma_u = params.tma_load_u.get_slice(cluster_local_block_id.y);
    auto block_tma_l = params.tma_load_l.get_slice(cluster_local_block_id.y);
    auto block_tma_b = params.tma_load_b.get_slice(cluster_local_block_id.x);

    auto [m_coord, n_coord, k_coord, l_coord] = blk_coord;
    Tensor gA = get<0>(load_inputs)(_, _, m_coord, _, l_coord);  // (BLK_M,BLK_K,k)
    Tensor gB = get<1>(load_inputs)(_, _, n_coord, _, l_coord);  // (BLK_N,BLK_K,k)
    Tensor tUgU = block_tma_u.partition_S(gA);
    Tensor tUsU = block_tma_u.partition_D(sU);
    Tensor tLgL = block_tma_l.partition_S(gA);
    Tensor tLsL = block_tma_l.partition_D(sL);
    Tensor tBgB = block_tma_b.partition_S(gB);
    Tensor tBsB = block_tma_b.partition_D(sB);

    uint16_t mcast_mask_a = 0, mcast_mask_b = 0;
    if constexpr (cute::is_same_v<GmemTiledCopyA, SM90_TMA_LOAD_MULTICAST>) {
      auto block_layout = Layout<ClusterShape>{};
      for (int n = 0; n < size<1>(block_layout); ++n)
        mcast_mask_a |= uint16_t(1) << block_layout(cluster_local_block_id.x, n, Int<0>{});
    }
    if constexpr (cute::is_same_v<GmemTiledCopyB, SM90_TMA_LOAD_MULTICAST>) {
      auto block_layout = Layout<ClusterShape>{};
      for (int m = 0; m < size<0>(block_layout); ++m)
        mcast_mask_b |= uint16_t(1) << block_layout(m, cluster_local_block_id.y, Int<0>{});
    }

    CUTLASS_PRAGMA_NO_UNROLL
    for (; k_tile_count > 0; --k_tile_count) {
      pipeline.producer_acquire(smem_pipe_write);
      auto* tma_barrier = pipeline.producer_get_barrier(smem_pipe_write);
      const int s = smem_pipe_write.index();
      copy(params.tma_load_u.with(*tma_barrier, mcast_mask_a), tUgU(_, _, _, *k_tile_iter),
           tUsU(_, _, _, s));
      copy(params.tma_load_l.with(*tma_barrier, mcast_mask_a), tLgL(_, _, _, *k_tile_iter),
           tLsL(_, _, _, s));
      copy(params.tma_load_b.with(*tma_barrier, mcast_mask_b), tBgB(_, _, _, *k_tile_iter),
           tBsB(_, _, _, s));
      ++k_tile_iter;
      ++smem_pipe_write;
    }
  }

  CUTLASS_DEVICE void load_tail(MainloopPipeline pipeline, PipelineState smem_pipe_write) {
    if (cute::elect_one_sync()) pipeline.producer_tail(smem_pipe_write);
  }

  // Consumer: smem bytes -> registers (A-operand layout) -> merge -> RS wgmma.
  template <class FrgTensorC>
  CUTLASS_DEVICE void mma(MainloopPipeline pipeline, PipelineState smem_pipe_read,
                          FrgTensorC& accum, int k_tile_count, int thread_idx,
                          TensorStorage& shared_tensors, Params const& /*params*/) {
    using namespace cute;
    static_assert(is_rmem<FrgTensorC>::value, "C tensor must be rmem resident.");
    static_assert(
        !cute::is_base_of<cute::GMMA::DescriptorIterator, typename TiledMma::FrgTypeA>::value &&
            cute::is_base_of<cute::GMMA::DescriptorIterator, typename TiledMma::FrgTypeB>::value,
        "A must come from registers (RS wgmma), B from shared memory");
    if (k_tile_count <= 0) return;

    Tensor sU = as_position_independent_swizzle_tensor(make_tensor(
        make_smem_ptr(shared_tensors.smem_U.data()), SmemLayoutA{}));  // (BLK_M,BLK_K,PIPE)
    Tensor sL = as_position_independent_swizzle_tensor(
        make_tensor(make_smem_ptr(shared_tensors.smem_L.data()), SmemLayoutA{}));
    Tensor sB = make_tensor(make_smem_ptr(shared_tensors.smem_B.data()),
                            SmemLayoutB{});  // (BLK_N,BLK_K,PIPE)

    constexpr int MmaWarpGroups = size(TiledMma{}) / cutlass::NumThreadsPerWarpGroup;
    Layout warp_group_thread_layout =
        make_layout(Int<MmaWarpGroups>{}, Int<cutlass::NumThreadsPerWarpGroup>{});
    const int warp_group_idx =
        __shfl_sync(0xFFFFFFFF, thread_idx / cutlass::NumThreadsPerWarpGroup, 0);

    TiledMma tiled_mma;
    auto thr_mma = tiled_mma.get_thread_slice(thread_idx);
    Tensor tCsU = thr_mma.partition_A(sU);  // (MMA,MMA_M,MMA_K,PIPE) uint8
    Tensor tCsL = thr_mma.partition_A(sL);
    Tensor tCrA = thr_mma.partition_fragment_A(sU(_, _, Int<0>{}));  // (MMA,MMA_M,MMA_K) half

    auto wg_mma = tiled_mma.get_slice(warp_group_thread_layout(warp_group_idx));
    Tensor tCsB = wg_mma.partition_B(sB);        // (MMA,MMA_N,MMA_K,PIPE)
    Tensor tCrB = wg_mma.make_fragment_B(tCsB);  // descriptors

    CUTE_STATIC_ASSERT_V(size<1>(tCrA) == size<1>(accum));  // MMA_M
    CUTE_STATIC_ASSERT_V(size<1>(tCsB) == size<2>(accum));  // MMA_N
    CUTE_STATIC_ASSERT_V(size<2>(tCsU) == size<2>(tCsB));   // MMA_K
    static_assert(size<0>(tCrA) == 8, "fp16 wgmma A fragment: 8 values per thread per m64k16");

    constexpr int K_BLOCK_MAX = size<2>(tCrA);
    constexpr int MMA_M = size<1>(tCrA);
    constexpr int K_WAIT_MAX = cute::min(K_BLOCK_MAX - 1, 7);
    static_assert(K_BLOCK_MAX >= 2, "the K tile must hold at least two k16 blocks");

    // Byte fragments with 32-bit loads and one quad-pair shuffle (halves the shared-memory
    // wavefronts of 2-byte loads). In an m64k16 A fragment, lane q = t%4 of a row needs the
    // weight pairs q and q+4 (k = 2q,2q+1 and 2q+8,2q+9) of rows r and r+8. Pair p sits in 32-bit
    // word p/2 of the row's 16 bytes, so lanes q and q^1 need the two halves of the same two
    // words. Each lane loads one word (q even: word q/2, holding its pair q; q odd: word
    // q/2+2, holding its pair q+4), merges all four weights, keeps its pair and hands the other
    // to its partner: even lanes send pair q+1, odd lanes pair q+3, which is exactly what the
    // partner lacks. Offset of that word from the fragment's first byte (r, 2q): 6 for odd q.
    const bool odd = (thread_idx & 1) != 0;
    const int word_off = odd ? 6 : 0;
    const uint32_t sel_keep = odd ? 0x7362u : 0x5140u;  // odd keeps weights 2,3; even 0,1
    const uint32_t sel_send = odd ? 0x5140u : 0x7362u;
    const uint32_t sel_lo = odd ? 0x7654u : 0x3210u;  // A word k-lo: even own, odd received
    const uint32_t sel_hi = odd ? 0x3210u : 0x7654u;  // A word k-hi: even received, odd own
    uint32_t ru[K_BLOCK_MAX][MMA_M][2];
    uint32_t rl[K_BLOCK_MAX][MMA_M][2];

    // A row's 16 bytes of one k16 block stay contiguous and 16-byte aligned in shared memory: the
    // GMMA K-major swizzles permute whole 16-byte units.
    auto word_at = [&](auto const& ref) {
      return *reinterpret_cast<uint32_t const*>(reinterpret_cast<uint8_t const*>(&ref) + word_off);
    };
    auto load_kblock = [&](int k_block, int stage) {
      CUTLASS_PRAGMA_UNROLL
      for (int m = 0; m < MMA_M; ++m) {
        CUTLASS_PRAGMA_UNROLL
        for (int h = 0; h < 2; ++h) {  // fragment value 2*h is byte (r + 8h, 2q)
          ru[k_block][m][h] = word_at(tCsU(2 * h, m, k_block, stage));
          rl[k_block][m][h] = word_at(tCsL(2 * h, m, k_block, stage));
        }
      }
    };
    // A fragment words per (m, k): [r k-lo, r+8 k-lo, r k-hi, r+8 k-hi] (CuTe's m64k16 order).
    auto merge_kblock = [&](int k_block) {
      uint32_t* a = reinterpret_cast<uint32_t*>(raw_pointer_cast(tCrA.data()));
      CUTLASS_PRAGMA_UNROLL
      for (int m = 0; m < MMA_M; ++m) {
        CUTLASS_PRAGMA_UNROLL
        for (int h = 0; h < 2; ++h) {
          const uint32_t u = ru[k_block][m][h], l = rl[k_block][m][h];
          const uint32_t hb = merge4_high_bytes(u, l);
          // [h1 l1 h0 l0] is weights 0,1 as FP16; [h3 l3 h2 l2] weights 2,3.
          const uint32_t keep = __byte_perm(l, hb, sel_keep);
          const uint32_t send = __byte_perm(l, hb, sel_send);
          const uint32_t recv = __shfl_xor_sync(0xFFFFFFFFu, send, 1);
          const int w = (k_block * MMA_M + m) * 4 + h;
          a[w] = __byte_perm(keep, recv, sel_lo);
          a[w + 2] = __byte_perm(keep, recv, sel_hi);
        }
      }
    };

    PipelineState smem_pipe_release = smem_pipe_read;
    tiled_mma.accumulate_ = GMMA::ScaleOut::Zero;  // the first MMA overwrites the accumulators
    warpgroup_fence_operand(accum);

    {  // prologue: the first two k-blocks of the first K tile in registers, k-block 0 merged
      auto token = pipeline.consumer_try_wait(smem_pipe_read);
      pipeline.consumer_wait(smem_pipe_read, token);
      const int s = smem_pipe_read.index();
      load_kblock(0, s);
      load_kblock(1, s);
      merge_kblock(0);
    }

    bool first_tile = true;
    CUTLASS_PRAGMA_NO_UNROLL
    for (; k_tile_count > 0; --k_tile_count) {
      const int read_stage = smem_pipe_read.index();
      ++smem_pipe_read;
      warpgroup_fence_operand(accum);
      CUTLASS_PRAGMA_UNROLL
      for (int k_block = 0; k_block < K_BLOCK_MAX; ++k_block) {
        warpgroup_arrive();
        cute::gemm(tiled_mma, tCrA(_, _, k_block), tCrB(_, _, k_block, read_stage), accum);
        tiled_mma.accumulate_ = GMMA::ScaleOut::One;
        warpgroup_commit_batch();
        // At most K_BLOCK_MAX-1 wgmma in flight: the one that read the registers about to be
        // rewritten (k_block+1 of the previous tile) has retired.
        warpgroup_wait<K_WAIT_MAX>();
        if (k_block == K_BLOCK_MAX - 1) {
          // Every wgmma of the previous tile has retired: hand its stage back to the producer.
          if (!first_tile) {
            pipeline.consumer_release(smem_pipe_release);
            ++smem_pipe_release;
          }
          first_tile = false;
          if (k_tile_count > 1) {
            auto token = pipeline.consumer_try_wait(smem_pipe_read);
            pipeline.consumer_wait(smem_pipe_read, token);
            const int s = smem_pipe_read.index();
            load_kblock(0, s);
            load_kblock(1, s);
            merge_kblock(0);
          }
        } else {
          if (k_block + 2 < K_BLOCK_MAX) load_kblock(k_block + 2, read_stage);
          merge_kblock(k_block + 1);
        }
      }
      warpgroup_fence_operand(accum);
    }
    warpgroup_fence_operand(accum);
  }

  // Retire the last wgmma and release the last stage (mma released all but one).
  CUTLASS_DEVICE void mma_tail(MainloopPipeline pipeline, PipelineState smem_pipe_release,
                               int k_tile_count) {
    cute::warpgroup_wait<0>();
    if (k_tile_count > 0) {
      smem_pipe_release.advance(k_tile_count - 1);
      pipeline.consumer_release(smem_pipe_release);
    }
  }
};

}  // namespace nestedfp::cuda
