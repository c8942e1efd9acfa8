// `nestedfp bench engine MODEL --load-format dummy`: offline engine benchmark (no HTTP) — decode
// step time per batch size at a fixed context, for the plain FP16 engine (--weights fp16),
// NestedFP16 and NestedFP8, next to the weight-bytes / copy-bandwidth floor measured in the same
// run; prefill throughput on the way. Writes engine.{json,md} (engine-eager.* with
// --enforce-eager) to --out. Decode steps replay CUDA graphs unless --enforce-eager.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/bench_command.hpp"
#include "cli/model_cli.hpp"
#include "nestedfp/config.hpp"

#if NESTEDFP_HAVE_CUDA
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/ops.hpp"
#endif

namespace nestedfp::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct EngineBenchArgs {
  ModelArgs m;
  std::string weights_list = "fp16,nested", batches = "1,64", out = "build/bench-engine";
  int context = 1024, steps = 20, warmup = 3;
};

std::vector<int> int_list(const std::string& s) {
  std::vector<int> v;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    try {
      v.push_back(std::stoi(s.substr(i, j - i)));
    } catch (const std::exception&) {
      fail("bench engine: bad number '{}' in '{}'", s.substr(i, j - i), s);
    }
    if (v.back() <= 0) fail("bench engine: '{}' must be positive", v.back());
    i = j + 1;
  }
  return v;
}

// Bytes a decode step must read: every linear weight once (2 bytes per parameter in FP16 — nested
// planes or plain —, 1 in FP8 for nested weights), plus the fp16 lm_head. Per GPU under tensor
// parallelism: the decoder's linears are split over `tp` ranks, lm_head is replicated.
double weight_bytes(const io::ModelConfig& c, bool fp8_nested, int tp) {
  const double H = c.hidden_size, I = c.intermediate_size, qd = double(c.num_heads) * c.head_dim,
               kvd = double(c.num_kv_heads) * c.head_dim;
  const double per_layer = H * (qd + 2 * kvd) + qd * H + 3 * H * I;
  return per_layer * c.num_layers * (fp8_nested ? 1.0 : 2.0) / tp + 2.0 * c.vocab_size * H;
}

struct Seq {
  int64_t id;
  std::vector<int32_t> blocks;
  int32_t len = 0, last = 0;
};

// Prefills `B` sequences of `context` random tokens in steps of at most `budget` tokens; returns
// tokens/s.
double prefill(ModelExecutor& ex, std::vector<Seq>& seqs, int context, int budget, int vocab,
               std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  size_t next = 0;
  int64_t tokens = 0;
  const auto t0 = Clock::now();
  while (next < seqs.size() ||
         std::any_of(seqs.begin(), seqs.end(), [&](const Seq& s) { return s.len < context; })) {
    StepInput in;
    int left = budget;
    for (auto& s : seqs) {
      if (s.len >= context || left == 0) continue;
      const int n = std::min(left, context - s.len);
      SeqChunk c;
      c.seq_id = s.id, c.start_pos = s.len, c.block_table = s.blocks;
      for (int i = 0; i < n; ++i) c.tokens.push_back(tok(rng));
      c.need_logits = false;
      c.sample = s.len + n == context;
      in.seqs.push_back(std::move(c));
      left -= n;
    }
    if (in.seqs.empty()) break;
    StepOutput o = ex.execute(in);
    for (size_t i = 0; i < in.seqs.size(); ++i) {
      for (auto& s : seqs)
        if (s.id == in.seqs[i].seq_id) {
          s.len += int32_t(in.seqs[i].tokens.size());
          if (in.seqs[i].sample) s.last = o.tokens[i];
          tokens += int64_t(in.seqs[i].tokens.size());
        }
    }
    next = seqs.size();
  }
  return double(tokens) / std::chrono::duration<double>(Clock::now() - t0).count();
}

