#pragma once
// The NestedFP8 epilogue's per-token scale (x_scale[m], one value per CUTLASS column: the GEMM is
// swapped, nested_fp8_gemm.cuh), loaded from global memory straight into each epilogue thread's
// registers, as CUTLASS's column broadcast does for per-row values.
//
// Why not CUTLASS's Sm90RowBroadcast: it stages the vector through shared memory at the start of
// every output tile (a global load, a shared store and a barrier across the epilogue's threads)
// before any accumulator can leave. Loading into registers is bit-identical and 2.4% faster in
// geometric mean on the H200 (up to 8% at short K) (bench/results/2026-12-02-h200-nfp8-epilogue-probe.md). A thread
// of a wgmma accumulator holds few distinct columns (32 of a 128-column tile), so the registers
// are cheap here.
#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/fusion/sm90_callbacks_tma_warpspecialized.hpp"

namespace nestedfp::cuda::fp8gemm {

template <class CtaTileShapeMNK>
struct TokenScaleBroadcast {
  struct SharedStorage {};

  struct Arguments {
    const float* ptr = nullptr;  // [columns of the CUTLASS problem] = [tokens]
  };
  using Params = Arguments;

  template <class ProblemShape>
  static constexpr Params to_underlying_arguments(ProblemShape const&, Arguments const& args,
                                                  void*) {
    return args;
  }
  template <class ProblemShape>
  static bool can_implement(ProblemShape const&, Arguments const& args) {
    return args.ptr != nullptr;
  }
  template <class ProblemShape>
  static size_t get_workspace_size(ProblemShape const&, Arguments const&) {
    return 0;
  }
  template <class ProblemShape>
  static cutlass::Status initialize_workspace(ProblemShape const&, Arguments const&, void*,
                                              cudaStream_t, cutlass::CudaHostAdapter* = nullptr) {
    return cutlass::Status::kSuccess;
  }

  CUTLASS_HOST_DEVICE TokenScaleBroadcast() {}
  CUTLASS_HOST_DEVICE TokenScaleBroadcast(Params const& p, SharedStorage const&) : params(p) {}
  Params params;

  CUTLASS_DEVICE bool is_producer_load_needed() const { return false; }
  CUTLASS_DEVICE bool is_C_load_needed() const { return false; }
  CUTLASS_DEVICE bool is_zero() const { return false; }

  template <class... Args>
  CUTLASS_DEVICE auto get_producer_load_callbacks(
      cutlass::epilogue::fusion::ProducerLoadArgs<Args...> const&) {
    return cutlass::epilogue::fusion::EmptyProducerLoadCallbacks{};
  }

  // tG: this thread's view of the vector over the tile (stride 0 along the rows); tR: the same
  // shape in registers (the stride-0 modes kept, so only distinct columns take a register); tC:
  // the coordinates, for the column bound.
  template <class GTensor, class RTensor, class CTensor, class Residue>
  struct ConsumerStoreCallbacks : cutlass::epilogue::fusion::EmptyConsumerStoreCallbacks {
    CUTLASS_DEVICE ConsumerStoreCallbacks(GTensor g, RTensor r, CTensor c, Residue res)
        : tG(g), tR(r), tC(c), residue(res) {}
    GTensor tG;  // (CPY,CPY_M,CPY_N,EPI_M,EPI_N)
    RTensor tR;
    CTensor tC;
    Residue residue;

    CUTLASS_DEVICE void begin() {
      using namespace cute;
      // Issue every load of the tile at once (no shared memory, no barrier): one latency per tile.
      Tensor g = filter_zeros(tG);
      Tensor r = filter_zeros(tR);
      Tensor c = filter_zeros(tC, tG.stride());
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < size(g); ++i) r(i) = elem_less(c(i), residue) ? g(i) : 0.f;
    }

    template <typename ElementAccumulator, int FragmentSize>
    CUTLASS_DEVICE cutlass::Array<float, FragmentSize> visit(
        cutlass::Array<ElementAccumulator, FragmentSize> const&, int epi_v, int epi_m, int epi_n) {
      using namespace cute;
      cutlass::Array<float, FragmentSize> out;
      Tensor r = tR(_, _, _, epi_m, epi_n);
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < FragmentSize; ++i) out[i] = r(epi_v * FragmentSize + i);
      return out;
    }
  };

  template <bool ReferenceSrc, class... Args>
  CUTLASS_DEVICE auto get_consumer_store_callbacks(
      cutlass::epilogue::fusion::ConsumerStoreArgs<Args...> const& args) {
    using namespace cute;
    auto [M, N, K, L] = args.problem_shape_mnkl;
    // (M, N, L) with stride 0 along M and L: one value per column, shared by every row and batch.
    Tensor mVec = make_tensor(make_gmem_ptr(params.ptr),
                              make_layout(make_shape(M, N, L), make_stride(_0{}, _1{}, _0{})));
    Tensor tG = cutlass::epilogue::fusion::sm90_partition_for_epilogue<ReferenceSrc>(
        mVec, args.tile_shape_mnk, args.tile_coord_mnkl, args.epi_tile, args.tiled_copy,
        args.thread_idx);
    Tensor tR = make_tensor_like<float>(tG);
    return ConsumerStoreCallbacks<decltype(tG), decltype(tR), decltype(args.tCcD),
                                  decltype(args.residue_tCcD)>(tG, tR, args.tCcD,
                                                               args.residue_tCcD);
  }
};

}  // namespace nestedfp::cuda::fp8gemm
