// `nestedfp bench spec MODEL`: self-speculative decoding (docs/DESIGN.md §3.13) through the real
// Engine, offline. Greedy requests of the same length (ignore_eos) decode together; per batch size
// it reports decode tokens/s of plain FP16 weights (--weights fp16), NestedFP16, NestedFP8 and
// speculation (FP8 drafts, FP16 verify), the acceptance per k (--accept-batch), and whether
// speculative greedy output equals NestedFP16's. With --acceptance-from (the spec.json of a real
// model) it projects this model's speculative speed at that model's tokens per cycle, from the
// cycle times measured here. Prompts: the eval text for real weights, random tokens for dummy ones.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string_view>

#include "bench/plot_png.hpp"
#include "bench/provenance.hpp"
#include "cli/bench_command.hpp"
#include "cli/list_args.hpp"
#include "cli/model_cli.hpp"
#include "engine/offline.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct SpecBenchArgs {
  ModelArgs m;
  std::string ks = "1,2,3,4,5,6,7,8", batches = "1,4,8,32", out = "build/bench-spec", text;
  std::string acceptance_from;  // spec.json of a real model: project at its tokens per cycle
  int spec_k = 0;               // k of the batch sweep; 0: the fastest k at batch 1
  int prompt_len = 64, max_tokens = 128;
  int accept_batch = 8;  // batch of the acceptance sweep (more prompts, less noise)
  bool skip_plain = false;
};

// One prompt per sequence of the largest batch: slices of the eval text, or random ids.
std::vector<std::vector<int32_t>> make_prompts(const SpecBenchArgs& a, int vocab, int n) {
  std::vector<std::vector<int32_t>> ps;
  if (a.m.load_format == "dummy") {
    std::mt19937 rng(1);
    std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
    for (int i = 0; i < n; ++i) {
      ps.emplace_back();
      for (int t = 0; t < a.prompt_len; ++t) ps.back().push_back(tok(rng));
    }
    return ps;
  }
  std::string path = a.text;
  if (path.empty()) {
    const char* env = std::getenv("NESTEDFP_PYSTD_TEXT");
    path = env && *env ? env : "../shared/data/eval/pystd_public.txt.gz";
  }
  if (!std::filesystem::exists(path))
    fail(
        "bench spec: no prompt text at {}: pass --text FILE (or set NESTEDFP_PYSTD_TEXT), or use "
        "--load-format dummy for random prompts",
        path);
  const std::string text = engine::read_text_file(path);
  const auto ids =
      Tokenizer::load(a.m.model).encode(std::string_view(text).substr(0, 1 << 20), false);
  const size_t stride = ids.size() / size_t(n + 1);
  if (stride < size_t(a.prompt_len))
    fail("bench spec: {} has {} tokens, too few for {} prompts of {}", path, ids.size(), n,
         a.prompt_len);
  for (int i = 0; i < n; ++i)
    ps.emplace_back(ids.begin() + ptrdiff_t(size_t(i) * stride),
                    ids.begin() + ptrdiff_t(size_t(i) * stride + size_t(a.prompt_len)));
  return ps;
}

struct RunResult {
  double decode_tok_s = 0, cycle_ms = 0;
  double acceptance = 0, tokens_per_cycle = 0;  // speculative runs
  uint64_t drafted = 0, accepted = 0, cycles = 0;
  std::vector<std::vector<int32_t>> tokens;
};

