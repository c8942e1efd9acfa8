// `nestedfp bench kernels [--shapes NxK,...] [--m 1,16,...] [--out DIR] [--all-variants]`:
// GEMM kernel benchmark on the GPU (body in src/bench/cuda/bench_kernels.cpp). The CPU build
// keeps the command and says it was built without CUDA.
#include <string>
#include <vector>

#include "cli/bench_command.hpp"
#include "cli/model_cli.hpp"
#include "nestedfp/error.hpp"

#if NESTEDFP_HAVE_CUDA
#include "bench/cuda/bench_kernels.hpp"
#endif

namespace nestedfp::cli {
namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    const std::string item =
        s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

int parse_int(const std::string& s, const char* what) {
  try {
    size_t pos = 0;
    const int v = std::stoi(s, &pos);
    if (pos == s.size() && v > 0) return v;
  } catch (const std::exception&) {
  }
  fail("bench kernels: bad {} '{}' (want a positive integer)", what, s);
}

const BenchRegistration reg(
    "kernels", "time the NestedFP16/NestedFP8 GEMMs against cuBLAS (needs a Hopper GPU)",
    [](CLI::App& app) {
      struct Opts {
        std::string shapes, ms, out = "bench/results", kernel_table = "auto";
        bool all_variants = false;
        double target_ms = 60;
      };
      auto o = std::make_shared<Opts>();
      app.add_option("--shapes", o->shapes,
                     "weight shapes NxK, comma separated (default: docs/MEASURING.md §5.1 models)");
      app.add_option("--m", o->ms, "token counts, comma separated (default: 1,16,...,8192)");
      app.add_option("--out", o->out, "directory for <date>-<gpu>-kernels.{md,json}")
          ->capture_default_str();
      app.add_flag("--all-variants", o->all_variants,
                   "also time every NestedFP8 kernel configuration");
      app.add_option("--target-ms", o->target_ms, "GPU time per measurement")
          ->capture_default_str();
      add_kernel_table_option(app, o->kernel_table);
      return std::function<int()>([o, &app]() -> int {
        std::vector<std::pair<int, int>> shapes;
        for (const auto& s : split_list(o->shapes)) {
          const size_t x = s.find('x');
          if (x == std::string::npos)
            fail("bench kernels: bad shape '{}' (want NxK, e.g. 4096x14336)", s);
          shapes.emplace_back(parse_int(s.substr(0, x), "N"), parse_int(s.substr(x + 1), "K"));
        }
        std::vector<int> ms;
        for (const auto& s : split_list(o->ms)) ms.push_back(parse_int(s, "token count"));
#if NESTEDFP_HAVE_CUDA
        cuda::BenchKernelsOptions opts;
        opts.shapes = shapes;
        opts.ms = ms;
        opts.out_dir = o->out;
        opts.all_variants = o->all_variants;
        opts.target_ms = o->target_ms;
        opts.kernel_table = o->kernel_table;
        std::string cmd = "nestedfp bench kernels";
        if (!o->shapes.empty()) cmd += " --shapes " + o->shapes;
        if (!o->ms.empty()) cmd += " --m " + o->ms;
        cmd += " --out " + o->out;
        if (o->all_variants) cmd += " --all-variants";
        if (o->target_ms != 60) cmd += " --target-ms " + std::to_string(o->target_ms);
        if (o->kernel_table != "auto") cmd += " --kernel-table " + o->kernel_table;
        opts.command = cmd;
        return cuda::bench_kernels(opts);
#else
        (void)app;
        fail(
            "bench kernels: this nestedfp was built without CUDA; build the `cuda` preset on a "
            "machine with a Hopper "
            "GPU (scripts/gpu-check.sh does it and runs this benchmark)");
#endif
      });
    },
    10);

}  // namespace
}  // namespace nestedfp::cli
