// `nestedfp bench kernels` (issue 5): NestedFP16, cuBLAS FP16, NestedFP8 with and without its
// activation quantization and cuBLASLt FP8 (per-tensor and, where supported, per-row scales), for
// the shapes and token counts of MEASURING.md §5.1. Each measurement is a CUDA graph that cycles
// over enough weight copies to exceed L2 several times (cold weights, as in serving), replayed many
// times; the median replay time divided by the launches per graph is reported.
#include "bench/cuda/bench_kernels.hpp"

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "backend/cuda/gemm_variant_sets.hpp"
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"
#include "bench/cuda/gemm_timing.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"

namespace nestedfp::cuda {
namespace {

struct Shape {
  int N, K;
  std::string label;
};

const std::vector<Shape> kDefaultShapes = {
    {6144, 4096, "Llama-3.1-8B qkv_proj"},           {4096, 4096, "Llama-3.1-8B o_proj"},
    {28672, 4096, "Llama-3.1-8B gate_up_proj"},      {4096, 14336, "Llama-3.1-8B down_proj"},
    {6144, 5120, "Mistral-Small-24B qkv_proj"},      {5120, 4096, "Mistral-Small-24B o_proj"},
    {65536, 5120, "Mistral-Small-24B gate_up_proj"}, {5120, 32768, "Mistral-Small-24B down_proj"},
};
const std::vector<int> kDefaultMs = {1, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};

struct Record {
  std::string kernel, shape;
  int N, K, M;
  double us;  // NaN: not supported
  double bytes;
};

double geomean(const std::vector<double>& v) {
  if (v.empty()) return NAN;
  double s = 0;
  for (double x : v) s += std::log(x);
  return std::exp(s / double(v.size()));
}

}  // namespace

int bench_kernels(const BenchKernelsOptions& opts) {
  const auto dev = device_info();
  if (dev.cc_major != 9)
    fail("bench kernels: needs a Hopper GPU (compute capability 9.x); this is {} ({}.{})", dev.name,
         dev.cc_major, dev.cc_minor);
  std::vector<Shape> shapes;
  if (opts.shapes.empty()) {
    shapes = kDefaultShapes;
  } else {
    for (auto [n, k] : opts.shapes) shapes.push_back({n, k, fmt::format("{}x{}", n, k)});
  }
  const std::vector<int> ms = opts.ms.empty() ? kDefaultMs : opts.ms;
  for (auto& s : shapes)
    if (s.N % 8 || s.K % 16)
      fail("bench kernels: shape {}x{}: N must be a multiple of 8 and K of 16", s.N, s.K);
  const int max_m = *std::max_element(ms.begin(), ms.end());
  if (*std::min_element(ms.begin(), ms.end()) < 1) fail("bench kernels: token counts must be >= 1");

  const RunInfo info = run_info();
  const std::string &driver = info.driver, &commit = info.commit, &date = info.date;
  // The kernel table's choice is timed beside the heuristic's ("table" columns).
  const auto dispatch = make_kernel_dispatch(opts.kernel_table, dev.name);
  const backend::KernelTable* table = dispatch->table();
  fmt::print(stderr,
             "bench kernels: {} ({} SMs, L2 {} MB), driver {}, CUDA runtime {}, cuBLASLt {}\n",
             dev.name, dev.sms, dev.l2_bytes >> 20, driver, dev.runtime, cublasLtGetVersion());

  // Issue 12's bandwidth goal (M <= 64) is a share of the copy bandwidth of the same run.
  // Without the memory for its 2 x 2 GiB buffers the GEMMs are still timed, the share not given.
  double copy_bps = NAN;
  try {
    copy_bps = measure_copy_bandwidth();
    fmt::print(stderr, "bench kernels: device-to-device copy {:.0f} GB/s\n", copy_bps * 1e-9);
  } catch (const Error& e) {
    fmt::print(stderr, "bench kernels: copy bandwidth not measured ({}); no M <= 64 share\n",
               e.what());
  }

  cudaStream_t stream;
  NFP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  GraphTimer timer(stream, opts.target_ms);
  std::vector<Record> recs;
  std::map<std::tuple<int, int, int>, std::string> best_variant;
  const auto& variants = nested_fp8_gemm_variant_names();

  for (const auto& sh : shapes) {
    const int N = sh.N, K = sh.K;
    const size_t nk = size_t(N) * K;
    const int copies = ColdWeights::copies_for(N, K, dev.l2_bytes);
    fmt::print(stderr, "bench kernels: {} [{} x {}], {} weight copies ({:.0f} MB of FP8 planes)\n",
               sh.label, N, K, copies, double(copies * nk) / 1e6);
    const ColdWeights cold(N, K, dev.l2_bytes, true, stream);
    Dev<float> row_scale(size_t(copies) * N), tensor_scale(1);
    std::vector<float> hrs(N);
    for (int n = 0; n < N; ++n) hrs[n] = std::ldexp(1.f, -(cold.host_k[n] + 8));
    const float ts = std::ldexp(1.f, -8);
    NFP_CUDA_CHECK(cudaMemcpy(tensor_scale.p, &ts, sizeof ts, cudaMemcpyHostToDevice));
    for (int c = 0; c < copies; ++c)
      NFP_CUDA_CHECK(cudaMemcpy(row_scale.p + size_t(c) * N, hrs.data(), N * sizeof(float),
                                cudaMemcpyHostToDevice));
    const __half* w16 = cold.fp16(0);
    const uint8_t* upper = cold.weight(0).upper;
    const backend::ShapeDispatch pick16 = dispatch->resolve(backend::GemmFamily::Nfp16, N, K),
                                 pick8 = dispatch->resolve(backend::GemmFamily::Nfp8, N, K);
    Dev<__half> x(size_t(max_m) * K), y(size_t(max_m) * N);
    Dev<float> y32(size_t(max_m) * N);
    Dev<uint8_t> xq(size_t(max_m) * K);
    Dev<float> xs(max_m);
    fill_random_half(x.p, size_t(max_m) * K, 0xacdc0000ull + K, 1.f, stream);
    quantize_e4m3_per_token(x.p, K, max_m, K, xq.p, xs.p, stream);
    NFP_CUDA_CHECK(cudaStreamSynchronize(stream));
    auto weight = [&](int c) { return cold.weight(c); };

    for (int M : ms) {
      const double mk = double(M) * K, mn = double(M) * N, dnk = double(nk);
      // Everything measured at this point, timed together (interleaved).
      std::vector<std::string> names;
      std::vector<std::function<void(int)>> fns;
      std::vector<double> bytes;
      auto add = [&](const std::string& kernel, std::function<void(int)> f, double b) {
        names.push_back(kernel);
        fns.push_back(std::move(f));
        bytes.push_back(b);
      };
      add(
          "cublas_fp16", [&](int c) { cublas_fp16_gemm(w16 + c * nk, N, K, x.p, y.p, M, stream); },
          2 * dnk + 2 * mk + 2 * mn);
      add(
          "nestedfp16", [&](int c) { nested_fp16_gemm(weight(c), x.p, y.p, M, stream); },
          2 * dnk + N + 2 * mk + 2 * mn);
      const double fp8_bytes = dnk + N + mk + 4.0 * M + 2 * mn;
      add(
          "nestedfp8", [&](int c) { nested_fp8_gemm(weight(c), xq.p, xs.p, y.p, M, stream); },
          fp8_bytes);
      add(
          "nestedfp8+quant",
          [&](int c) {
            quantize_e4m3_per_token(x.p, K, M, K, xq.p, xs.p, stream);
            nested_fp8_gemm(weight(c), xq.p, xs.p, y.p, M, stream);
          },
          fp8_bytes + 3 * mk + 4.0 * M);
      add(
          "cublaslt_fp8_tensor",
          [&](int c) {
            cublaslt_fp8_gemm(upper + c * nk, N, K, xq.p, y.p, M, tensor_scale.p, xs.p,
                              LtScaling::PerTensor, stream);
          },
          dnk + mk + 2 * mn);
      // Tensor parallelism's one-GPU FP8 numerics (DESIGN §3.14): a row-parallel linear's bare
      // fp32 accumulators (cuBLASLt) and, after the all-reduce (not timed here), the pass that
      // scales and rounds them: against "nestedfp8", what a rank's GEMM costs more.
      add(
          "tp_partial_fp32",
          [&](int c) {
            if (!nested_fp8_gemm_acc(weight(c), xq.p, y32.p, M, stream) && c == 0)
              fmt::print(stderr,
                         "  (tp_partial_fp32 at M={}: cuBLASLt has no FP8 -> FP32 "
                         "kernel; this times the plain fallback)\n",
                         M);
            nested_fp8_finish(y32.p, weight(c).k, xs.p, y.p, M, N, stream);
          },
          dnk + mk + 4.0 * M + 4 * mn + 4 * mn + 2 * mn);
      // The table's choices, where it covers this shape (the variant is the same index type the
      // cuda backend passes; -1 in a bucket is the heuristic again).
      if (!pick16.buckets.empty()) {
        const GemmConfig cfg{pick16.variant(M)};
        add(
            "nestedfp16_table",
            [&, cfg](int c) { nested_fp16_gemm(weight(c), x.p, y.p, M, stream, &cfg); },
            2 * dnk + N + 2 * mk + 2 * mn);
      }
      if (!pick8.buckets.empty()) {
        const GemmConfig cfg{pick8.variant(M)};
        add(
            "nestedfp8_table",
            [&, cfg](int c) { nested_fp8_gemm(weight(c), xq.p, xs.p, y.p, M, stream, &cfg); },
            fp8_bytes);
      }
      // M <= 64: the weight-read floor, what any kernel that reads the weight once needs here
      // (the FP8 plane; both planes for NestedFP16 and cuBLAS FP16's byte count).
      if (M <= 64) {
        add(
            "read_fp8_plane",
            [&](int c) { stream_read(cold.weight(c).upper, nk, nullptr, 0, dev.sms, stream); },
            dnk);
        add(
            "read_both_planes",
            [&](int c) {
              const NestedWeight w = cold.weight(c);
              stream_read(w.upper, nk, w.lower, nk, dev.sms, stream);
            },
            2 * dnk);
      }
      const bool lt_row = cublaslt_fp8_per_row_supported(N, K, M);
      if (lt_row)
        add(
            "cublaslt_fp8_row",
            [&](int c) {
              cublaslt_fp8_gemm(upper + c * nk, N, K, xq.p, y.p, M, row_scale.p + size_t(c) * N,
                                xs.p, LtScaling::PerRow, stream);
            },
            dnk + mk + 2 * mn + 4.0 * (N + M));
      if (opts.all_variants) {
        for (int v = 0; v < int(variants.size()); ++v) {
          // Skip configurations with token tiles far too small for M (64+ tiles per weight row
          // block): they are many times slower and only cost time.
          if (!nested_fp8_gemm_variant_built(v)) continue;
          const auto& name = variants[v];
          const int tile_tokens = std::atoi(name.c_str() + name.find('x') + 1);
          if (tile_tokens * 64 < M) continue;
          add(
              "nestedfp8[" + name + "]",
              [&, v](int c) {
                const GemmConfig cfg{v};
                nested_fp8_gemm(weight(c), xq.p, xs.p, y.p, M, stream, &cfg);
              },
              fp8_bytes);
        }
      }
      const auto us = timer.median_us(fns, copies);
      double best = INFINITY;
      for (size_t i = 0; i < names.size(); ++i) {
        recs.push_back({names[i], sh.label, N, K, M, us[i], bytes[i]});
        // The oracle column considers only variants within the accuracy bound (not "fa"/"fac2").
        const bool fast_accum = names[i].find("fa]") != std::string::npos ||
                                names[i].find("fac2]") != std::string::npos;
        if (names[i].rfind("nestedfp8[", 0) == 0 && !fast_accum && us[i] < best) {
          best = us[i];
          best_variant[{N, K, M}] = names[i].substr(10, names[i].size() - 11);
        }
      }
      if (!lt_row) recs.push_back({"cublaslt_fp8_row", sh.label, N, K, M, NAN, 0});
      const auto& r = recs;
      auto find = [&](const std::string& k) {
        for (auto it = r.rbegin(); it != r.rend(); ++it)
          if (it->kernel == k && it->M == M && it->N == N && it->K == K) return it->us;
        return double(NAN);
      };
      fmt::print(stderr,
                 "  M={:5d}: cuBLAS16 {:8.1f}  NFP8 {:8.1f} ({})  NFP8+q {:8.1f}  LtFP8 {:8.1f}  "
                 "LtFP8row {:8.1f}  TP fp32 partial {:8.1f} us\n",
                 M, find("cublas_fp16"), find("nestedfp8"),
                 variants[nested_fp8_gemm_heuristic(M, N, K)], find("nestedfp8+quant"),
                 find("cublaslt_fp8_tensor"), find("cublaslt_fp8_row"), find("tp_partial_fp32"));
    }
  }
  NFP_CUDA_CHECK(cudaStreamDestroy(stream));

  // ---- report -------------------------------------------------------------------------------
  auto get = [&](const std::string& k, int N, int K, int M) {
    for (auto& r : recs)
      if (r.kernel == k && r.N == N && r.K == K && r.M == M) return r.us;
    return double(NAN);
  };
  auto best_of = [&](int N, int K, int M) {
    auto it = best_variant.find({N, K, M});
    return it == best_variant.end() ? double(NAN) : get("nestedfp8[" + it->second + "]", N, K, M);
  };
  std::vector<double> g_q_lt, g_fp8_lt, g_speed, g_speed_q, g_nfp16, g_q_ltrow, g_best_lt;
  std::vector<double> g_tp_partial;  // tp_partial_fp32 / nestedfp8
  // With a kernel table, over the points its shapes cover: table and heuristic against cuBLAS.
  std::vector<double> g_t16, g_h16, g_t8, g_h8;
  std::string md;
  md += fmt::format("# Kernel benchmark: {}\n\n", dev.name);
  md +=
      fmt::format("- GPU: {} ({} SMs, L2 {} MB), driver {}, CUDA runtime {}, cuBLASLt {}\n",
                  dev.name, dev.sms, dev.l2_bytes >> 20, driver, dev.runtime, cublasLtGetVersion());
  md += fmt::format("- commit: {}; date: {}\n- command: `{}`\n", commit, date, opts.command);
  md += fmt::format(
      "- device-to-device copy bandwidth, this run: {:.0f} GB/s (the floor of the M <= 64 share "
      "below; TB/s columns count each kernel's weight, activation and output bytes once)\n",
      copy_bps * 1e-9);
  if (table)
    md += fmt::format(
        "- kernel table: {} (tuned on {}, CUDA {}, commit {}, {}); NFP16 tbl / NFP8 tbl = the "
        "table's choice, n/a where it does not cover the shape\n",
        table->source, table->gpu, table->cuda, table->commit, table->date);
  md +=
      "- method: per kernel a CUDA graph of >= 8 launches cycling over >= 4 weight copies (FP8 "
      "planes >= 3x "
      "L2); the kernels of one (shape, M) point are replayed interleaved in 5 rounds, in a new "
      "random order each round; median replay time / "
      "launches per graph. Times in microseconds.\n";
  md +=
      "- NFP8 = NestedFP8 GEMM alone (heuristic variant); NFP8+q = per-token quantization kernel + "
      "NFP8 "
      "(the unfused worst case); Lt8 = cuBLASLt FP8 per-tensor scales, Lt8row = per-row (outer "
      "vector) scales; read8 (M <= 64) = a kernel that only reads the FP8 plane once, the floor of "
      "any FP8 GEMM there; "
      "speedup = cuBLAS FP16 time / NFP8 time.\n\n";
  for (const auto& sh : shapes) {
    md += fmt::format("## {} (N={}, K={})\n\n", sh.label, sh.N, sh.K);
    md += fmt::format(
        "| M | cuBLAS16 | NFP16 | NFP8 |{} NFP8+q | Lt8 | Lt8row | read8 | NFP8+q/Lt8 | NFP8/Lt8 | "
        "speedup vs FP16 | NFP16/FP16 | NFP8 TFLOP/s | NFP8 TB/s | best variant |\n",
        table ? " NFP16 tbl | NFP8 tbl |" : "");
    md += table ? "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
                : "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (int M : ms) {
      const double c16 = get("cublas_fp16", sh.N, sh.K, M), n16 = get("nestedfp16", sh.N, sh.K, M),
                   n8 = get("nestedfp8", sh.N, sh.K, M),
                   n8q = get("nestedfp8+quant", sh.N, sh.K, M),
                   lt = get("cublaslt_fp8_tensor", sh.N, sh.K, M),
                   ltr = get("cublaslt_fp8_row", sh.N, sh.K, M),
                   t16 = get("nestedfp16_table", sh.N, sh.K, M),
                   t8 = get("nestedfp8_table", sh.N, sh.K, M);
      if (!std::isnan(t16)) g_t16.push_back(t16 / c16), g_h16.push_back(n16 / c16);
      if (!std::isnan(t8)) g_t8.push_back(t8 / lt), g_h8.push_back(n8 / lt);
      double bytes8 = 0;
      for (auto& r : recs)
        if (r.kernel == "nestedfp8" && r.N == sh.N && r.K == sh.K && r.M == M) bytes8 = r.bytes;
      const double flops = 2.0 * M * double(sh.N) * sh.K;
      g_q_lt.push_back(n8q / lt);
      g_fp8_lt.push_back(n8 / lt);
      g_tp_partial.push_back(get("tp_partial_fp32", sh.N, sh.K, M) / n8);
      g_speed.push_back(c16 / n8);
      g_speed_q.push_back(c16 / n8q);
      if (!std::isnan(ltr)) g_q_ltrow.push_back(n8q / ltr);
      g_nfp16.push_back(n16 / c16);
      const double b = best_of(sh.N, sh.K, M);
      if (!std::isnan(b)) g_best_lt.push_back(b / lt);
      auto f1 = [](double v) {
        return std::isnan(v) ? std::string("n/a") : fmt::format("{:.1f}", v);
      };
      auto f2 = [](double v) {
        return std::isnan(v) ? std::string("n/a") : fmt::format("{:.2f}", v);
      };
      auto bv = best_variant.find({sh.N, sh.K, M});
      const std::string tbl = table ? fmt::format(" {} | {} |", f1(t16), f1(t8)) : "";
      md += fmt::format(
          "| {} | {} | {} | {} |{} {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", M,
          f1(c16), f1(n16), f1(n8), tbl, f1(n8q), f1(lt), f1(ltr),
          f1(get("read_fp8_plane", sh.N, sh.K, M)), f2(n8q / lt), f2(n8 / lt), f2(c16 / n8),
          f2(n16 / c16), f1(flops / n8 * 1e-6), f2(bytes8 / n8 * 1e-6),
          bv == best_variant.end() ? std::string("-") : fmt::format("{} {:.1f}", bv->second, b));
    }
    md += "\n";
  }
  auto gm = [](const std::vector<double>& v) {
    return v.empty() ? std::string("n/a")
                     : fmt::format("{:.3f} (over {} points)", geomean(v), v.size());
  };
  std::string summary;
  summary += "## Summary (geometric means over all shapes and M)\n\n";
  summary += fmt::format(
      "- NestedFP8 incl. quantization / cuBLASLt FP8 (per-tensor): {}  (goal <= 1.05)\n",
      gm(g_q_lt));
  summary += fmt::format("- NestedFP8 GEMM alone / cuBLASLt FP8 (per-tensor): {}\n", gm(g_fp8_lt));
  summary += fmt::format(
      "- Tensor-parallel FP8 partial in fp32 (cuBLASLt accumulators, then scales and rounding) / "
      "NestedFP8 GEMM: {}\n",
      gm(g_tp_partial));
  summary +=
      fmt::format("- NestedFP8 incl. quantization / cuBLASLt FP8 (per-row): {}\n", gm(g_q_ltrow));
  summary += fmt::format("- speedup cuBLAS FP16 / NestedFP8: {}  (goal >= 1.7)\n", gm(g_speed));
  summary +=
      fmt::format("- speedup cuBLAS FP16 / NestedFP8 incl. quantization: {}\n", gm(g_speed_q));
  summary += fmt::format("- NestedFP16 / cuBLAS FP16: {}  (goal <= 1.05)\n", gm(g_nfp16));
  if (table) {
    summary += fmt::format(
        "- with the kernel table, NestedFP16 / cuBLAS FP16: {} (heuristic on the same points: "
        "{})\n",
        gm(g_t16), gm(g_h16));
    summary += fmt::format(
        "- with the kernel table, NestedFP8 GEMM / cuBLASLt FP8 (per-tensor): {} (heuristic on the "
        "same points: {})\n",
        gm(g_t8), gm(g_h8));
  }
  if (opts.all_variants)
    summary += fmt::format(
        "- best NestedFP8 variant per point / cuBLASLt FP8 (per-tensor), an oracle heuristic over "
        "the "
        "variants that meet the 1e-3 accuracy bound (no 'fa'): {}\n",
        gm(g_best_lt));
  // M <= 64: bytes moved / time as a share of the copy bandwidth, per kernel over its points.
  nlohmann::json shares = nlohmann::json::object();
  summary += std::isnan(copy_bps)
                 ? std::string(
                       "- M <= 64, share of the copy bandwidth: not measured (the copy "
                       "could not be timed; see the log)\n")
                 : fmt::format(
                       "- M <= 64, bytes / time as a share of the copy bandwidth ({:.0f} GB/s), "
                       "min / geomean / max (goal: both Nested modes >= 0.90):\n",
                       copy_bps * 1e-9);
  const std::pair<const char*, const char*> share_kernels[] = {
      {"nestedfp16", "NestedFP16 (heuristic)"},
      {"nestedfp16_table", "NestedFP16 (table)"},
      {"nestedfp8", "NestedFP8 GEMM (heuristic)"},
      {"nestedfp8_table", "NestedFP8 GEMM (table)"},
      {"cublas_fp16", "cuBLAS FP16"},
      {"cublaslt_fp8_tensor", "cuBLASLt FP8"}};
  for (const auto& [kernel, label] : share_kernels) {
    if (std::isnan(copy_bps)) break;
    std::vector<double> s;
    for (const auto& r : recs)
      if (r.kernel == kernel && r.M <= 64 && !std::isnan(r.us) && r.us > 0 && r.bytes > 0)
        s.push_back(r.bytes / (r.us * 1e-6) / copy_bps);
    if (s.empty()) continue;
    const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
    const bool nested = std::string(kernel).rfind("nested", 0) == 0;
    summary +=
        fmt::format("  - {}: {:.2f} / {:.2f} / {:.2f} over {} points{}\n", label, *lo, geomean(s),
                    *hi, s.size(), nested ? (*lo >= 0.90 ? " (met)" : " (missed)") : "");
    shares[kernel] = {{"min", *lo}, {"geomean", geomean(s)}, {"max", *hi}, {"points", s.size()}};
  }
  // How much of the copy bandwidth a weight read alone reaches at these sizes, and each kernel's
  // time against it (the FP8 kernels against the one-plane read, the FP16 ones against both).
  nlohmann::json floors = nlohmann::json::object();
  const std::tuple<const char*, const char*, const char*> floor_kernels[] = {
      {"nestedfp16", "read_both_planes", "NestedFP16 (heuristic)"},
      {"nestedfp16_table", "read_both_planes", "NestedFP16 (table)"},
      {"cublas_fp16", "read_both_planes", "cuBLAS FP16"},
      {"nestedfp8", "read_fp8_plane", "NestedFP8 GEMM (heuristic)"},
      {"nestedfp8_table", "read_fp8_plane", "NestedFP8 GEMM (table)"},
      {"cublaslt_fp8_tensor", "read_fp8_plane", "cuBLASLt FP8"}};
  std::vector<double> read_share;
  for (const auto& r : recs)
    if ((r.kernel == "read_fp8_plane" || r.kernel == "read_both_planes") && r.us > 0 &&
        !std::isnan(copy_bps))
      read_share.push_back(r.bytes / (r.us * 1e-6) / copy_bps);
  if (!read_share.empty()) {
    const auto [lo, hi] = std::minmax_element(read_share.begin(), read_share.end());
    summary += fmt::format(
        "- M <= 64, the weight read alone (a kernel that only streams the weight bytes, same "
        "protocol) reaches {:.2f} / {:.2f} / {:.2f} of the copy bandwidth (min / geomean / max over "
        "{} points): the most any GEMM could reach at these sizes. Time / that read's time, "
        "min / geomean / max:\n",
        *lo, geomean(read_share), *hi, read_share.size());
    floors["read_share_of_copy"] = {{"min", *lo}, {"geomean", geomean(read_share)}, {"max", *hi}};
  }
  for (const auto& [kernel, floor, label] : floor_kernels) {
    if (read_share.empty()) break;  // no copy bandwidth: the heading above was not printed
    std::vector<double> v;
    for (const auto& r : recs)
      if (r.kernel == kernel && r.M <= 64 && r.us > 0) {
        const double f = get(floor, r.N, r.K, r.M);
        if (f > 0) v.push_back(r.us / f);
      }
    if (v.empty()) continue;
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    summary += fmt::format("  - {}: {:.2f} / {:.2f} / {:.2f}\n", label, *lo, geomean(v), *hi);
    floors[kernel] = {{"min", *lo}, {"geomean", geomean(v)}, {"max", *hi}, {"floor", floor}};
  }
  md += summary;