// B requests decoded together until all reach max_tokens. Decode tokens/s counts the tokens after
// every request has its first one (prefill excluded); cycle_ms = decode time per FP16 step.
RunResult run_engine(ModelExecutor& ex, const SpecBenchArgs& a,
                     const std::vector<std::vector<int32_t>>& prompts, int B,
                     const std::string& precision, const std::string& spec, int max_tokens) {
  EngineConfig c;
  c.max_num_batched_tokens = std::min(2048, ex.max_step_tokens());
  c.max_num_seqs = std::max(B, 1);
  c.precision = precision;
  c.speculative = spec;
  c.enable_prefix_caching = false;
  Engine e(ex, c);
  std::vector<std::shared_ptr<RequestStream>> ss;
  for (int i = 0; i < B; ++i) {
    GenerationRequest r;
    r.prompt = prompts[size_t(i)];
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0.f;
    r.ignore_eos = true;
    ss.push_back(e.add_request(std::move(r)));
  }
  RunResult out;
  out.tokens.resize(size_t(B));
  auto drain = [&] {
    int64_t n = 0;
    for (int i = 0; i < B; ++i)
      while (auto ev = ss[size_t(i)]->next(std::chrono::milliseconds(0)))
        out.tokens[size_t(i)].insert(out.tokens[size_t(i)].end(), ev->token_ids.begin(),
                                     ev->token_ids.end());
    for (auto& t : out.tokens) n += int64_t(t.size());
    return n;
  };
  auto all_started = [&] {
    return std::all_of(out.tokens.begin(), out.tokens.end(),
                       [](const auto& t) { return !t.empty(); });
  };
  while (!all_started() && e.step()) drain();
  const int64_t n0 = drain();
  const EngineStats s0 = e.stats();
  const auto t0 = Clock::now();
  while (e.step()) {
  }
  const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
  const int64_t n1 = drain();
  const EngineStats s1 = e.stats();
  out.decode_tok_s = dt > 0 ? double(n1 - n0) / dt : 0;
  const uint64_t verify_steps =
      precision == "fp8" ? s1.steps_fp8 - s0.steps_fp8 : s1.steps_fp16 - s0.steps_fp16;
  out.cycle_ms = verify_steps ? dt * 1e3 / double(verify_steps) : 0;
  out.cycles = s1.spec_cycles, out.drafted = s1.spec_drafted, out.accepted = s1.spec_accepted;
  out.acceptance = out.drafted ? double(out.accepted) / double(out.drafted) : 0;
  out.tokens_per_cycle = out.cycles ? double(s1.spec_committed) / double(out.cycles) : 0;
  return out;
}

double identical_fraction(const RunResult& a, const RunResult& ref) {
  size_t same = 0;
  for (size_t i = 0; i < a.tokens.size(); ++i) same += a.tokens[i] == ref.tokens[i];
  return a.tokens.empty() ? 0 : double(same) / double(a.tokens.size());
}

// Acceptance and tokens per cycle against k; decode tokens/s against batch, per engine.
void save_plots(const std::string& path, const nlohmann::json& accept, const nlohmann::json& rows) {
  namespace plot = bench::plot;
  plot::Chart ka{"ACCEPTANCE PER K", "k (drafted tokens per cycle)", "rate / tokens", {}};
  plot::Series acc{"acceptance", {}, {}, plot::palette(0), true, true};
  plot::Series tpc{"tokens per cycle", {}, {}, plot::palette(1), true, true};
  for (const auto& r : accept) {
    acc.x.push_back(r["k"].get<int>()), acc.y.push_back(r["acceptance"].get<double>());
    tpc.x.push_back(r["k"].get<int>()), tpc.y.push_back(r["tokens_per_cycle"].get<double>());
  }
  ka.series = {acc, tpc};
  plot::Chart tb{"DECODE TOKENS/S", "batch", "tokens/s", {}};
  std::map<std::string, size_t> index;
  for (const auto& r : rows) {
    const std::string name = r["engine"].get<std::string>();
    if (!index.count(name)) {
      index[name] = tb.series.size();
      tb.series.push_back({name, {}, {}, plot::palette(tb.series.size()), true, true});
    }
    auto& ser = tb.series[index[name]];
    ser.x.push_back(r["batch"].get<int>()), ser.y.push_back(r["decode_tok_s"].get<double>());
  }
  try {
    plot::save_charts_png(path, {ka, tb});
  } catch (const std::exception& e) {
    spdlog::warn("bench spec: no plot: {}", e.what());
  }
}

