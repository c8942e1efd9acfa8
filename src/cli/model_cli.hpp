#pragma once
// Shared by the subcommands that run a model (serve, generate, eval ppl, eval layers): the
// options that pick the backend and load the weights, and the runner they build.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <thread>

#include "engine/model_runner.hpp"
#include "engine/tp_executor.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/speculative.hpp"
#include "nestedfp/step.hpp"

namespace nestedfp::cli {

// stdout carries the command's output (generated text, JSON); logs go to stderr.
inline void log_to_stderr() {
  const auto level = spdlog::get_level();
  auto logger = spdlog::get("stderr");
  if (!logger) logger = spdlog::stderr_color_mt("stderr");
  spdlog::set_default_logger(logger);
  spdlog::set_level(level);
}

inline Precision parse_precision(const std::string& s) {
  if (s == "fp16") return Precision::FP16;
  if (s == "fp8") return Precision::FP8;
  fail("unknown precision '{}' (use fp16 or fp8)", s);
}

struct ModelArgs {
  std::string model;                 // Hugging Face model directory (config.json [+ weights])
  std::string device = "auto";       // auto | cpu | cuda
  std::string weights = "nested";    // nested | fp16
  std::string load_format = "auto";  // auto (safetensors) | dummy
  std::string nested_scale = "none";
  uint64_t seed = 0;  // dummy weights
  int threads = 0, gpu = 0;
  double gpu_memory_utilization = 0.90;
  bool enforce_eager = false;
  int max_num_batched_tokens = 2048, max_num_seqs = 256, max_model_len = 0, kv_blocks = 0;
  int tensor_parallel_size = 1;       // ranks (GPUs --gpu .. --gpu + N - 1; threads on cpu)
  std::string tp_fp8_numerics = "one-gpu";  // one-gpu | per-rank (RunnerOptions)
  std::string kernel_table = "auto";  // FILE | auto | none (BackendOptions::kernel_table)
};

// --kernel-table, shared by the model commands and `bench kernels`.
inline void add_kernel_table_option(CLI::App& sub, std::string& spec) {
  sub.add_option(
         "--kernel-table", spec,
         "GEMM kernel table of `nestedfp tune`: FILE | auto (bench/kernel-tables/<gpu>.json "
         "near the binary or in $NESTEDFP_KERNEL_TABLE_DIR, if there is one) | none "
         "(the heuristics)")
      ->capture_default_str();
}

// The options every model command shares. `serving`: the scheduler limits too.
inline void add_model_options(CLI::App& sub, ModelArgs& a, bool serving) {
  sub.add_option("MODEL", a.model, "Hugging Face model directory")->required();
  sub.add_option("--device", a.device,
                 "auto (cuda when a Hopper GPU is present, else cpu) | cpu | cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
  sub.add_option("--weights", a.weights,
                 "nested (one copy, FP16 and FP8) | fp16 (plain FP16 engine, the baseline)")
      ->check(CLI::IsMember({"nested", "fp16"}))
      ->capture_default_str();
  sub.add_option("--load-format", a.load_format,
                 "auto (safetensors) | dummy (random weights for config.json)")
      ->check(CLI::IsMember({"auto", "dummy"}))
      ->capture_default_str();
  sub.add_option("--nested-scale", a.nested_scale, "per-row power-of-two scales: none|channel")
      ->check(CLI::IsMember({"none", "channel"}))
      ->capture_default_str();
  sub.add_option("--threads", a.threads, "cpu backend threads (0: all cores)");
  sub.add_option("--gpu", a.gpu, "CUDA device ordinal")->capture_default_str();
  sub.add_option("--gpu-memory-utilization", a.gpu_memory_utilization,
                 "share of GPU memory for weights, scratch and the KV cache")
      ->check(CLI::Range(0.05, 1.0))
      ->capture_default_str();
  sub.add_flag("--enforce-eager", a.enforce_eager,
               "launch every kernel of every step (no CUDA graphs for decode steps)");
  sub.add_option("--kv-blocks", a.kv_blocks,
                 "KV cache blocks of 16 tokens (0: from free GPU memory, or 256 MiB on cpu)");
  sub.add_option("--max-model-len", a.max_model_len,
                 "context length (0: the model's, capped by the KV cache)");
  sub.add_option("--tensor-parallel-size,--tp", a.tensor_parallel_size,
                 "ranks the model is split over: GPUs --gpu..--gpu+N-1 (NCCL), or N groups of "
                 "threads on the cpu backend")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub.add_option("--tp-fp8-numerics", a.tp_fp8_numerics,
                 "FP8 steps under tensor parallelism: one-gpu (o's and down's split inputs take "
                 "the whole row's per-token scale, partial sums added in fp32: what one GPU "
                 "computes) | per-rank (each slice its own scale, fp16 partial sums, as vLLM: "
                 "fewer and smaller collectives)")
      ->check(CLI::IsMember({"one-gpu", "per-rank"}))
      ->capture_default_str();
  add_kernel_table_option(sub, a.kernel_table);
  if (serving) {
    sub.add_option("--max-num-batched-tokens", a.max_num_batched_tokens, "tokens per engine step")
        ->capture_default_str();
    sub.add_option("--max-num-seqs", a.max_num_seqs, "sequences per step and running at once")
        ->capture_default_str();
  }
}

// --speculative (serve, generate, bench spec): FP8 drafts verified in FP16 (speculative.hpp).
inline void add_speculative_option(CLI::App& sub, std::string& spec) {
  sub.add_option("--speculative", spec,
                 "self-speculative decoding: off | fp8[:k=N] (FP8 drafts N tokens, FP16 verifies; "
                 "fp8 = k=4) | fp8:k=auto[,max=M][,cost=C] (k per sequence from its acceptance)")
      ->capture_default_str();
}

// Parses the spec (Error with the accepted forms) and refuses weights without an FP8 plane.
inline SpeculativeConfig check_speculative(const std::string& spec, const ModelArgs& a) {
  SpeculativeConfig c = parse_speculative(spec);
  if (c.enabled && a.weights == "fp16")
    fail(
        "--speculative {} drafts with the FP8 plane of nested weights, and --weights fp16 has "
        "none: use --weights nested, or drop --speculative",
        spec);
  return c;
}

// The backend(s) and the streamed weights of `a`: one ModelRunner, or a TpExecutor over
// --tensor-parallel-size ranks. storage: FP8 baselines (eval only).
inline std::unique_ptr<ModelExecutor> build_runner(
    const ModelArgs& a, engine::LinearStorage storage = engine::LinearStorage::Nested) {
  backend::BackendOptions bo;
  bo.device = a.device, bo.cpu_threads = a.threads, bo.gpu = a.gpu;
  bo.kernel_table = a.kernel_table;
  engine::LoadOptions lo;
  lo.model_dir = a.model;
  lo.dummy = a.load_format == "dummy";
  lo.seed = a.seed;
  lo.scale_mode = format::parse_scale_mode(a.nested_scale);
  lo.nested = a.weights == "nested";
  lo.storage = storage;
  engine::RunnerOptions ro;
  ro.num_kv_blocks = a.kv_blocks;
  ro.max_model_len = a.max_model_len;
  ro.gpu_memory_utilization = a.gpu_memory_utilization;
  ro.max_num_batched_tokens = a.max_num_batched_tokens;
  ro.max_num_seqs = a.max_num_seqs;
  ro.cuda_graphs = !a.enforce_eager;
  ro.tp_fp8_one_gpu_numerics = a.tp_fp8_numerics == "one-gpu";
  const int tp = a.tensor_parallel_size;
  if (tp <= 1) return engine::ModelRunner::load(backend::make_backend(bo), lo, ro);
  // Every rank on the device kind auto picks for the first GPU, so that a missing GPU is an
  // error naming it rather than a rank silently on the cpu.
  if (bo.device == "auto")
    bo.device = backend::describe_auto_device().starts_with("cuda") ? "cuda" : "cpu";
  if (bo.device == "cpu") {  // the cores are shared out between the ranks
    const int cores =
        a.threads > 0 ? a.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    bo.cpu_threads = std::max(1, cores / tp);
  }
  return engine::load_tensor_parallel(
      tp,
      [bo](int r) {
        backend::BackendOptions o = bo;
        o.gpu = bo.gpu + r;
        return backend::make_backend(o);
      },
      lo, ro);
}

// The runner behind an executor of build_runner (rank 0's under tensor parallelism): its backend,
// config and counters.
inline engine::ModelRunner& runner_of(ModelExecutor& ex) { return *engine::ranks_of(ex).front(); }

}  // namespace nestedfp::cli
