#pragma once
// The NestedFP8 GEMM kernels as types, from the NFP8_CUTLASS rows of gemm_configs.def: tile
// (weight rows x tokens x K), cluster, mainloop/epilogue schedule, tile scheduler. Each is
// instantiated in its generated translation unit nested_fp8_gemm_v_<name>.cu (in the build tree;
// cmake/GemmConfigs.cmake).
#include "backend/cuda/gemm_schedules.cuh"
#include "backend/cuda/nested_fp8_gemm.cuh"

namespace nestedfp::cuda::fp8gemm::configs {

using namespace gemm_schedules;  // Coop, Ping, StreamK, ... as the rows spell them

// One type per NFP8_CUTLASS row of gemm_configs.def, named like the row.
#define NFP8_CUTLASS(name, tier, tile_rows, tile_tokens, tile_k, cluster_rows, cluster_tokens, \
                     schedule, scheduler)                                                      \
  using name = Config<cute::Shape<cute::_##tile_rows, cute::_##tile_tokens, cute::_##tile_k>,  \
                      cute::Shape<cute::_##cluster_rows, cute::_##cluster_tokens, cute::_1>,   \
                      schedule, schedule##Epi, scheduler>;
// A generated configuration TU (NFP_GEMM_ONE_ROW) expands only its own row, after this header.
#ifndef NFP_GEMM_ONE_ROW
#include "backend/cuda/gemm_configs.def"
#endif

}  // namespace nestedfp::cuda::fp8gemm::configs
