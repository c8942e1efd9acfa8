#pragma once
// The NestedFP16 GEMM configurations as types, one table: tile (weight rows x tokens x K),
// cluster, mainloop/epilogue schedule, tile scheduler, wgmma atoms along the weight rows, and the
// most pipeline stages wanted (fewer when shared memory runs out). Each is instantiated in
// nested_fp16_gemm_v_<name>.cu; its tier (which builds contain it) is in
// nested_fp16_gemm_kernels.hpp, its place in the variant table in nested_fp16_gemm.cu.
#include "backend/cuda/nested_fp16_gemm_impl.cuh"

namespace nestedfp::cuda::nfp16::configs {

using Coop = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
using CoopEpi = cutlass::epilogue::TmaWarpSpecializedCooperative;
using Ping = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
using PingEpi = cutlass::epilogue::TmaWarpSpecialized;
using StreamK = cutlass::gemm::StreamKScheduler;
using Persistent = cutlass::gemm::PersistentScheduler;
using C1x1 = Shape<_1, _1, _1>;

// clang-format off
// K tile 128 (128-byte rows of each byte plane per TMA box, 64-byte at K tile 64) for the
// memory-bound small-M shapes.
using t128x16x128_coop_sk      = NestedConfig<Shape<_128, _16, _128>, C1x1,              Coop, CoopEpi, StreamK,    2, 12>;
using t128x32x128_coop_sk      = NestedConfig<Shape<_128, _32, _128>, C1x1,              Coop, CoopEpi, StreamK,    2, 10>;
using t128x64x128_coop_sk      = NestedConfig<Shape<_128, _64, _128>, C1x1,              Coop, CoopEpi, StreamK,    2, 8>;
using t128x128x128_coop_sk     = NestedConfig<Shape<_128, _128, _128>, C1x1,             Coop, CoopEpi, StreamK,    2, 8>;
using t128x64x64_coop_sk       = NestedConfig<Shape<_128, _64, _64>, C1x1,               Coop, CoopEpi, StreamK,    2, 12>;
using t128x128x64_coop_sk      = NestedConfig<Shape<_128, _128, _64>, C1x1,              Coop, CoopEpi, StreamK,    2, 8>;
using t128x256x64_coop_sk      = NestedConfig<Shape<_128, _256, _64>, C1x1,              Coop, CoopEpi, StreamK,    2, 6>;
using t256x128x64_coop_sk      = NestedConfig<Shape<_256, _128, _64>, C1x1,              Coop, CoopEpi, StreamK,    2, 6>;
using t128x128x64_pingpong     = NestedConfig<Shape<_128, _128, _64>, C1x1,              Ping, PingEpi, Persistent, 1, 8>;
using t256x128x64_coop_c2x1_sk = NestedConfig<Shape<_256, _128, _64>, Shape<_2, _1, _1>, Coop, CoopEpi, StreamK,    2, 6>;
using t128x256x64_coop_c1x2_sk = NestedConfig<Shape<_128, _256, _64>, Shape<_1, _2, _1>, Coop, CoopEpi, StreamK,    2, 6>;
// 64 weight rows, for narrow layers at small M (N / 128 tiles leave SMs idle). Ping-pong only:
// CUTLASS's cooperative kernel splits the tile's rows over two consumer warpgroups and needs
// >= 128 of them (wgmma's M is 64); ping-pong gives each warpgroup a whole tile (one wgmma atom,
// 128 MMA threads), but has no stream-K scheduler, so these run data-parallel (persistent).
using t64x16x128_pingpong      = NestedConfig<Shape<_64, _16, _128>, C1x1,               Ping, PingEpi, Persistent, 1, 12>;
using t64x32x128_pingpong      = NestedConfig<Shape<_64, _32, _128>, C1x1,               Ping, PingEpi, Persistent, 1, 10>;
using t64x64x128_pingpong      = NestedConfig<Shape<_64, _64, _128>, C1x1,               Ping, PingEpi, Persistent, 1, 8>;
// clang-format on

}  // namespace nestedfp::cuda::nfp16::configs
