#pragma once
// NestedFP8 GEMM on CUTLASS 4.2 (sm90, TMA warp-specialized), docs/KERNELS.md §2.3. Included only
// by the nested_fp8_gemm_v*.cu translation units, one kernel configuration each (they compile in
// parallel).
//
// Swap AB: the CUTLASS problem is Yᵀ[N, M] = W_upper[N, K] · Xq[M, K]ᵀ, so the weight rows fill
// the 64/128-wide wgmma M dimension and a few tokens fit the narrow N tile (16..256).
//   A = upper plane, e4m3, [N, K] K-major (RowMajor): TMA, 16-byte aligned rows, K % 16 == 0
//   B = quantized activations, e4m3, [M, K] K-major (ColumnMajor, CUTLASS's K×M operand)
//   D = Y, fp16, column-major [N, M] == row-major Y[M, N]: N % 8 == 0
// Kernel schedules: the default FP8 mainloops promote the wgmma accumulators into a second FP32
// accumulator every 4 k-blocks (exact FP32 sums); "fa" variants use the FP8 fast-accumulation
// schedules (no promotion: fewer registers, so 128x256 tiles fit, at lower accumulation precision).
// Epilogue (FP32, an epilogue visitor tree):
//   D[n, m] = fp16( x_scale[m] · (acc[n, m] · 2^-(k[n] + 8)) )
// k is read as int8 by a column broadcast (one value per CUTLASS row = weight row); x_scale by
// TokenScaleBroadcast (one value per CUTLASS column = token, straight into registers). Multiplying
// by a power of two is exact, so the only roundings are acc·x_scale to fp32 and the final fp16
// conversion.
#include <cuda_runtime.h>

#include "backend/cuda/collective/nested_fp8_mma_db.hpp"
#include "backend/cuda/epilogue_token_scale.hpp"
#include "backend/cuda/gemm_schedules.cuh"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/nested_fp8_gemm_impl.hpp"
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/gemm/kernel/tile_scheduler.hpp"

namespace nestedfp::cuda::fp8gemm {

// acc · 2^-(k + 8), exact: builds the power of two from its exponent bits.
template <class T>
struct ScaleByNegPow2K {
  CUTLASS_DEVICE static float one(float acc, float kf) {
    const int e = 127 - 8 - int(kf);  // biased exponent of 2^-(k+8)
    const float s = e > 0 ? __int_as_float(e << 23) : ldexpf(1.f, e - 127);
    return acc * s;
  }
  CUTLASS_DEVICE T operator()(T const& acc, T const& k) const {
    if constexpr (cute::is_same_v<T, float>) {
      return one(acc, k);
    } else {
      T r;
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < int(T::kElements); ++i) r[i] = one(acc[i], k[i]);
      return r;
    }
  }
};

template <class TileShape_, class ClusterShape_, class KernelSchedule_, class EpilogueSchedule_,
          class TileScheduler_ = cutlass::gemm::PersistentScheduler>
struct Config {
  using TileShape = TileShape_;
  using ClusterShape = ClusterShape_;
  using KernelSchedule = KernelSchedule_;
  using EpilogueSchedule = EpilogueSchedule_;
  using TileScheduler = TileScheduler_;
};

// The epilogue's per-token scale: in registers (TokenScaleBroadcast, the default) or staged
// through shared memory per tile (CUTLASS's Sm90RowBroadcast, the kernels' first version; kept
// for bench/nfp8/epilogue_probe.cu). KOnly leaves the per-token scale out: wrong results, a
// probe's timing bound only.
enum class Epi { RegisterRowScale, SharedRowScale, KOnly };

// How the promoted mainloop moves partial sums into FP32: CUTLASS's, or through two temporaries
// in turn (collective/nested_fp8_mma_db.hpp; cooperative and ping-pong kernels). A configuration
// row asks for the second with the schedule CoopDb or PingDb (gemm_schedules.cuh); the probes pass
// DoubleBuffered. A CoopDb / PingDb configuration is double-buffered whatever kPromotion says
// (compare with CUTLASS's through a Coop / Ping configuration of the same tile).
enum class Promotion { Cutlass, DoubleBuffered };

