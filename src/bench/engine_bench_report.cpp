// `bench engine`'s goals, analysis, markdown and PNG, all from the result JSON (engine_bench.hpp).
// The analysis of a missed goal is written from the per-op breakdown, so the report says where the
// time goes without anyone re-reading the numbers.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "bench/engine_bench.hpp"
#include "bench/plot_png.hpp"

namespace nestedfp::bench {
namespace {

using nlohmann::json;

const char* const kEngines[] = {"plain FP16", "NestedFP16", "NestedFP8"};

const json* find(const json& arr, const std::string& engine, int batch = -1) {
  for (const auto& r : arr)
    if (r.value("engine", "") == engine && (batch < 0 || r.value("batch", -1) == batch)) return &r;
  return nullptr;
}

double num(const json* r, const char* key) { return r ? r->value(key, 0.0) : 0.0; }

bool is_gemm(const std::string& op) {
  return op.size() > 5 && op.compare(op.size() - 4, 4, "GEMM") == 0;
}

// GEMM time, bytes and the ops that are not GEMMs (largest first) of one breakdown entry.
struct Split {
  double gemm_ms = 0, gemm_bytes = 0, other_ms = 0;
  std::vector<std::pair<std::string, double>> others;
};
Split split(const json& b) {
  Split s;
  for (const auto& o : b["ops"]) {
    const std::string op = o["op"];
    const double ms = o["ms"];
    if (is_gemm(op) || op == "lm_head") {
      s.gemm_ms += ms, s.gemm_bytes += o.value("weight_bytes", 0.0);
    } else {
      s.other_ms += ms, s.others.push_back({op, ms});
    }
  }
  std::sort(s.others.begin(), s.others.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  return s;
}

std::string top_others(const Split& s, size_t n) {
  std::string r;
  for (size_t i = 0; i < std::min(n, s.others.size()); ++i)
    r += fmt::format("{}{} {:.3f} ms", i ? ", " : "", s.others[i].first, s.others[i].second);
  return r;
}

std::string gb(double bytes) { return fmt::format("{:.2f} GB", bytes / 1e9); }
std::string gib(double bytes) {  // MiB below 1 GiB, so small models read too
  return bytes < double(1 << 30) ? fmt::format("{:.1f} MiB", bytes / double(1 << 20))
                                 : fmt::format("{:.2f} GiB", bytes / double(1 << 30));
}

// Why a decode step of `engine` at the smallest profiled batch is above the floor.
std::string explain_floor(const json& r, const std::string& engine) {
  const json* d = find(r["decode"], engine, 1);
  const json* b = nullptr;
  for (const auto& e : r["breakdown"])
    if (e["engine"] == engine && (!b || e["batch"] < (*b)["batch"])) b = &e;
  if (!d || !b) return fmt::format("{}: no batch-1 decode or breakdown measured.", engine);
  const Split s = split(*b);
  const double bw = r.value("copy_bandwidth_GBps", 0.0) * 1e9;
  return fmt::format(
      "{} batch 1: graph step {:.3f} ms against a floor of {:.3f} ms ({:.2f}). Eager profile at "
      "batch {} ({:.3f} ms per profiled step; eager steps without marks take {:.3f} ms more than "
      "graph replays: the launch gaps graphs remove): GEMMs + lm_head {:.3f} ms ({:.0f}%) reading "
      "{} at {:.0f} GB/s = {:.2f} of the copy bandwidth (at copy "
      "bandwidth they would take {:.3f} ms); the rest {:.3f} ms: {}.",
      engine, num(d, "step_ms"), num(d, "floor_ms"), num(d, "floor_fraction"), b->value("batch", 0),
      num(b, "step_ms"), num(b, "eager_ms") - num(d, "step_ms"), s.gemm_ms,
      100 * s.gemm_ms / std::max(1e-9, num(b, "sum_ms")), gb(s.gemm_bytes),
      s.gemm_bytes / std::max(1e-9, s.gemm_ms) / 1e6,
      bw > 0 ? s.gemm_bytes / (s.gemm_ms * 1e-3) / bw : 0.0, bw > 0 ? s.gemm_bytes / bw * 1e3 : 0.0,
      s.other_ms, top_others(s, 4));
}

// Why the offline throughput ratio of `engine` to plain FP16 is what it is.
std::string explain_offline(const json& r, const std::string& engine) {
  const json *a = find(r["offline"], engine), *p = find(r["offline"], "plain FP16");
  if (!a || !p) return engine + ": offline run missing.";
  std::string s = fmt::format(
      "{} / plain FP16 offline = {:.3f}: executor time {:.2f} s vs {:.2f} s (executor-only ratio "
      "{:.3f}); host time between steps {:.2f} s vs {:.2f} s ({:.1f}% / {:.1f}% of wall).",
      engine, num(a, "total_tok_s") / num(p, "total_tok_s"), num(a, "executor_s"),
      num(p, "executor_s"), num(p, "executor_s") / std::max(1e-9, num(a, "executor_s")),
      num(a, "host_s"), num(p, "host_s"), 100 * num(a, "host_fraction"),
      100 * num(p, "host_fraction"));
  if (num(a, "host_fraction") > 0.02)
    s += " The host time between steps is the same work in every mode and leaves the GPU idle, "
         "so it pulls the ratio towards 1.";
  int big = -1;  // the largest profiled batch of both: closest to the offline steps
  for (const auto& e : r["breakdown"])
    if (e["engine"] == engine && find(r["breakdown"], "plain FP16", e["batch"].get<int>()))
      big = std::max(big, e["batch"].get<int>());
  if (big > 0) {
    const Split sa = split(*find(r["breakdown"], engine, big)),
                sp = split(*find(r["breakdown"], "plain FP16", big));
    s += fmt::format(
        " Eager decode at batch {}: GEMMs + lm_head {:.3f} ms vs {:.3f} ms ({:.2f}x), other ops "
        "{:.3f} ms vs {:.3f} ms; largest other ops of {}: {}.",
        big, sa.gemm_ms, sp.gemm_ms, sa.gemm_ms / std::max(1e-9, sp.gemm_ms), sa.other_ms,
        sp.other_ms, engine, top_others(sa, 3));
  }
  const json *pa = find(r["prefill"], engine), *pp = find(r["prefill"], "plain FP16");
  if (pa && pp)
    s += fmt::format(" Prefill ({}-token chunks): {:.0f} vs {:.0f} tok/s ({:.2f}x).",
                     pa->value("chunk", 0), num(pa, "tok_s"), num(pp, "tok_s"),
                     num(pa, "tok_s") / std::max(1e-9, num(pp, "tok_s")));
  return s;
}

}  // namespace

void add_goals(json& r) {
  json goals = json::array(), analysis = json::array();
  auto goal = [&](const std::string& what, double measured, const std::string& shown,
                  const std::string& target, bool met, const std::string& why) {
    const bool valid = std::isfinite(measured);
    goals.push_back({{"goal", what},
                     {"measured", valid ? json(measured) : json(nullptr)},
                     {"shown", shown},
                     {"target", target},
                     {"met", valid ? json(met) : json(nullptr)}});
    if (valid && !met && !why.empty()) analysis.push_back(why);
  };
  const bool have_floor = r.value("copy_bandwidth_GBps", 0.0) > 0;
  for (const char* e : {"NestedFP16", "NestedFP8"}) {
    const json* d = find(r["decode"], e, 1);
    const double f = d && have_floor ? num(d, "floor_fraction") : NAN;
    goal(fmt::format("batch-1 decode, {}: floor / step time", e), f,
         std::isfinite(f) ? fmt::format("{:.2f}", f) : "n/a (no batch 1, or no floor on cpu)",
         ">= 0.85", f >= 0.85, explain_floor(r, e));
  }
  const json* p = find(r["offline"], "plain FP16");
  for (auto [e, target] : {std::pair{"NestedFP16", 0.97}, std::pair{"NestedFP8", 1.6}}) {
    const json* a = find(r["offline"], e);
    const double ratio = a && p ? num(a, "total_tok_s") / num(p, "total_tok_s") : NAN;
    goal(fmt::format("offline throughput {} / plain FP16", e), ratio,
         std::isfinite(ratio) ? fmt::format("{:.3f}", ratio) : "n/a (offline run skipped)",
         fmt::format(">= {}", target), ratio >= target, explain_offline(r, e));
  }
  double worst = NAN;
  std::string at;
  for (const auto& s : r["switch"])
    if (!(s["cost_fraction"].get<double>() <= worst))
      worst = s["cost_fraction"],
      at = fmt::format("{:+.4f} ms at batch {}", s["cost_ms"].get<double>(), s["batch"].get<int>());
  goal("precision switch between decode steps: extra time per step / step time", worst,
       std::isfinite(worst) ? fmt::format("{:+.2f}% ({})", 100 * worst, at) : "n/a (no nested run)",
       "<= 1% (\"costs nothing\")", worst <= 0.01,
       fmt::format("Alternating FP16/FP8 decode steps cost {} more per step than runs of one "
                   "precision.",
                   at));
  double host = NAN, hidden = 0;
  for (const auto& o : r["offline"]) {
    host = std::isnan(host) ? o["host_fraction"].get<double>()
                            : std::max(host, o["host_fraction"].get<double>());
    hidden = std::max(hidden, o.value("overlapped_host_s", 0.0));
  }
  goal(
      "offline: host time between steps / wall time (host/GPU overlap)", host,
      std::isfinite(host) ? fmt::format("{:.1f}%", 100 * host) : "n/a",
      "~0 (hidden behind the GPU)", host <= 0.02,
      fmt::format("Up to {:.1f}% of the offline wall time is host work between a step's sampled "
                  "tokens and the next launch (commit, scheduling, the step layout), while the "
                  "device idles; output work (events, detokenization, stop strings, up to {:.2f} s "
                  "per run) runs while the device computes the next step.",
                  100 * host, hidden));
  const json& mc = r.value("memory_from_config", json::object());
  for (const auto& m : r["memory"])
    if (m["weights_mode"] == "nested" && mc.contains("linear_fp16_plus_fp8")) {
      const double nested = m["nested_linears"].get<double>() + m["plain_linears"].get<double>();
      const double both = mc["linear_fp16_plus_fp8"];
      goal("memory of the decoder linears: nested as loaded / (FP16 + separate FP8 copy)",
           nested / both, fmt::format("{:.3f} ({} vs {})", nested / both, gib(nested), gib(both)),
           "<= 0.67 (one copy)", nested / both <= 0.67 + 1e-3, "");
    }
  r["goals"] = goals, r["analysis"] = analysis;
}

std::string engine_bench_markdown(const json& r) {
  std::string md = fmt::format("# bench engine: {} ({})\n\n", r.value("model", "?"),
                               r.value("load_format", "?"));
  const json dev = r.value("device", json::object());
  md += fmt::format("- device: {}; copy bandwidth {:.0f} GB/s; commit {}\n", dev.value("name", "?"),
                    r.value("copy_bandwidth_GBps", 0.0), r.value("git_commit", "?"));
  md += fmt::format("- command: `{}`\n\n", r.value("command", "?"));

  md += "## Goals\n\n| goal | measured | target | met |\n|---|---|---|---|\n";
  for (const auto& g : r["goals"])
    md += fmt::format("| {} | {} | {} | {} |\n", g["goal"].get<std::string>(),
                      g["shown"].get<std::string>(), g["target"].get<std::string>(),
                      g["met"].is_null()     ? "n/a"
                      : g["met"].get<bool>() ? "met"
                                             : "**missed**");
  if (!r["analysis"].empty()) {
    md += "\nWhat costs the time where a goal is missed (from the per-op breakdown):\n\n";
    for (const auto& a : r["analysis"]) md += "- " + a.get<std::string>() + "\n";
  }

  md += fmt::format(
      "\n## Decode step time (context {}, CUDA graphs where the backend has them)\n\nMedian wall "
      "time of one `ModelRunner::execute`. Floor = weight bytes a step reads / copy bandwidth.\n\n"
      "| engine | batch | step ms | tok/s | floor ms | floor / step | graph steps |\n"
      "|---|---|---|---|---|---|---|\n",
      r["options"].value("context", 0));
  for (const char* e : kEngines)  // one engine's batches together
    for (const auto& d : r["decode"]) {
      if (d["engine"] != e) continue;
      md += fmt::format("| {} | {} | {:.3f} | {:.0f} | {:.3f} | {:.2f} | {} |\n",
                        d["engine"].get<std::string>(), d["batch"].get<int>(),
                        d["step_ms"].get<double>(), d["tok_s"].get<double>(),
                        d["floor_ms"].get<double>(), d["floor_fraction"].get<double>(),
                        d["graph_steps"].get<int>());
    }

  md += "\n## Prefill\n\n| engine | chunk tokens | tok/s |\n|---|---|---|\n";
  for (const auto& p : r["prefill"])
    md += fmt::format("| {} | {} | {:.0f} |\n", p["engine"].get<std::string>(),
                      p["chunk"].get<int>(), p["tok_s"].get<double>());

  if (!r["switch"].empty()) {
    md +=
        "\n## Precision switch between decode steps (NestedFP16 <-> NestedFP8)\n\nMedian step "
        "time of runs of one precision against steps alternating FP16/FP8 every step (graph "
        "replays where the backend has graphs).\n\n"
        "| batch | FP16 runs ms | FP8 runs ms | alternating FP16 ms | alternating FP8 ms | cost "
        "ms/step |\n|---|---|---|---|---|---|\n";
    for (const auto& s : r["switch"])
      md += fmt::format("| {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:+.4f} |\n",
                        s["batch"].get<int>(), s["same_fp16_ms"].get<double>(),
                        s["same_fp8_ms"].get<double>(), s["alternating_fp16_ms"].get<double>(),
                        s["alternating_fp8_ms"].get<double>(), s["cost_ms"].get<double>());
  }

  md +=
      "\n## Per-op breakdown of eager decode steps\n\nMean over profiled steps (events on the "
      "device's timeline; time the device waits for host launches counts for the next op). "
      "GEMM rows: weight bytes / time, and that as a share of the copy bandwidth.\n";
  for (const auto& b : r["breakdown"]) {
    md += fmt::format(
        "\n### {}, batch {}: profiled step {:.3f} ms (eager without marks {:.3f} ms), ops sum "
        "{:.3f} ms\n\n| op | ms | share | GB/s | of copy bw |\n|---|---|---|---|---|\n",
        b["engine"].get<std::string>(), b["batch"].get<int>(), b["step_ms"].get<double>(),
        b.value("eager_ms", 0.0), b["sum_ms"].get<double>());
    for (const auto& o : b["ops"])
      md += fmt::format("| {} | {:.3f} | {:.1f}% | {} | {} |\n", o["op"].get<std::string>(),
                        o["ms"].get<double>(), 100 * o["share"].get<double>(),
                        o.contains("GBps") ? fmt::format("{:.0f}", o["GBps"].get<double>()) : "",
                        o.contains("copy_fraction") && o["copy_fraction"].get<double>() > 0
                            ? fmt::format("{:.2f}", o["copy_fraction"].get<double>())
                            : "");
  }

  if (!r["offline"].empty()) {
    const auto& o0 = r["offline"][0];
    md += fmt::format(
        "\n## Offline throughput through the Engine\n\n{} requests x {} input / {} output tokens, "
        "all submitted at once, ignore_eos, temperature 1; max_num_batched_tokens {}, "
        "max_num_seqs {}, no prefix caching, output detokenized (placeholder tokenizer). Executor "
        "= "
        "time inside step windows (launch to collected tokens); host = the rest of "
        "`Engine::step` (commit, scheduling, block tables) while no step runs; overlapped = "
        "output work (events, detokenization) done inside the windows while the device runs "
        "the next step; client = draining the event streams.\n\n| engine | wall s | req/s | "
        "output tok/s | total tok/s | steps | graph steps | executor s | host s | overlapped s | "
        "client s | host share | preemptions "
        "|\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        o0["requests"].get<int>(), o0["input_tokens"].get<int>(), o0["output_tokens"].get<int>(),
        r["options"]["max_num_batched_tokens"].get<int>(), r["options"]["max_num_seqs"].get<int>());
    for (const auto& o : r["offline"])
      md += fmt::format(
          "| {} | {:.2f} | {:.2f} | {:.0f} | {:.0f} | {} | {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} "
          "| "
          "{:.1f}% | {} |\n",
          o["engine"].get<std::string>(), o["wall_s"].get<double>(),
          o["requests_per_s"].get<double>(), o["output_tok_s"].get<double>(),
          o["total_tok_s"].get<double>(), o["steps"].get<int64_t>(),
          o["graph_steps"].get<int64_t>(), o["executor_s"].get<double>(), o["host_s"].get<double>(),
          o.value("overlapped_host_s", 0.0), o["client_drain_s"].get<double>(),
          100 * o["host_fraction"].get<double>(), o["preemptions"].get<uint64_t>());
  }

  md += "\n## Memory (bytes the backend holds, per weights mode)\n\n| | ";
  for (const auto& m : r["memory"])
    md += "--weights " + m["weights_mode"].get<std::string>() + " | ";
  md += "\n|---|";
  for (size_t i = 0; i < r["memory"].size(); ++i) md += "---|";
  md += "\n";
  auto row = [&](const std::string& name, auto get) {
    md += "| " + name + " | ";
    for (const auto& m : r["memory"]) md += get(m) + " | ";
    md += "\n";
  };
  for (auto [key, name] : {std::pair{"nested_linears", "decoder linears, nested (planes + k)"},
                           {"plain_linears", "decoder linears, plain FP16"},
                           {"lm_head", "lm_head"},
                           {"embedding", "embedding"},
                           {"norms", "norms"},
                           {"weights", "weights in all"},
                           {"kv_cache", "KV cache"},
                           {"scratch", "scratch (activations, logits)"},
                           {"backend_workspace_total", "backend workspaces"},
                           {"device_used", "device memory in use (cudaMemGetInfo)"}})
    row(name, [&](const json& m) { return m.contains(key) ? gib(m[key].get<double>()) : "-"; });
  row("KV blocks (16 tokens)",
      [](const json& m) { return std::to_string(m["kv_blocks"].get<int>()); });
  if (!r["memory"].empty())
    for (size_t i = 0; i < r["memory"][0]["backend_workspaces"].size(); ++i)
      row("  " + r["memory"][0]["backend_workspaces"][i]["what"].get<std::string>(),
          [&](const json& m) {
            return i < m["backend_workspaces"].size()
                       ? gib(m["backend_workspaces"][i]["bytes"].get<double>())
                       : "-";
          });
  if (r.contains("memory_from_config")) {
    const auto& c = r["memory_from_config"];
    md += fmt::format(
        "\nDecoder linears from the config ({:.2f} G parameters): plain FP16 {}, nested {} "
        "({} with channel exponents), a separate FP8 copy {}, FP16 + separate FP8 copy {}; "
        "embedding + lm_head {}. {}.\n",
        c["linear_params"].get<double>() / 1e9, gib(c["linear_fp16"]), gib(c["linear_nested"]),
        gib(c["linear_nested_channel"]), gib(c["linear_fp8_copy"]), gib(c["linear_fp16_plus_fp8"]),
        gib(c["embedding_and_lm_head"]), c["note"].get<std::string>());
  }
  return md;
}

void engine_bench_png(const json& r, const std::string& path) {
  plot::Chart dec;
  dec.title = "Decode step time vs batch";
  dec.x_label = "log2(batch)";
  dec.y_label = "ms per step";
  size_t ci = 0;
  double xmin = INFINITY, xmax = -INFINITY;
  for (const char* e : kEngines) {
    plot::Series s;
    s.name = e, s.color = plot::palette(ci++), s.markers = true;
    for (const auto& d : r["decode"])
      if (d["engine"] == e) {
        s.x.push_back(std::log2(d["batch"].get<double>()));
        s.y.push_back(d["step_ms"].get<double>());
        xmin = std::min(xmin, s.x.back()), xmax = std::max(xmax, s.x.back());
      }
    if (!s.x.empty()) dec.series.push_back(s);
  }
  for (auto [prec, name] : {std::pair{"fp16", "floor FP16"}, std::pair{"fp8", "floor FP8"}})
    for (const auto& d : r["decode"])
      if (d["precision"] == prec && d["floor_ms"].get<double>() > 0) {
        plot::Series s;
        s.name = name, s.color = plot::palette(ci++);
        s.x = {xmin, xmax}, s.y = {d["floor_ms"].get<double>(), d["floor_ms"].get<double>()};
        dec.series.push_back(s);
        break;
      }
  std::vector<plot::Chart> charts = {dec};
  if (!r["offline"].empty()) {
    plot::Chart off;
    off.title = "Offline throughput";
    off.x_label = "engine (0 plain FP16, 1 NestedFP16, 2 NestedFP8)";
    off.y_label = "total tok/s";
    off.x_min = -0.5, off.x_max = 2.5;
    ci = 0;
    for (size_t i = 0; i < 3; ++i)
      if (const json* o = find(r["offline"], kEngines[i])) {
        plot::Series s;
        s.name = kEngines[i], s.color = plot::palette(i), s.lines = false, s.bar_width = 0.6;
        s.x = {double(i)}, s.y = {num(o, "total_tok_s")};
        off.series.push_back(s);
      }
    double top = 0;
    for (const auto& se : off.series) top = std::max(top, se.y[0]);
    off.y_max = top * 1.3;  // room for the legend above the bars
    charts.push_back(off);
  }
  plot::save_charts_png(path, charts);
}

}  // namespace nestedfp::bench