// Median wall time of one decode step (every sequence one token, greedy on the device).
double decode_step_ms(ModelExecutor& ex, std::vector<Seq>& seqs, Precision p, int warmup,
                      int steps) {
  std::vector<double> ms;
  for (int it = 0; it < warmup + steps; ++it) {
    StepInput in;
    in.precision = p;
    for (auto& s : seqs) {
      SeqChunk c;
      c.seq_id = s.id, c.start_pos = s.len, c.block_table = s.blocks, c.tokens = {s.last};
      c.need_logits = false, c.sample = true;
      in.seqs.push_back(std::move(c));
    }
    const auto t0 = Clock::now();
    StepOutput o = ex.execute(in);
    const double dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    for (size_t i = 0; i < seqs.size(); ++i) seqs[i].len += 1, seqs[i].last = o.tokens[i];
    if (it >= warmup) ms.push_back(dt);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int run(const EngineBenchArgs& a, const std::string& command) {
  log_to_stderr();
  const io::ModelConfig cfg = io::load_config(a.m.model);
  const std::vector<int> batches = int_list(a.batches);
  const int max_b = *std::max_element(batches.begin(), batches.end());
  std::vector<std::string> modes;
  for (size_t i = 0; i <= a.weights_list.size();) {
    size_t j = a.weights_list.find(',', i);
    if (j == std::string::npos) j = a.weights_list.size();
    const std::string w = a.weights_list.substr(i, j - i);
    if (w != "fp16" && w != "nested")
      fail("bench engine: --weights-list takes fp16 and/or nested, got '{}'", w);
    modes.push_back(w);
    i = j + 1;
  }
  double bw = 0;
  nlohmann::json dev = {{"name", "cpu"}};
#if NESTEDFP_HAVE_CUDA
  if (a.m.device != "cpu") {
    const cuda::DeviceInfo d = cuda::device_info();
    dev = {{"name", d.name},
           {"sms", d.sms},
           {"cuda_runtime", d.runtime},
           {"cuda_driver_api", d.driver}};
    bw = cuda::measure_copy_bandwidth();
    spdlog::info("copy bandwidth {:.0f} GB/s", bw / 1e9);
  }
#endif
  nlohmann::json rows = nlohmann::json::array();
  std::mt19937 rng(1);
  for (const std::string& w : modes) {
    ModelArgs m = a.m;
    m.weights = w;
    m.max_num_seqs = max_b;
    m.kv_blocks = max_b * ((a.context + a.warmup + a.steps * 2 + 16) / 16 + 1) + 8;
    auto runner = build_runner(m);
    const std::string backend_name = runner_of(*runner).backend().name();
    for (int B : batches) {
      std::vector<Seq> seqs(static_cast<size_t>(B), Seq{});
      const int per_seq = (a.context + a.warmup + a.steps * 2 + 16) / 16 + 1;
      for (int i = 0; i < B; ++i) {
        seqs[size_t(i)].id = i;
        for (int b = 0; b < per_seq; ++b) seqs[size_t(i)].blocks.push_back(i * per_seq + b);
      }
      const double pf =
          prefill(*runner, seqs, a.context, m.max_num_batched_tokens, cfg.vocab_size, rng);
      std::vector<Precision> precs = {Precision::FP16};
      if (w == "nested") precs.push_back(Precision::FP8);
      for (Precision p : precs) {
        const int ctx0 = seqs[0].len;
        const uint64_t replays0 = runner_of(*runner).graph_replays();
        const double ms = decode_step_ms(*runner, seqs, p, a.warmup, a.steps);
        const uint64_t replays = runner_of(*runner).graph_replays() - replays0;
        const double floor_ms =
            bw > 0 ? weight_bytes(cfg, p == Precision::FP8, m.tensor_parallel_size) / bw * 1e3 : 0;
        const std::string label = w == "fp16"            ? "plain FP16 (cuBLAS)"
                                  : p == Precision::FP16 ? "NestedFP16"
                                                         : "NestedFP8";
        spdlog::info(
            "{}: batch {} context {}: decode step {:.3f} ms (floor {:.3f} ms, {:.2f} of it), "
            "prefill {:.0f} tok/s",
            label, B, ctx0, ms, floor_ms, floor_ms > 0 ? floor_ms / ms : 0, pf);
        rows.push_back({{"engine", label},
                        {"weights", w},
                        {"precision", to_string(p)},
                        {"batch", B},
                        {"context", ctx0},
                        {"decode_step_ms", ms},
                        {"decode_tok_s", B / ms * 1e3},
                        {"floor_ms", floor_ms},
                        {"floor_fraction", floor_ms > 0 ? floor_ms / ms : 0.0},
                        {"prefill_tok_s", pf},
                        {"backend", backend_name}});
      }
    }
  }
  const char* commit = std::getenv("NESTEDFP_GIT_COMMIT");
  nlohmann::json j = {{"model", a.m.model},
                      {"tensor_parallel_size", a.m.tensor_parallel_size},
                      {"load_format", a.m.load_format},
                      {"device", dev},
                      {"copy_bandwidth_GBps", bw / 1e9},
                      {"git_commit", commit ? commit : ""},
                      {"command", command},
                      {"results", rows}};
  std::filesystem::create_directories(a.out);
  const std::string stem =
      a.out + (a.m.enforce_eager ? "/engine-eager" : "/engine") +
      (a.m.tensor_parallel_size > 1 ? fmt::format("-tp{}", a.m.tensor_parallel_size) : "");
  std::ofstream(stem + ".json") << j.dump(2) << "\n";
  std::string md = fmt::format(
      "# bench engine: {} ({}, tensor parallel {})\n\nGPU: {}; copy bandwidth {:.0f} GB/s; "
      "commit {}\n\n`{}`\n\n",
      a.m.model, a.m.load_format, a.m.tensor_parallel_size, dev.value("name", "?"), bw / 1e9,
      commit ? commit : "?", command);
  md +=
      "| engine | batch | context | decode step ms | tok/s | floor ms | floor / step | prefill "
      "tok/s |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows)
    md += fmt::format("| {} | {} | {} | {:.3f} | {:.0f} | {:.3f} | {:.2f} | {:.0f} |\n",
                      r["engine"].get<std::string>(), r["batch"].get<int>(),
                      r["context"].get<int>(), r["decode_step_ms"].get<double>(),
                      r["decode_tok_s"].get<double>(), r["floor_ms"].get<double>(),
                      r["floor_fraction"].get<double>(), r["prefill_tok_s"].get<double>());
  std::ofstream(stem + ".md") << md;
  std::printf("%s", md.c_str());
  return 0;
}

const BenchRegistration reg(
    "engine", "offline engine benchmark: decode step time and prefill throughput per weights mode",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<EngineBenchArgs>();
      a->m.load_format = "dummy";
      add_model_options(sub, a->m, true);
      sub.add_option("--weights-list", a->weights_list,
                     "engines to compare: fp16 (plain) and/or nested")
          ->capture_default_str();
      sub.add_option("--batch", a->batches, "decode batch sizes")->capture_default_str();
      sub.add_option("--context", a->context, "tokens of context per sequence before decoding")
          ->capture_default_str();
      sub.add_option("--steps", a->steps, "timed decode steps per point (median reported)")
          ->capture_default_str();
      sub.add_option("--out", a->out, "folder for engine.json and engine.md")
          ->capture_default_str();
      return [a] {
        std::string cmd = fmt::format(
            "nestedfp bench engine {} --load-format {} --weights-list {} --batch {} --context {} "
            "--steps {}",
            a->m.model, a->m.load_format, a->weights_list, a->batches, a->context, a->steps);
        if (a->m.enforce_eager) cmd += " --enforce-eager";
        return run(*a, cmd);
      };
    },
    20);

}  // namespace
}  // namespace nestedfp::cli