template <class Cfg, Epi kEpi = Epi::RegisterRowScale, Promotion kPromotion = Promotion::Cutlass>
struct Kernel {
  using ElementA = cutlass::float_e4m3_t;
  using ElementB = cutlass::float_e4m3_t;
  using ElementD = cutlass::half_t;
  using ElementAcc = float;
  using ElementCompute = float;
  using LayoutA = cutlass::layout::RowMajor;
  using LayoutB = cutlass::layout::ColumnMajor;
  using LayoutD = cutlass::layout::ColumnMajor;
  static constexpr int kAlignA = 16, kAlignB = 16, kAlignD = 8;
  using TileShape = typename Cfg::TileShape;
  // CoopDb / PingDb: CUTLASS's cooperative / ping-pong kernel with the double-buffered promotion.
  static constexpr bool kCoopDb =
      cute::is_same_v<typename Cfg::KernelSchedule, gemm_schedules::CoopDb>;
  static constexpr bool kPingDb =
      cute::is_same_v<typename Cfg::KernelSchedule, gemm_schedules::PingDb>;
  static constexpr bool kDoubleBuffered =
      kCoopDb || kPingDb || kPromotion == Promotion::DoubleBuffered;
  using KernelSchedule = cute::conditional_t<
      kCoopDb, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
      cute::conditional_t<kPingDb, cutlass::gemm::KernelTmaWarpSpecializedPingpong,
                          typename Cfg::KernelSchedule>>;
  static constexpr auto RN = cutlass::FloatRoundStyle::round_to_nearest;

  using ColK =
      cutlass::epilogue::fusion::Sm90ColBroadcast<0, TileShape, int8_t, float,
                                                  cute::Stride<cute::_1, cute::_0, int64_t>, 1>;
  using RowS = cute::conditional_t<
      kEpi == Epi::SharedRowScale,
      cutlass::epilogue::fusion::Sm90RowBroadcast<0, TileShape, float, float,
                                                  cute::Stride<cute::_0, cute::_1, int64_t>>,
      TokenScaleBroadcast<TileShape>>;
  using KScaled = cutlass::epilogue::fusion::Sm90EVT<
      cutlass::epilogue::fusion::Sm90Compute<ScaleByNegPow2K, float, float, RN>,
      cutlass::epilogue::fusion::Sm90AccFetch, ColK>;
  using Scaled = cutlass::epilogue::fusion::Sm90EVT<
      cutlass::epilogue::fusion::Sm90Compute<cutlass::multiplies, ElementD, float, RN>, RowS,
      KScaled>;
  // Epi::KOnly (probe): the NestedFP16 epilogue's shape, without the per-token scale.
  using KOnly = cutlass::epilogue::fusion::Sm90EVT<
      cutlass::epilogue::fusion::Sm90Compute<ScaleByNegPow2K, ElementD, float, RN>,
      cutlass::epilogue::fusion::Sm90AccFetch, ColK>;
  using Fusion = cute::conditional_t<kEpi == Epi::KOnly, KOnly, Scaled>;

  using Epilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape, typename Cfg::ClusterShape,
      cutlass::epilogue::collective::EpilogueTileAuto, ElementAcc, ElementCompute, void, LayoutD,
      kAlignD, ElementD, LayoutD, kAlignD, typename Cfg::EpilogueSchedule, Fusion>::CollectiveOp;

  using BuiltMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, ElementA, LayoutA, kAlignA, ElementB,
      LayoutB, kAlignB, ElementAcc, TileShape, typename Cfg::ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename Epilogue::SharedStorage))>,
      KernelSchedule>::CollectiveOp;
  static_assert(
      !kDoubleBuffered ||
          cute::is_same_v<KernelSchedule, cutlass::gemm::KernelTmaWarpSpecializedCooperative> ||
          cute::is_same_v<KernelSchedule, cutlass::gemm::KernelTmaWarpSpecializedPingpong>,
      "the double-buffered promotion replaces the promoted FP8 mainloop of the cooperative and "
      "ping-pong kernels");
  using Mainloop = cute::conditional_t<kDoubleBuffered, NestedFp8MmaDoubleBuffered<BuiltMainloop>,
                                       BuiltMainloop>;

  using GemmKernel = cutlass::gemm::kernel::GemmUniversal<cute::Shape<int, int, int, int>, Mainloop,
                                                          Epilogue, typename Cfg::TileScheduler>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<GemmKernel>;
};