  nlohmann::json j;
  j["header"] = {{"gpu", dev.name},
                 {"sms", dev.sms},
                 {"l2_bytes", dev.l2_bytes},
                 {"driver", driver},
                 {"cuda_runtime", dev.runtime},
                 {"cublaslt", cublasLtGetVersion()},
                 {"git_commit", commit},
                 {"command", opts.command},
                 {"date", date},
                 {"copy_bandwidth_gbs", copy_bps * 1e-9},
                 {"method",
                  "CUDA graph replays over >= 4 weight copies (FP8 planes >= 3x L2), kernels of a "
                  "point interleaved in 5 rounds; median replay / launches"}};
  j["records"] = nlohmann::json::array();
  for (auto& r : recs) {
    nlohmann::json o = {
        {"kernel", r.kernel}, {"shape", r.shape}, {"N", r.N}, {"K", r.K}, {"M", r.M}};
    if (std::isnan(r.us)) {
      o["median_us"] = nullptr;
      o["note"] = "not supported by this library version";
    } else {
      o["median_us"] = r.us;
      o["tflops"] = 2.0 * r.M * double(r.N) * r.K / r.us * 1e-6;
      o["tbps"] = r.bytes / r.us * 1e-6;
    }
    j["records"].push_back(o);
  }
  j["summary"] = {
      {"nestedfp8_quant_over_cublaslt_fp8", geomean(g_q_lt)},
      {"nestedfp8_over_cublaslt_fp8", geomean(g_fp8_lt)},
      {"tp_partial_fp32_over_nestedfp8", geomean(g_tp_partial)},
      {"nestedfp8_quant_over_cublaslt_fp8_row", g_q_ltrow.empty() ? NAN : geomean(g_q_ltrow)},
      {"cublas_fp16_over_nestedfp8", geomean(g_speed)},
      {"cublas_fp16_over_nestedfp8_quant", geomean(g_speed_q)}};
  j["summary"]["nestedfp16_over_cublas_fp16"] = geomean(g_nfp16);
  if (table) {
    j["header"]["kernel_table"] = {{"file", table->source},
                                   {"gpu", table->gpu},
                                   {"cuda", table->cuda},
                                   {"commit", table->commit},
                                   {"date", table->date}};
    j["summary"]["table_nestedfp16_over_cublas_fp16"] = g_t16.empty() ? NAN : geomean(g_t16);
    j["summary"]["table_points_heuristic_nestedfp16_over_cublas_fp16"] =
        g_h16.empty() ? NAN : geomean(g_h16);
    j["summary"]["table_nestedfp8_over_cublaslt_fp8"] = g_t8.empty() ? NAN : geomean(g_t8);
    j["summary"]["table_points_heuristic_nestedfp8_over_cublaslt_fp8"] =
        g_h8.empty() ? NAN : geomean(g_h8);
  }
  if (opts.all_variants) j["summary"]["best_variant_over_cublaslt_fp8"] = geomean(g_best_lt);
  j["summary"]["m64_copy_bandwidth_share"] = shares;
  j["summary"]["m64_over_weight_read"] = floors;

  std::filesystem::create_directories(opts.out_dir);
  const std::string base =
      fmt::format("{}/{}-{}-kernels", opts.out_dir, date, backend::gpu_slug(dev.name));
  std::ofstream(base + ".md") << md;
  std::ofstream(base + ".json") << j.dump(1) << "\n";
  fmt::print("{}", md);
  fmt::print(stderr, "bench kernels: wrote {}.md and {}.json\n", base, base);
  return 0;
}

}  // namespace nestedfp::cuda
