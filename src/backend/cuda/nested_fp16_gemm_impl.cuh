#pragma once
// NestedFP16 GEMM configurations: the project's mainloop (collective/nested_mma_rs.hpp) plugged
// into CUTLASS's sm90 warp-specialized GemmUniversal kernel and a standard TMA epilogue whose
// fusion tree multiplies accumulator row r by 2^-k_r (k_r loaded as a per-row column broadcast).
// The configurations (nested_fp16_gemm_configs.cuh) are instantiated one per translation unit
// (nested_fp16_gemm_v_<config>.cu) so that builds run in parallel; nested_fp16_gemm.cu dispatches.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "backend/cuda/collective/nested_mma_ss.hpp"
#include "backend/cuda/gemm_schedules.cuh"
#include "backend/cuda/nested_fp16_gemm_kernels.hpp"
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/gemm/kernel/tile_scheduler.hpp"

namespace nestedfp::cuda::nfp16 {

inline std::string shape_str(int M, int N, int K) {
  return "M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K);
}
inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) raise(std::string(what) + " failed: " + cudaGetErrorString(e));
}
void* workspace(int device, size_t bytes, cudaStream_t stream);

// Tile-scheduler choices (nested_fp16_gemm_host.cpp): rasterization, swizzle, and for the stream-K
// scheduler the decomposition (0 heuristic, 1 data-parallel, 2 split-K, 3 stream-K) and splits.
struct SchedChoice {
  int raster = 0;  // 0 heuristic, 1 along M' (weight rows), 2 along N' (tokens)
  int swizzle = 1;
  int decomposition = 0;
  int splits = 1;
};
SchedChoice sched_choice(int tile_m, int tile_n, int tile_k, int M, int N, int K, int sms);

using namespace cute;

// Epilogue compute node: acc * 2^-k, with k an integer carried as float. The power of two is
// built from its exponent bits, so the product is exact (|k| <= 126 always holds: the format
// keeps w * 2^k within FP16's range, so |k| <= 40).
template <class T>
struct MulPow2Neg;
template <int N>
struct MulPow2Neg<cutlass::Array<float, N>> {
  CUTLASS_HOST_DEVICE cutlass::Array<float, N> operator()(cutlass::Array<float, N> const& acc,
                                                          cutlass::Array<float, N> const& k) const {
    cutlass::Array<float, N> out;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i) {
#if defined(__CUDA_ARCH__)
      const int e = 127 - __float2int_rn(k[i]);
      out[i] = acc[i] * __int_as_float(e << 23);
#else
      out[i] = acc[i] * exp2f(-k[i]);
#endif
    }
    return out;
  }
};

constexpr int kSmemBytes = 232448;  // sm90: 227 KiB of dynamic shared memory per block

template <class TileShape_, class ClusterShape_, class MainloopSchedule, class EpilogueSchedule,
          class TileScheduler_, int AtomM, int MaxStages>
struct NestedConfig {
  using TileShape = TileShape_;
  using ClusterShape = ClusterShape_;
  using TileScheduler = TileScheduler_;

  using ElementD = cutlass::half_t;
  using LayoutD = cutlass::layout::ColumnMajor;  // Dᵀ[M', N'] column-major == Y[M, N] row-major
  static constexpr int AlignD = 8;

  using ColK = cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, int8_t, float,
                                                           Stride<_1, _0, int64_t>, 1>;
  using Fusion = cutlass::epilogue::fusion::Sm90EVT<
      cutlass::epilogue::fusion::Sm90Compute<MulPow2Neg, ElementD, float,
                                             cutlass::FloatRoundStyle::round_to_nearest>,
      cutlass::epilogue::fusion::Sm90AccFetch, ColK>;

  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, float, float, void, LayoutD, AlignD,
      ElementD, LayoutD, AlignD, EpilogueSchedule, Fusion>::CollectiveOp;

  static constexpr int BM = size<0>(TileShape{}), BN = size<1>(TileShape{}),
                       BK = size<2>(TileShape{});
  using SmemAtomA =
      decltype(cutlass::gemm::collective::detail::ss_smem_selector<GMMA::Major::K, uint8_t, Int<BM>,
                                                                   Int<BK>>());
  using SmemAtomB =
      decltype(cutlass::gemm::collective::detail::ss_smem_selector<GMMA::Major::K, cutlass::half_t,
                                                                   Int<BN>, Int<BK>>());
  // Schedule CoopSm: the planes merged into shared memory, SS wgmma (collective/nested_mma_ss.hpp)
  // on the cooperative kernel; otherwise the RS mainloop (collective/nested_mma_rs.hpp).
  static constexpr bool kSmemMerge = cute::is_same_v<MainloopSchedule, gemm_schedules::CoopSm>;
  using KernelSchedule =
      cute::conditional_t<kSmemMerge, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                          MainloopSchedule>;
  using SmemAtomA16 =  // the merged FP16 weight tile (BM x BK, K-major)
      decltype(cutlass::gemm::collective::detail::ss_smem_selector<GMMA::Major::K, cutlass::half_t,
                                                                   Int<BM>, Int<BK>>());
  using MmaShape = Shape<Int<BM / AtomM>, Int<BN>, Int<BK>>;
  using TiledMma = cute::conditional_t<
      kSmemMerge,
      decltype(make_tiled_mma(GMMA::ss_op_selector<cutlass::half_t, cutlass::half_t, float,
                                                   MmaShape, GMMA::Major::K, GMMA::Major::K>(),
                              Layout<Shape<Int<AtomM>, _1, _1>>{})),
      decltype(make_tiled_mma(GMMA::rs_op_selector<cutlass::half_t, cutlass::half_t, float,
                                                   MmaShape, GMMA::Major::K, GMMA::Major::K>(),
                              Layout<Shape<Int<AtomM>, _1, _1>>{}))>;

