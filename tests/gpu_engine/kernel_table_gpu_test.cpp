// --kernel-table on the cuda backend (KERNELS.md §2.4): a table that moves every pystd-16m GEMM
// off the heuristic's choice, and one whose names this build lacks, both give the perplexity of
// the heuristics (every configuration computes the same GEMM within 1e-3). Needs a Hopper GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "backend/kernel_table.hpp"
#include "engine/model_runner.hpp"
#include "gpu_engine/cuda_pystd.hpp"

using namespace nestedfp;
using namespace nestedfp::testing_pystd;

namespace {

std::unique_ptr<engine::ModelRunner> runner(const std::string& table) {
  engine::RunnerOptions ro;
  ro.max_num_batched_tokens = 512;
  ro.max_num_seqs = 8;
  ro.num_kv_blocks = 512;
  return load_cuda_pystd(ro, true, table);
}

// pystd-16m's GEMM shapes (hidden 384, 6 x 64 query heads, 2 KV heads, intermediate 1024), every
// bucket on `v16` / `v8`.
std::string write_table(const std::string& name, const std::string& v16, const std::string& v8) {
  backend::KernelTable t;
  t.gpu = "any", t.cuda = "13.0", t.commit = "test", t.date = "2026-12-02";
  for (auto [N, K] : {std::pair{384, 384}, {128, 384}, {1024, 384}, {384, 1024}})
    for (int M : {16, 512})
      for (auto f : {backend::GemmFamily::Nfp16, backend::GemmFamily::Nfp8}) {
        backend::KernelTable::Entry e;
        e.family = f, e.N = N, e.K = K, e.M = M;
        e.variant = f == backend::GemmFamily::Nfp16 ? v16 : v8;
        t.add(e);
      }
  const auto path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << t.dump();
  return path.string();
}

}  // namespace

TEST(CudaKernelTable, OtherChoicesComputeTheSameModel) {
  auto base = runner("none");
  // Default-set configurations the heuristics pick only elsewhere (M <= 64 / long K).
  auto tuned =
      runner(write_table("kernel-table-gpu-test.json", "t128x64x128_coop_sk", "spk128x32"));
  auto missing = runner(write_table("kernel-table-gpu-missing.json", "no_such", "no_such"));
  for (Precision p : {Precision::FP16, Precision::FP8}) {
    const double b = mean(first8_chunk_nll(*base, p)), t = mean(first8_chunk_nll(*tuned, p)),
                 m = mean(first8_chunk_nll(*missing, p));
    // The bounds of engine_gpu_test: FP16 as plain cuBLAS vs nested, FP8 as against REFERENCE.json.
    EXPECT_NEAR(t, b, p == Precision::FP16 ? 2e-4 : 4e-3) << to_string(p);
    EXPECT_NEAR(m, b, 1e-9) << to_string(p) << ": unknown names must fall back to the heuristic";
  }
}
