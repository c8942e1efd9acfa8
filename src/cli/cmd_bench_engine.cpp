// `nestedfp bench engine MODEL --load-format dummy`: the engine offline, no HTTP (docs/MEASURING.md
// §5.5). Plain FP16 (--weights fp16), NestedFP16 and NestedFP8 in one run: decode step time per
// batch against the weight-bytes / copy-bandwidth floor, prefill throughput, the precision-switch
// cost, a per-op breakdown, offline throughput through the Engine, memory, and a goals table.
// Writes engine.{json,md,png} (engine-eager.* with --enforce-eager) to --out; the measuring is
// src/bench/engine_bench.*.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "bench/engine_bench.hpp"
#include "bench/provenance.hpp"
#include "cli/bench_command.hpp"
#include "cli/list_args.hpp"
#include "cli/model_cli.hpp"

#if NESTEDFP_HAVE_CUDA
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"
#endif

namespace nestedfp::cli {
namespace {

struct EngineBenchArgs {
  ModelArgs m;
  bench::EngineBenchOptions o;
  std::string weights_list = "fp16,nested", batches = "1,8,32,128,256", switch_batches = "1,64",
              profile_batches = "1,64", out = "build/bench-engine";
};

std::vector<std::string> str_list(const std::string& s) {
  std::vector<std::string> v;
  for (size_t i = 0; i <= s.size();) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    if (j > i) v.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return v;
}

int run(EngineBenchArgs& a, const std::string& command) {
  log_to_stderr();
  bench::EngineBenchOptions o = a.o;
  o.weights = str_list(a.weights_list);
  for (const std::string& w : o.weights)
    if (w != "fp16" && w != "nested")
      fail("bench engine: --weights-list takes fp16 and/or nested, got '{}'", w);
  o.batches = positive_ints(a.batches, "--batch");
  o.switch_batches = a.switch_batches.empty() ? std::vector<int>{}
                                              : positive_ints(a.switch_batches, "--switch-batch");
  o.profile_batches = a.profile_batches.empty()
                          ? std::vector<int>{}
                          : positive_ints(a.profile_batches, "--profile-batch");
  o.max_num_batched_tokens = a.m.max_num_batched_tokens, o.max_num_seqs = a.m.max_num_seqs;
  nlohmann::json dev = {{"name", "cpu"}};
#if NESTEDFP_HAVE_CUDA
  if (a.m.device != "cpu") {
    const cuda::DeviceInfo d = cuda::device_info();
    dev = {{"name", d.name},
           {"sms", d.sms},
           {"cuda_runtime", d.runtime},
           {"cuda_driver_api", d.driver}};
    o.copy_bandwidth = cuda::measure_copy_bandwidth();
    spdlog::info("copy bandwidth {:.0f} GB/s", o.copy_bandwidth / 1e9);
  }
#endif
  const std::string commit = bench::result_commit();
  nlohmann::json header = {{"model", a.m.model},
                           {"load_format", a.m.load_format},
                           {"device", dev},
                           {"git_commit", commit},
                           {"command", command},
                           {"enforce_eager", a.m.enforce_eager},
                           {"tensor_parallel_size", a.m.tensor_parallel_size},
                           {"tp_fp8_numerics", a.m.tp_fp8_numerics}};
  const auto factory = [&](const std::string& weights, int kv_blocks, int max_num_seqs,
                           int max_tokens) {
    ModelArgs m = a.m;
    m.weights = weights, m.kv_blocks = kv_blocks, m.max_num_seqs = max_num_seqs;
    m.max_num_batched_tokens = max_tokens;
    return build_runner(m);
  };
  const nlohmann::json j = bench::run_engine_bench(o, factory, header);
  std::filesystem::create_directories(a.out);
  const std::string stem =
      a.out + (a.m.enforce_eager ? "/engine-eager" : "/engine") +
      (a.m.tensor_parallel_size > 1 ? fmt::format("-tp{}", a.m.tensor_parallel_size) : "") +
      (a.m.tensor_parallel_size > 1 && a.m.tp_fp8_numerics != "one-gpu" ? "-" + a.m.tp_fp8_numerics
                                                                        : "");
  std::ofstream(stem + ".json") << j.dump(2) << "\n";
  const std::string md = bench::engine_bench_markdown(j);
  std::ofstream(stem + ".md") << md;
  bench::engine_bench_png(j, stem + ".png");
  std::printf("%s", md.c_str());
  spdlog::info("wrote {}.json, .md and .png", stem);
  return 0;
}

const BenchRegistration reg(
    "engine",
    "offline engine benchmark: decode vs the floor, prefill, precision switch, per-op breakdown, "
    "offline throughput, memory",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<EngineBenchArgs>();
      a->m.load_format = "dummy";
      add_model_options(sub, a->m, true);
      sub.add_option("--weights-list", a->weights_list,
                     "engines to compare: fp16 (plain) and/or nested (NestedFP16 + NestedFP8)")
          ->capture_default_str();
      sub.add_option("--batch", a->batches, "decode batch sizes")->capture_default_str();
      sub.add_option("--context", a->o.context, "tokens of context per sequence before decoding")
          ->capture_default_str();
      sub.add_option("--steps", a->o.steps, "timed decode steps per point (median reported)")
          ->capture_default_str();
      sub.add_option("--warmup", a->o.warmup, "untimed decode steps before each point")
          ->capture_default_str();
      sub.add_option("--prefill-steps", a->o.prefill_steps, "timed prefill steps per engine")
          ->capture_default_str();
      sub.add_option("--prefill-chunk", a->o.prefill_chunk,
                     "tokens per prefill step (one fresh sequence each)")
          ->capture_default_str();
      sub.add_option("--switch-batch", a->switch_batches,
                     "batches for the precision-switch cost ('' skips)")
          ->capture_default_str();
      sub.add_option("--switch-steps", a->o.switch_steps, "steps per switch pattern")
          ->capture_default_str();
      sub.add_option("--profile-batch", a->profile_batches,
                     "batches for the per-op breakdown of eager steps ('' skips)")
          ->capture_default_str();
      sub.add_option("--profile-steps", a->o.profile_steps, "profiled steps per point")
          ->capture_default_str();
      sub.add_option("--offline-requests", a->o.offline_requests,
                     "offline run through the Engine: requests (0 skips)")
          ->capture_default_str();
      sub.add_option("--offline-input", a->o.offline_input, "offline prompt tokens (random ids)")
          ->capture_default_str();
      sub.add_option("--offline-output", a->o.offline_output, "offline output tokens (ignore_eos)")
          ->capture_default_str();
      sub.add_option("--out", a->out, "folder for engine.json, engine.md and engine.png")
          ->capture_default_str();
      return [a] {
        std::string cmd = fmt::format(
            "nestedfp bench engine {} --load-format {} --weights-list {} --batch {} --context {} "
            "--steps {} --warmup {} --prefill-chunk {} --prefill-steps {} --switch-batch '{}' "
            "--switch-steps {} --profile-batch "
            "'{}' --profile-steps {} --offline-requests {} --offline-input {} --offline-output {} "
            "--max-num-batched-tokens {} --max-num-seqs {} --tensor-parallel-size {}",
            a->m.model, a->m.load_format, a->weights_list, a->batches, a->o.context, a->o.steps,
            a->o.warmup, a->o.prefill_chunk, a->o.prefill_steps, a->switch_batches,
            a->o.switch_steps, a->profile_batches, a->o.profile_steps, a->o.offline_requests,
            a->o.offline_input, a->o.offline_output, a->m.max_num_batched_tokens, a->m.max_num_seqs,
            a->m.tensor_parallel_size);
        if (a->m.enforce_eager) cmd += " --enforce-eager";
        if (a->m.tensor_parallel_size > 1) cmd += " --tp-fp8-numerics " + a->m.tp_fp8_numerics;
        return run(*a, cmd);
      };
    },
    20);

}  // namespace
}  // namespace nestedfp::cli
