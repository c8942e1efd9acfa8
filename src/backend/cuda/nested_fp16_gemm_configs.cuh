#pragma once
// The NestedFP16 GEMM configurations as types, from the NFP16_CUTLASS rows of gemm_configs.def:
// tile (weight rows x tokens x K), cluster, mainloop/epilogue schedule, tile scheduler, wgmma
// atoms along the weight rows, and the most pipeline stages wanted (fewer when shared memory runs
// out). Each is instantiated in its generated translation unit nested_fp16_gemm_v_<name>.cu (in
// the build tree; cmake/GemmConfigs.cmake).
#include "backend/cuda/gemm_schedules.cuh"
#include "backend/cuda/nested_fp16_gemm_impl.cuh"

namespace nestedfp::cuda::nfp16::configs {

using namespace gemm_schedules;  // Coop, Ping, StreamK, ... as the rows spell them

// One type per NFP16_CUTLASS row of gemm_configs.def, named like the row.
#define NFP16_CUTLASS(name, tier, tile_rows, tile_tokens, tile_k, cluster_rows, cluster_tokens, \
                      schedule, scheduler, atoms, stages)                                       \
  using name = NestedConfig<Shape<_##tile_rows, _##tile_tokens, _##tile_k>,                     \
                            Shape<_##cluster_rows, _##cluster_tokens, _1>, schedule,            \
                            schedule##Epi, scheduler, atoms, stages>;
// A generated configuration TU (NFP_GEMM_ONE_ROW) expands only its own row, after this header.
#ifndef NFP_GEMM_ONE_ROW
#include "backend/cuda/gemm_configs.def"
#endif

}  // namespace nestedfp::cuda::nfp16::configs
