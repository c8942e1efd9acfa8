#pragma once
// Shared by the subcommands that run a model on the cpu backend (generate, eval ...).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "engine/model_runner.hpp"
#include "nestedfp/error.hpp"
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

// Loads MODEL_DIR (config, weights nested with `scale`, or stored as an FP8 baseline) onto the
// cpu backend with enough KV blocks for `max_tokens` tokens of one sequence.
inline std::unique_ptr<engine::ModelRunner> load_cpu_runner(
    const std::string& dir, const std::string& scale, int max_tokens,
    engine::LinearStorage storage = engine::LinearStorage::Nested) {
  auto weights = engine::ModelWeights::load(dir, format::parse_scale_mode(scale), storage);
  engine::RunnerOptions o;
  const int len = std::min(max_tokens, weights.config.max_position_embeddings);
  o.num_kv_blocks = std::max(1, (len + kKvBlockSize - 1) / kKvBlockSize);
  return std::make_unique<engine::ModelRunner>(backend::make_cpu_backend(), weights, o);
}

}  // namespace nestedfp::cli