int run(const SpecBenchArgs& a, const std::string& command) {
  log_to_stderr();
  const std::vector<int> ks = positive_ints(a.ks, "--k"),
                         batches = positive_ints(a.batches, "--batch");
  const int max_b = *std::max_element(batches.begin(), batches.end());
  for (int k : ks)
    if (k > kMaxDraftTokens) fail("bench spec: --k {} exceeds {}", k, kMaxDraftTokens);
  if (a.m.weights != "nested") fail("bench spec: --weights is chosen per run; leave it nested");
  const io::ModelConfig cfg = io::load_config(a.m.model);
  const auto prompts = make_prompts(a, cfg.vocab_size, max_b);
  nlohmann::json src;  // --acceptance-from
  if (!a.acceptance_from.empty()) {
    std::ifstream f(a.acceptance_from);
    if (!f) fail("bench spec: cannot read --acceptance-from {}", a.acceptance_from);
    src = nlohmann::json::parse(f);
  }
  nlohmann::json rows = nlohmann::json::array(), accept = nlohmann::json::array();
  const int warm_tokens = std::min(a.max_tokens, 8);
  auto point = [&](ModelExecutor& ex, int B, const std::string& engine_name,
                   const std::string& precision, const std::string& spec) {
    run_engine(ex, a, prompts, B, precision, spec, warm_tokens);  // CUDA graphs, caches
    RunResult r = run_engine(ex, a, prompts, B, precision, spec, a.max_tokens);
    spdlog::info("{} batch {}: {:.1f} decode tok/s{}", engine_name, B, r.decode_tok_s,
                 r.cycles ? fmt::format(", acceptance {:.3f}, {:.2f} tokens per cycle",
                                        r.acceptance, r.tokens_per_cycle)
                          : "");
    return r;
  };
  auto row = [&](const std::string& engine_name, int k, int B, const RunResult& r,
                 double identical) {
    rows.push_back({{"engine", engine_name},
                    {"k", k},
                    {"batch", B},
                    {"decode_tok_s", r.decode_tok_s},
                    {"cycle_ms", r.cycle_ms},
                    {"acceptance", r.acceptance},
                    {"tokens_per_cycle", r.tokens_per_cycle},
                    {"identical_to_nested_fp16", identical}});
  };

  ModelArgs m = a.m;
  m.max_num_seqs = max_b;
  m.max_model_len = a.prompt_len + a.max_tokens + kMaxDraftTokens + 16;
  std::string backend_name;
  std::map<int, RunResult> plain16;
  if (!a.skip_plain) {
    ModelArgs mp = m;
    mp.weights = "fp16";
    auto runner = build_runner(mp);
    for (int B : batches) plain16[B] = point(*runner, B, "plain FP16", "fp16", "off");
  }
  auto runner = build_runner(m);
  backend_name = engine::ranks_of(*runner).front()->backend().name();
  std::map<int, RunResult> n16, n8;
  for (int B : batches) {
    n16[B] = point(*runner, B, "NestedFP16", "fp16", "off");
    n8[B] = point(*runner, B, "NestedFP8", "fp8", "off");
    if (plain16.count(B)) row("plain FP16", 0, B, plain16[B], -1);
    row("NestedFP16", 0, B, n16[B], 1);
    row("NestedFP8", 0, B, n8[B], identical_fraction(n8[B], n16[B]));
  }
  // Acceptance per k over accept_batch prompts decoded together (and the speed of each k there).
  const int AB = std::min(a.accept_batch, max_b);
  int best_k = ks.front();
  double best = -1;
  if (!n16.count(AB)) n16[AB] = point(*runner, AB, "NestedFP16", "fp16", "off");
  for (int k : ks) {
    const RunResult r =
        point(*runner, AB, fmt::format("spec k={}", k), "fp16", fmt::format("fp8:k={}", k));
    accept.push_back({{"k", k},
                      {"acceptance", r.acceptance},
                      {"tokens_per_cycle", r.tokens_per_cycle},
                      {"drafted", r.drafted},
                      {"accepted", r.accepted},
                      {"batch", AB},
                      {"decode_tok_s", r.decode_tok_s},
                      {"cycle_ms", r.cycle_ms},
                      {"identical_to_nested_fp16", identical_fraction(r, n16[AB])}});
    if (r.decode_tok_s > best) best = r.decode_tok_s, best_k = k;
  }
  // The batch sweep's k: asked for, else the source model's (comparable projection), else the
  // fastest here.
  const int k = a.spec_k > 0 ? a.spec_k : !src.is_null() ? src.at("spec_k").get<int>() : best_k;
  std::map<int, RunResult> sp;
  for (int B : batches) {
    sp[B] = point(*runner, B, fmt::format("spec k={}", k), "fp16", fmt::format("fp8:k={}", k));
    row(fmt::format("spec fp8:k={}", k), k, B, sp[B], identical_fraction(sp[B], n16[B]));
  }

  // Projection: this model's speed at another model's tokens per cycle (same k and batch), from
  // the cycle time measured here (k FP8 draft steps + the FP16 verify step + engine overhead).
  nlohmann::json projection = nlohmann::json::array();
  if (!src.is_null()) {
    // The source's tokens per cycle at (k, batch), else at k from its batch-1 sweep.
    auto source_tpc = [&](int B) -> double {
      for (const auto& r : src.at("results"))
        if (r.at("k").get<int>() == k && r.at("batch").get<int>() == B)
          return r.at("tokens_per_cycle").get<double>();
      for (const auto& r : src.at("acceptance_by_k"))
        if (r.at("k").get<int>() == k) return r.at("tokens_per_cycle").get<double>();
      return 0;
    };
    for (int B : batches) {
      const double tpc = source_tpc(B);
      if (tpc <= 0 || sp[B].cycle_ms <= 0) continue;
      const double tok_s = B * tpc / (sp[B].cycle_ms * 1e-3);
      const double base = plain16.count(B) ? plain16[B].decode_tok_s : n16[B].decode_tok_s;
      projection.push_back({{"k", k},
                            {"batch", B},
                            {"source_tokens_per_cycle", tpc},
                            {"cycle_ms", sp[B].cycle_ms},
                            {"projected_tok_s", tok_s},
                            {"baseline_tok_s", base},
                            {"speedup", base > 0 ? tok_s / base : 0}});
    }
    if (projection.empty())
      spdlog::warn("bench spec: {} has no results for k={} at these batch sizes", a.acceptance_from,
                   k);
  }

  const std::string commit = bench::result_commit();
  nlohmann::json j = {{"model", a.m.model},         {"load_format", a.m.load_format},
                      {"backend", backend_name},    {"git_commit", commit},
                      {"command", command},         {"prompt_len", a.prompt_len},
                      {"max_tokens", a.max_tokens}, {"spec_k", k},
                      {"acceptance_by_k", accept},  {"results", rows},
                      {"projection", projection}};
  std::filesystem::create_directories(a.out);
  std::ofstream(a.out + "/spec.json") << j.dump(2) << "\n";
  std::string md = fmt::format(
      "# bench spec: {} ({})\n\nbackend: {}; commit {}; prompts of {} tokens, {} greedy tokens "
      "each\n\n`{}`\n\n## Acceptance per k (batch {})\n\n| k | acceptance | tokens per cycle | "
      "decode tok/s | cycle ms | identical to NestedFP16 |\n|---|---|---|---|---|---|\n",
      a.m.model, a.m.load_format, backend_name, commit, a.prompt_len, a.max_tokens, command, AB);
  for (const auto& r : accept)
    md += fmt::format("| {} | {:.3f} | {:.2f} | {:.1f} | {:.3f} | {:.2f} |\n", r["k"].get<int>(),
                      r["acceptance"].get<double>(), r["tokens_per_cycle"].get<double>(),
                      r["decode_tok_s"].get<double>(), r["cycle_ms"].get<double>(),
                      r["identical_to_nested_fp16"].get<double>());
  md +=
      "\n## Decode tokens/s\n\n| engine | batch | decode tok/s | vs plain FP16 | ms per FP16 step "
      "(spec: per cycle) | acceptance | identical to NestedFP16 |\n|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    const int B = r["batch"].get<int>();
    const double base = plain16.count(B) ? plain16[B].decode_tok_s : 0;
    const double id = r["identical_to_nested_fp16"].get<double>();
    md +=
        fmt::format("| {} | {} | {:.1f} | {} | {:.3f} | {} | {} |\n",
                    r["engine"].get<std::string>(), B, r["decode_tok_s"].get<double>(),
                    base > 0 ? fmt::format("{:.2f}x", r["decode_tok_s"].get<double>() / base) : "-",
                    r["cycle_ms"].get<double>(),
                    r["k"].get<int>() ? fmt::format("{:.3f}", r["acceptance"].get<double>()) : "-",
                    id >= 0 ? fmt::format("{:.2f}", id) : "-");
  }
  if (!projection.empty()) {
    md += fmt::format(
        "\n## Projection at the tokens per cycle of {}\n\n| k | batch | tokens per cycle | cycle "
        "ms (measured here) | projected tok/s | baseline tok/s | speed-up |\n"
        "|---|---|---|---|---|---|---|\n",
        a.acceptance_from);
    for (const auto& p : projection)
      md += fmt::format("| {} | {} | {:.2f} | {:.3f} | {:.1f} | {:.1f} | {:.2f}x |\n",
                        p["k"].get<int>(), p["batch"].get<int>(),
                        p["source_tokens_per_cycle"].get<double>(), p["cycle_ms"].get<double>(),
                        p["projected_tok_s"].get<double>(), p["baseline_tok_s"].get<double>(),
                        p["speedup"].get<double>());
  }
  std::ofstream(a.out + "/spec.md") << md;
  save_plots(a.out + "/spec.png", accept, rows);
  std::printf("%s", md.c_str());
  return 0;
}

