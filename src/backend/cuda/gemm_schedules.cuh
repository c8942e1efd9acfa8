#pragma once
// The schedule and tile-scheduler names that gemm_configs.def rows spell (`schedule`,
// `schedule##Epi`, `scheduler`), shared by both families' configuration headers so a row reads the
// same whichever family it belongs to. CoopFA (FP8 fast accumulation), CoopDb and PingDb
// exist for NestedFP8 only.
#include <cutlass/epilogue/dispatch_policy.hpp>
#include <cutlass/gemm/dispatch_policy.hpp>
#include <cutlass/gemm/kernel/tile_scheduler.hpp>

namespace nestedfp::cuda::gemm_schedules {

using Coop = cutlass::gemm::KernelTmaWarpSpecializedCooperative;
using CoopEpi = cutlass::epilogue::TmaWarpSpecializedCooperative;
using CoopFA = cutlass::gemm::KernelTmaWarpSpecializedCooperativeFP8FastAccum;
using CoopFAEpi = cutlass::epilogue::TmaWarpSpecializedCooperative;
// NestedFP8 only: the cooperative kernel whose consumers promote to FP32 from two temporaries in
// turn (collective/nested_fp8_mma_db.hpp): the same sums as Coop's, without draining the tensor
// pipe at each promotion.
struct CoopDb {};
using CoopDbEpi = cutlass::epilogue::TmaWarpSpecializedCooperative;
// NestedFP16 only: the cooperative kernel whose consumer warpgroups merge the planes into shared
// memory and multiply with SS wgmma (collective/nested_mma_ss.hpp) instead of RS.
struct CoopSm {};
using CoopSmEpi = cutlass::epilogue::TmaWarpSpecializedCooperative;
using Ping = cutlass::gemm::KernelTmaWarpSpecializedPingpong;
using PingEpi = cutlass::epilogue::TmaWarpSpecialized;
// NestedFP8 only: Ping with the double-buffered FP32 promotion (as CoopDb).
struct PingDb {};
using PingDbEpi = cutlass::epilogue::TmaWarpSpecialized;
using StreamK = cutlass::gemm::StreamKScheduler;
using Persistent = cutlass::gemm::PersistentScheduler;

}  // namespace nestedfp::cuda::gemm_schedules