  static constexpr int StageBytes = 2 * BM * BK + 2 * BN * BK;
  static constexpr int EpiBytes = int(sizeof(typename CollectiveEpilogue::SharedStorage));
  static constexpr int MergeBytes = kSmemMerge ? 2 * (2 * BM * BK) : 0;  // two FP16 A tiles
  static constexpr int Stages =
      cute::min(MaxStages, (kSmemBytes - EpiBytes - MergeBytes - 4096) / (StageBytes + 64));
  static_assert(Stages >= 2, "tile too large for shared memory");
  static_assert(!kSmemMerge || Stages >= 3,
                "the shared-memory merge holds two stages at once: it needs >= 3 to prefetch");

  using GmemCopyA =
      cute::conditional_t<size<1>(ClusterShape{}) == 1, SM90_TMA_LOAD, SM90_TMA_LOAD_MULTICAST>;
  using GmemCopyB =
      cute::conditional_t<size<0>(ClusterShape{}) == 1, SM90_TMA_LOAD, SM90_TMA_LOAD_MULTICAST>;
  using Policy = MainloopNestedFp16Rs<Stages, ClusterShape, KernelSchedule>;
  using Mainloop = cute::conditional_t<
      kSmemMerge,
      NestedFp16MmaSs<Policy, TileShape, TiledMma, SmemAtomA, SmemAtomB, GmemCopyA, GmemCopyB,
                      SmemAtomA16>,
      NestedFp16MmaRs<Policy, TileShape, TiledMma, SmemAtomA, SmemAtomB, GmemCopyA, GmemCopyB>>;
  using Kernel = cutlass::gemm::kernel::GemmUniversal<Shape<int, int, int, int>, Mainloop,
                                                      CollectiveEpilogue, TileScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;
};

template <class Cfg>
inline void run(const Problem& p) {
  const auto [upper, lower, k, X, Y, M, N, K, stream] = p;
  using Gemm = typename Cfg::Gemm;
  using Mainloop = typename Cfg::Mainloop;
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");

  // GEMM coordinates: M' = N (weight rows), N' = M (tokens).
  typename Mainloop::Arguments mainloop{
      upper, lower, typename Mainloop::StrideA{int64_t(K), _1{}, int64_t(N) * K},
      reinterpret_cast<const cutlass::half_t*>(X),
      typename Mainloop::StrideB{int64_t(K), _1{}, int64_t(M) * K}};
  using StrideD = Stride<_1, int64_t, int64_t>;
  StrideD dD{_1{}, int64_t(N), int64_t(N) * M};
  typename Gemm::GemmKernel::EpilogueArguments epilogue{};
  epilogue.thread = {{}, {k, int8_t(0), {_1{}, _0{}, int64_t(N)}}, {}};
  epilogue.ptr_C = nullptr;
  epilogue.dC = dD;
  epilogue.ptr_D = reinterpret_cast<cutlass::half_t*>(Y);
  epilogue.dD = dD;

  typename Gemm::Arguments args{
      cutlass::gemm::GemmUniversalMode::kGemm, {N, M, K, 1}, mainloop, epilogue};
  args.hw_info.device_id = device;
  args.hw_info.sm_count = sm_count(device);

  using Raster = cutlass::gemm::kernel::detail::RasterOrderOptions;
  const SchedChoice sc = sched_choice(Cfg::BM, Cfg::BN, Cfg::BK, N, M, K, args.hw_info.sm_count);
  args.scheduler.raster_order = sc.raster == 1   ? Raster::AlongM
                                : sc.raster == 2 ? Raster::AlongN
                                                 : Raster::Heuristic;
  args.scheduler.max_swizzle_size = sc.swizzle;
  if constexpr (cute::is_same_v<typename Cfg::TileScheduler, cutlass::gemm::StreamKScheduler>) {
    using Decomp = cutlass::gemm::kernel::detail::DecompositionMode;
    args.scheduler.decomposition_mode = sc.decomposition == 1   ? Decomp::DataParallel
                                        : sc.decomposition == 2 ? Decomp::SplitK
                                        : sc.decomposition == 3 ? Decomp::StreamK
                                                                : Decomp::Heuristic;
    args.scheduler.splits = sc.splits;
  }

  Gemm gemm;
  if (gemm.can_implement(args) != cutlass::Status::kSuccess)
    raise("the kernel cannot run " + shape_str(M, N, K) + " (alignment of K, N or the pointers)");
  void* ws = workspace(device, Gemm::get_workspace_size(args), stream);
  cutlass::Status st = gemm.initialize(args, ws, stream);
  if (st != cutlass::Status::kSuccess)
    raise(std::string("initialize failed: ") + cutlassGetStatusString(st));
  st = gemm.run(stream);
  if (st != cutlass::Status::kSuccess)
    raise(std::string("launch failed: ") + cutlassGetStatusString(st));
  check_cuda(cudaGetLastError(), "kernel launch");
}

}  // namespace nestedfp::cuda::nfp16