const BenchRegistration reg(
    "spec",
    "self-speculative decoding through the engine: acceptance per k, decode tok/s against FP16 "
    "and FP8",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<SpecBenchArgs>();
      add_model_options(sub, a->m, false);
      sub.add_option("--k", a->ks, "draft lengths for the acceptance sweep (e.g. 1..8 or 1,2,4)")
          ->capture_default_str();
      sub.add_option("--batch", a->batches, "decode batch sizes")->capture_default_str();
      sub.add_option("--spec-k", a->spec_k,
                     "k of the batch sweep (0: --acceptance-from's, else the sweep's fastest)")
          ->capture_default_str();
      sub.add_option("--accept-batch", a->accept_batch,
                     "sequences decoded together in the acceptance sweep (capped by --batch)")
          ->capture_default_str();
      sub.add_option("--prompt-len", a->prompt_len, "prompt tokens per request")
          ->capture_default_str();
      sub.add_option("--max-tokens", a->max_tokens, "greedy tokens per request")
          ->capture_default_str();
      sub.add_option("--text", a->text,
                     "prompt text for real weights (default $NESTEDFP_PYSTD_TEXT or "
                     "../shared/data/eval/pystd_public.txt.gz)");
      sub.add_option("--acceptance-from", a->acceptance_from,
                     "spec.json of a real model: project this model's speed at its tokens per "
                     "cycle");
      sub.add_flag("--skip-plain", a->skip_plain, "leave out the plain FP16 (--weights fp16) runs");
      sub.add_option("--out", a->out, "folder for spec.json, spec.md and spec.png")
          ->capture_default_str();
      return [a] {
        std::string cmd = fmt::format(
            "nestedfp bench spec {} --load-format {} --k {} --batch {} --spec-k {} --accept-batch "
            "{} "
            "--prompt-len {} --max-tokens {}",
            a->m.model, a->m.load_format, a->ks, a->batches, a->spec_k, a->accept_batch,
            a->prompt_len, a->max_tokens);
        if (!a->acceptance_from.empty()) cmd += " --acceptance-from " + a->acceptance_from;
        if (a->m.enforce_eager) cmd += " --enforce-eager";
        return run(*a, cmd);
      };
    },
    25);

}  // namespace
}  // namespace nestedfp::cli