template <class Cfg, Epi kEpi = Epi::RegisterRowScale, Promotion kPromotion = Promotion::Cutlass>
void run(const Problem& p) {
  using K = Kernel<Cfg, kEpi, kPromotion>;
  using Gemm = typename K::Gemm;
  using StrideA = typename Gemm::GemmKernel::StrideA;
  using StrideB = typename Gemm::GemmKernel::StrideB;
  using StrideD = typename Gemm::GemmKernel::StrideD;
  const int N = p.w->N, Kd = p.w->K, M = p.M;

  StrideA sA = cute::make_stride(int64_t(Kd), cute::Int<1>{}, int64_t(N) * Kd);
  StrideB sB = cute::make_stride(int64_t(Kd), cute::Int<1>{}, int64_t(M) * Kd);
  StrideD sD = cute::make_stride(cute::Int<1>{}, int64_t(N), int64_t(N) * M);

  typename Gemm::Arguments args{};
  args.mode = cutlass::gemm::GemmUniversalMode::kGemm;
  args.problem_shape = {N, M, Kd, 1};
  args.mainloop.ptr_A = reinterpret_cast<const typename K::ElementA*>(p.w->upper);
  args.mainloop.dA = sA;
  args.mainloop.ptr_B = reinterpret_cast<const typename K::ElementB*>(p.xq);
  args.mainloop.dB = sB;
  if constexpr (requires { args.mainloop.mma_promotion_interval; }) {
    if (p.promotion > 0) args.mainloop.mma_promotion_interval = uint32_t(p.promotion);
  }
  auto& th = args.epilogue.thread;
  const typename K::KScaled::Arguments k_scaled{
      {}, {p.w->k, int8_t(0), {cute::_1{}, cute::_0{}, int64_t(0)}}, {}};  // acc · 2^-(k+8)
  if constexpr (kEpi == Epi::KOnly) {
    th = {{}, {p.w->k, int8_t(0), {cute::_1{}, cute::_0{}, int64_t(0)}}, {}};
  } else if constexpr (kEpi == Epi::SharedRowScale) {
    th = {{p.x_scale, 0.f, {cute::_0{}, cute::_1{}, int64_t(0)}}, k_scaled, {}};  // per token
  } else {
    th = {{p.x_scale}, k_scaled, {}};  // per token
  }
  args.epilogue.ptr_C = nullptr;
  args.epilogue.dC = sD;
  args.epilogue.ptr_D = reinterpret_cast<typename K::ElementD*>(p.Y);
  args.epilogue.dD = sD;
  args.hw_info.device_id = p.device;
  args.hw_info.sm_count = p.sm_count;
  using Raster = decltype(args.scheduler.raster_order);
  args.scheduler.raster_order = p.raster == 1   ? Raster::AlongM
                                : p.raster == 2 ? Raster::AlongN
                                                : Raster::Heuristic;
  args.scheduler.max_swizzle_size = p.swizzle > 0 ? p.swizzle : 1;
  if constexpr (cute::is_same_v<typename Cfg::TileScheduler, cutlass::gemm::StreamKScheduler>) {
    using Mode = decltype(args.scheduler.decomposition_mode);
    if (p.decomposition == 1) {
      args.scheduler.decomposition_mode = Mode::DataParallel;
    } else if (p.decomposition == 3) {
      args.scheduler.decomposition_mode = Mode::StreamK;
    } else if (p.splits > 1) {
      args.scheduler.splits = p.splits;
      args.scheduler.decomposition_mode = Mode::SplitK;
    }
  }

  Gemm gemm;
  if (gemm.can_implement(args) != cutlass::Status::kSuccess)
    cuda_fail("nested_fp8_gemm: CUTLASS cannot run variant ", p.variant_name, " on M=", M, " N=", N,
              " K=", Kd, " (check K % 16 == 0, N % 8 == 0)");
  const size_t ws = Gemm::get_workspace_size(args);
  void* workspace = ws ? workspace_for(ws, p.stream) : nullptr;
  cutlass::Status st = gemm.initialize(args, workspace, p.stream);
  if (st != cutlass::Status::kSuccess)
    cuda_fail("nested_fp8_gemm: initialize failed for variant ", p.variant_name, ": ",
              cutlassGetStatusString(st));
  st = gemm.run(p.stream);
  if (st != cutlass::Status::kSuccess)
    cuda_fail("nested_fp8_gemm: launch failed for variant ", p.variant_name, ": ",
              cutlassGetStatusString(st));
  NFP_CUDA_CHECK_LAUNCH();
}

}  // namespace nestedfp::cuda::fp8gemm
