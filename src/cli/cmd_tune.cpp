// `nestedfp tune (--model DIR | --shapes N,K;...) [--tp N] [--m LIST] [--kernel-set-only]
// --out FILE.json`: measures every built GEMM configuration per (shape, M bucket) and writes the
// fastest as a kernel table (docs/MEASURING.md §5.7; body in src/bench/cuda/tune.cpp). The CPU
// build keeps the command and says it needs the cuda build and a GPU.
#include <fmt/format.h>

#include <string>
#include <vector>

#include "bench/tune_shapes.hpp"
#include "cli/command.hpp"
#include "cli/list_args.hpp"
#include "cli/progress.hpp"
#include "nestedfp/backend.hpp"
#include "nestedfp/error.hpp"

#if NESTEDFP_HAVE_CUDA
#include <cuda_runtime.h>

#include "bench/cuda/tune.hpp"
#endif

namespace nestedfp::cli {
namespace {

// MEASURING.md §5.1's token counts, and 8 (decode batches of 2..8, where a token tile of 8
// streams the weight once): `bench kernels` then times every point at a tuned bucket.
constexpr const char* kDefaultMs = "1,8,16,32,64,128,256,512,1024,2048,4096,8192";

struct Args {
  bench::TuneShapeArgs shapes;
  std::string ms = kDefaultMs, out;
  bool kernel_set_only = false, merge = false;
  double target_ms = 20;
  int gpu = 0;
};

const Registration reg(
    "tune",
    "measure every GEMM configuration per weight shape and token count; write a kernel table "
    "(needs a Hopper GPU)",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<Args>();
      sub.add_option("--model", a->shapes.model,
                     "Hugging Face model directory: its linear layers' shapes (config.json only)");
      sub.add_option("--shapes", a->shapes.shapes,
                     "weight shapes N,K;N,K;... (or NxK,NxK,...) instead of --model");
      sub.add_option("--tp,--tensor-parallel-size", a->shapes.tp,
                     "shapes of one rank at this tensor-parallel size (with --model)")
          ->check(CLI::Range(1, 64))
          ->capture_default_str();
      sub.add_option("--m", a->ms, "token counts = the table's M buckets (comma list, 1..8 ranges)")
          ->capture_default_str();
      sub.add_flag("--kernel-set-only", a->kernel_set_only,
                   "only configurations of the default kernel set, so that every build can run "
                   "the table's choices (else every configuration this build has)");
      sub.add_option("--out", a->out, "the table to write (.json; a summary .md goes beside it)")
          ->required();
      sub.add_flag("--merge", a->merge,
                   "keep the shapes of an existing --out table that this run does not tune (one "
                   "GPU's table over several models and --tp runs)");
      sub.add_option("--target-ms", a->target_ms, "GPU time per candidate and point")
          ->check(CLI::PositiveNumber)
          ->capture_default_str();
      sub.add_option("--gpu", a->gpu, "CUDA device ordinal")->capture_default_str();
      return [a]() -> int {
        // Arguments first: their errors do not need a GPU.
        const std::vector<bench::GemmShape> shapes = bench::tune_shapes(a->shapes);
        const std::vector<int> ms = positive_ints(a->ms, "--m");
        if (a->out.size() < 6 || a->out.substr(a->out.size() - 5) != ".json")
          fail("tune: --out {}: the table is a .json file", a->out);
        std::string cmd = "nestedfp tune";
        if (!a->shapes.model.empty()) cmd += " --model " + a->shapes.model;
        if (!a->shapes.shapes.empty()) cmd += " --shapes '" + a->shapes.shapes + "'";
        if (a->shapes.tp != 1) cmd += fmt::format(" --tp {}", a->shapes.tp);
        if (a->ms != kDefaultMs) cmd += " --m " + a->ms;
        if (a->kernel_set_only) cmd += " --kernel-set-only";
        if (a->merge) cmd += " --merge";
        if (a->target_ms != 20) cmd += fmt::format(" --target-ms {}", a->target_ms);
        cmd += " --out " + a->out;
#if NESTEDFP_HAVE_CUDA
        const std::string dev = backend::describe_auto_device();
        if (!dev.starts_with("cuda")) fail("tune: needs a Hopper GPU; {}", dev);
        if (cudaSetDevice(a->gpu) != cudaSuccess)
          fail("tune: --gpu {}: no such CUDA device", a->gpu);
        cuda::TuneOptions o;
        for (const auto& s : shapes) o.shapes.push_back({s.N, s.K, s.label});
        o.ms = ms;
        o.out = a->out;
        o.command = cmd;
        o.kernel_set_only = a->kernel_set_only;
        o.merge = a->merge;
        o.target_ms = a->target_ms;
        ProgressBar bar("tune");
        o.progress = [&bar](int done, int total, const std::string& line) {
          bar.message(line);
          bar.update(double(done) / total, fmt::format("{} / {} points", done, total));
          if (done == total) bar.finish();  // before the summary on stdout
        };
        return cuda::tune_kernels(o);
#else
        (void)shapes, (void)ms;
        fail(
            "tune: this nestedfp was built without CUDA; tuning times the GEMM kernels on a Hopper "
            "GPU: build the `cuda` preset there (scripts/gpu-check.sh) and run `{}`",
            cmd);
#endif
      };
    },
    75);

}  // namespace
}  // namespace nestedfp::cli
