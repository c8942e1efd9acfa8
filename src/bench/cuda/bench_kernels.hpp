#pragma once
// `nestedfp bench kernels`: times the GEMMs of KERNELS.md §2 against cuBLAS on the GPU at hand.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nestedfp::cuda {

struct BenchKernelsOptions {
  std::vector<std::pair<int, int>> shapes;  // (N, K); empty: MEASURING.md §5.1 defaults
  std::vector<int> ms;                      // token counts; empty: MEASURING.md §5.1 defaults
  std::string out_dir = "bench/results";
  std::string command;                // the command line, recorded in the results
  bool all_variants = false;          // also time every NestedFP8 configuration (tuning data)
  double target_ms = 60.0;            // GPU time to spend per measurement (median over the replays)
  std::string kernel_table = "auto";  // FILE | auto | none: its choices get "table" columns
};

// Runs the benchmark, prints the table to stdout and progress to stderr, writes
// <out_dir>/<date>-<gpu>-kernels.{md,json}. Returns the process exit code.
int bench_kernels(const BenchKernelsOptions& opts);

}  // namespace nestedfp::cuda
