#pragma once
// `nestedfp tune` (docs/MEASURING.md §5.7): times every built configuration of both nested GEMM
// families per (weight shape, token count) and writes the fastest as a kernel table
// (backend/kernel_table.hpp).
#include <functional>
#include <string>
#include <vector>

namespace nestedfp::cuda {

struct TuneShape {
  int N = 0, K = 0;
  std::string label;
};

struct TuneOptions {
  std::vector<TuneShape> shapes;
  std::vector<int> ms;           // the M buckets
  std::string out;               // the table (.json); a readable summary goes beside it (.md)
  std::string command;           // recorded in the table
  bool kernel_set_only = false;  // only configurations of the default kernel set (every build's)
  bool merge = false;     // an existing `out` keeps the shapes this run does not tune (and its .md)
  double target_ms = 20;  // GPU time per candidate and point
  // Called before each (shape, M) point and once at the end (done == total); `line` is the
  // finished point's result ("" before the first).
  std::function<void(int done, int total, const std::string& line)> progress;
};

// Runs on the current CUDA device; throws Error without a Hopper GPU. Returns the exit code.
int tune_kernels(const TuneOptions& opts);

}  // namespace nestedfp::cuda
