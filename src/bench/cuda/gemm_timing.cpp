// Shared GEMM timing of `bench kernels` and `tune` (gemm_timing.hpp).
#include "bench/cuda/gemm_timing.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>

#include "bench/provenance.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::cuda {

int ColdWeights::copies_for(int N, int K, int64_t l2_bytes) {
  const int64_t nk = int64_t(N) * K;
  return std::max<int>(4, int((3 * l2_bytes + nk - 1) / nk));
}

ColdWeights::ColdWeights(int N_, int K_, int64_t l2_bytes, bool with_fp16, cudaStream_t stream)
    : N(N_),
      K(K_),
      copies(copies_for(N_, K_, l2_bytes)),
      w16(size_t(with_fp16 ? copies : 1) * N_ * K_),
      upper(size_t(copies) * N_ * K_),
      lower(size_t(copies) * N_ * K_),
      k(size_t(copies) * N_) {
  const size_t nk = size_t(N) * K;
  fill_random_half(w16.p, nk, 0x5eed0000ull + N * 131 + K, 0.02f, stream);
  const auto st = split_weight(w16.p, N, K, true, upper.p, lower.p, k.p, stream);
  if (!st.ok) fail("random weight {}x{}: row {} not nestable", N, K, st.bad_row);
  host_k.resize(size_t(N));
  NFP_CUDA_CHECK(cudaMemcpy(host_k.data(), k.p, size_t(N), cudaMemcpyDeviceToHost));
  for (int c = 1; c < copies; ++c) {
    if (with_fp16)
      NFP_CUDA_CHECK(
          cudaMemcpyAsync(w16.p + c * nk, w16.p, nk * 2, cudaMemcpyDeviceToDevice, stream));
    NFP_CUDA_CHECK(
        cudaMemcpyAsync(upper.p + c * nk, upper.p, nk, cudaMemcpyDeviceToDevice, stream));
    NFP_CUDA_CHECK(
        cudaMemcpyAsync(lower.p + c * nk, lower.p, nk, cudaMemcpyDeviceToDevice, stream));
    NFP_CUDA_CHECK(
        cudaMemcpyAsync(k.p + size_t(c) * N, k.p, size_t(N), cudaMemcpyDeviceToDevice, stream));
  }
  NFP_CUDA_CHECK(cudaStreamSynchronize(stream));
}

GraphTimer::GraphTimer(cudaStream_t s, double target_ms) : s_(s), target_ms_(target_ms) {
  ev_.resize(2 * kMaxReps);
  for (auto& e : ev_) NFP_CUDA_CHECK(cudaEventCreate(&e));
}

GraphTimer::~GraphTimer() {
  for (auto& e : ev_) cudaEventDestroy(e);
}

std::vector<double> GraphTimer::median_us(const std::vector<std::function<void(int)>>& fs,
                                          int copies) {
  const int per_graph = copies * std::max(1, (8 + copies - 1) / copies);
  std::vector<cudaGraphExec_t> execs;
  struct Cleanup {
    std::vector<cudaGraphExec_t>& e;
    ~Cleanup() {
      for (auto x : e) cudaGraphExecDestroy(x);
    }
  } cleanup{execs};
  for (const auto& f : fs) {
    for (int i = 0; i < copies; ++i) f(i);  // warm-up: handles, workspaces, attributes
    NFP_CUDA_CHECK(cudaStreamSynchronize(s_));
    cudaGraph_t graph = nullptr;
    NFP_CUDA_CHECK(cudaStreamBeginCapture(s_, cudaStreamCaptureModeThreadLocal));
    try {
      for (int i = 0; i < per_graph; ++i) f(i % copies);
    } catch (...) {
      cudaStreamEndCapture(s_, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    NFP_CUDA_CHECK(cudaStreamEndCapture(s_, &graph));
    cudaGraphExec_t exec = nullptr;
    NFP_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    NFP_CUDA_CHECK(cudaGraphDestroy(graph));
    execs.push_back(exec);
  }
  std::vector<float> est(fs.size());
  for (size_t i = 0; i < fs.size(); ++i) est[i] = replay(execs[i], 1).front();
  constexpr int kRounds = 5;
  std::vector<std::vector<float>> t(fs.size());
  // A new order every round: a kernel that runs right after a power-hungry one (an FP16 GEMM
  // at large M) was measured up to 30% slower on the H200, so no kernel may keep one position.
  std::vector<size_t> order(fs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937 rng(uint32_t(fs.size() * 7919 + copies));
  for (int r = 0; r < kRounds; ++r) {
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t i : order) {
      const int reps = std::clamp(int(target_ms_ / kRounds / std::max(est[i], 1e-3f)), 2, kMaxReps);
      NFP_CUDA_CHECK(cudaGraphLaunch(execs[i], s_));  // untimed: the same state for every kernel
      const auto v = replay(execs[i], reps);
      t[i].insert(t[i].end(), v.begin(), v.end());
    }
  }
  std::vector<double> out;
  for (auto& v : t) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    out.push_back(double(v[v.size() / 2]) * 1000.0 / per_graph);
  }
  return out;
}

std::vector<float> GraphTimer::replay(cudaGraphExec_t exec, int reps) {
  for (int r = 0; r < reps; ++r) {
    NFP_CUDA_CHECK(cudaEventRecord(ev_[2 * r], s_));
    NFP_CUDA_CHECK(cudaGraphLaunch(exec, s_));
    NFP_CUDA_CHECK(cudaEventRecord(ev_[2 * r + 1], s_));
  }
  NFP_CUDA_CHECK(cudaStreamSynchronize(s_));
  std::vector<float> t(reps);
  for (int r = 0; r < reps; ++r)
    NFP_CUDA_CHECK(cudaEventElapsedTime(&t[r], ev_[2 * r], ev_[2 * r + 1]));
  return t;
}

namespace {
std::string run_text(const char* cmd) {
  std::string out;
  if (FILE* f = popen(cmd, "r")) {
    char buf[256];
    while (fgets(buf, sizeof buf, f)) out += buf;
    pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}
}  // namespace

RunInfo run_info() {
  RunInfo r;
  r.driver = run_text("nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null");
  if (const size_t nl = r.driver.find('\n'); nl != std::string::npos) r.driver.resize(nl);
  r.commit = bench::result_commit();
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char date[16];
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  r.date = date;
  return r;
}

}  // namespace nestedfp::cuda
