// `nestedfp bench serve --url URL --mode throughput|trace ...`: load generator for an
// OpenAI-compatible server (library part in src/bench/bench_client.hpp, which documents the
// request format and how each latency is measured).
//
// throughput: every input length x output length x concurrency cell sends --num-prompts
//   random-token prompts through a closed loop of `concurrency` clients.
// trace: replays a TIMESTAMP,ContextTokens,GeneratedTokens CSV (../shared/data/traces/) as an open
//   loop: --start/--duration pick the window (seconds from the first row), --num-requests caps it,
//   --time-scale X divides inter-arrival times by X (2 = twice the request rate), and
//   --middle-ratio F keeps the middle F of requests by send time for the statistics (drops warm-up
//   and drain). --max-input-len/--max-output-len clamp the trace's lengths for small models (the
//   trace's contexts reach thousands of tokens; pystd-16m has a 1024-token context, so e.g.
//   --max-input-len 768 --max-output-len 128 keeps every request valid).
// SLOs: --slo-ttft/--slo-tpot in ms, or --slo-scale K: K x the unloaded TTFT/TPOT, measured first
//   with --unloaded-requests sequential requests at the median lengths of the run.
// While it runs, /metrics is polled each --metrics-interval for nestedfp_steps_total and
//   nestedfp_step_tokens_total by precision (the precision-share plot: FP16 share of steps and
//   tokens, steps/s and arrival rate per interval; 0.5 s resolves one surge).
// Output: a table on stdout; with --out DIR also bench_serve_<mode>.json, latency_over_time.png and
//   precision_share.png.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>

#include "bench/bench_client.hpp"
#include "cli/bench_command.hpp"
#include "cli/list_args.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::cli {
namespace {

int median_int(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 1 : v[v.size() / 2];
}

struct Opts {
  std::string url, mode = "throughput", model, api_key, out;
  std::string input_lens = "128,512", output_lens = "64,256", concurrency = "1,4,16";
  int num_prompts = 32;
  std::string trace;
  double time_scale = 1, start = 0, duration = 60, middle_ratio = 1;
  size_t num_requests = 0;
  int max_input_len = 0, max_output_len = 0;
  double slo_ttft_ms = 0, slo_tpot_ms = 0, slo_scale = 0;
  int unloaded_requests = 3;
  std::string token_range = "100:8000";
  bool ignore_eos = false;
  uint64_t seed = 0;
  double metrics_interval = 0.5, timeout = 600;
};

int run(const Opts& o) {
  using namespace nestedfp::bench;
  if (o.mode != "throughput" && o.mode != "trace")
    fail("--mode {}: expected throughput or trace", o.mode);
  Endpoint ep = parse_url(o.url);
  ep.api_key = o.api_key;
  ep.timeout_s = o.timeout;
  ep.model = o.model.empty() ? discover_model(ep) : o.model;
  int32_t lo = 0, hi = 0;
  if (std::sscanf(o.token_range.c_str(), "%d:%d", &lo, &hi) != 2 || lo < 0 || hi <= lo)
    fail("--token-range '{}': expected LO:HI with 0 <= LO < HI (ids below the model's vocab size)",
         o.token_range);

  // The requests of each run, prompts still to be filled.
  struct Run {
    std::string label;
    nlohmann::json params;
    std::vector<RequestSpec> specs;
    int concurrency = 0;  // 0 = open loop
  };
  std::vector<Run> runs;
  std::vector<int> all_in, all_out;
  if (o.mode == "throughput") {
    auto ins = positive_ints(o.input_lens, "--input-lens"),
         outs = positive_ints(o.output_lens, "--output-lens");
    auto concs = positive_ints(o.concurrency, "--concurrency");
    if (o.num_prompts <= 0) fail("--num-prompts must be positive");
    for (int in : ins)
      for (int out : outs)
        for (int c : concs) {
          Run r;
          r.label = fmt::format("in={} out={} conc={}", in, out, c);
          r.params = {{"input_len", in},
                      {"output_len", out},
                      {"concurrency", c},
                      {"num_prompts", o.num_prompts}};
          r.concurrency = c;
          r.specs.resize(size_t(o.num_prompts));
          for (auto& s : r.specs) s.prompt.resize(size_t(in)), s.max_tokens = out;
          runs.push_back(std::move(r));
          all_in.push_back(in), all_out.push_back(out);
        }
  } else {
    if (o.trace.empty())
      fail("--mode trace needs --trace FILE (a TIMESTAMP,ContextTokens,GeneratedTokens CSV)");
    TraceSlice sl{o.start,      o.duration,      o.num_requests,
                  o.time_scale, o.max_input_len, o.max_output_len};
    Run r;
    r.label =
        fmt::format("trace {} x{}", std::filesystem::path(o.trace).stem().string(), o.time_scale);
    r.specs = slice_trace(read_trace(o.trace), sl);
    r.params = {{"trace", o.trace},
                {"start_s", o.start},
                {"duration_s", o.duration},
                {"num_requests", r.specs.size()},
                {"time_scale", o.time_scale},
                {"middle_ratio", o.middle_ratio},
                {"max_input_len", o.max_input_len},
                {"max_output_len", o.max_output_len},
                {"replay_span_s", r.specs.back().arrival_s}};
    for (auto& s : r.specs) all_in.push_back(int(s.prompt.size())), all_out.push_back(s.max_tokens);
    runs.push_back(std::move(r));
  }
  uint64_t seed = o.seed;
  for (auto& r : runs)
    for (auto& s : r.specs) {
      s.prompt = make_prompt(int(s.prompt.size()), lo, hi, seed++);
      s.ignore_eos = o.ignore_eos;
    }

  // SLO targets, possibly as multiples of the unloaded latency.
  Slo slo{o.slo_ttft_ms / 1e3, o.slo_tpot_ms / 1e3};
  nlohmann::json unloaded;
  if (o.slo_scale > 0) {
    RequestSpec probe;
    probe.prompt = make_prompt(median_int(all_in), lo, hi, 0xC0FFEE);
    probe.max_tokens = std::max(2, median_int(all_out));
    probe.ignore_eos = o.ignore_eos;
    std::vector<RequestResult> rs;
    for (int k = 0; k < std::max(1, o.unloaded_requests); ++k)
      rs.push_back(run_request(ep, probe, now_s()));
    Summary u = summarize(rs, {});
    if (u.completed == 0) fail("measuring unloaded latency failed: {}", rs[0].error);
    if (slo.ttft_s <= 0) slo.ttft_s = o.slo_scale * u.ttft.mean;
    if (slo.tpot_s <= 0 && u.tpot.n) slo.tpot_s = o.slo_scale * u.tpot.mean;
    unloaded = {{"requests", u.completed},        {"input_len", probe.prompt.size()},
                {"max_tokens", probe.max_tokens}, {"ttft_ms", u.ttft.mean * 1e3},
                {"tpot_ms", u.tpot.mean * 1e3},   {"slo_scale", o.slo_scale}};
    std::fprintf(stderr,
                 "unloaded latency (%zu requests, %zu in / %d out): TTFT %.1f ms, TPOT %.2f ms -> "
                 "SLO TTFT %.1f ms, TPOT %.2f ms\n",
                 u.completed, probe.prompt.size(), probe.max_tokens, u.ttft.mean * 1e3,
                 u.tpot.mean * 1e3, slo.ttft_s * 1e3, slo.tpot_s * 1e3);
  }

  const double run_start = now_s();
  MetricsPoller poller(ep, run_start, o.metrics_interval);
  std::vector<std::pair<std::string, Summary>> table;
  std::vector<RequestResult> all_results;
  nlohmann::json runs_json = nlohmann::json::array();
  bool any_empty = false;
  for (auto& r : runs) {
    std::fprintf(stderr, "running %s: %zu requests...\n", r.label.c_str(), r.specs.size());
    double t0 = now_s();
    std::vector<RequestResult> res;
    Summary s;
    if (r.concurrency > 0) {
      res = run_closed_loop(ep, r.specs, r.concurrency, run_start);
      s = summarize(res, slo, now_s() - t0);
    } else {
      res = run_open_loop(ep, r.specs, run_start);
      s = summarize(middle_fraction(res, o.middle_ratio), slo);
    }
    if (s.completed == 0) any_empty = true;
    table.emplace_back(r.label, s);
    nlohmann::json reqs = nlohmann::json::array();
    for (auto& x : res) reqs.push_back(to_json(x));
    runs_json.push_back(
        {{"label", r.label}, {"params", r.params}, {"summary", to_json(s)}, {"requests", reqs}});
    all_results.insert(all_results.end(), res.begin(), res.end());
  }
  poller.stop();
  auto samples = poller.samples();

  std::printf("%s", format_table(table).c_str());
  if (samples.size() >= 2) {
    const auto &a = samples.front(), &b = samples.back();
    double d16 = b.steps_fp16 - a.steps_fp16, d8 = b.steps_fp8 - a.steps_fp8;
    double k16 = b.tokens_fp16 - a.tokens_fp16, k8 = b.tokens_fp8 - a.tokens_fp8;
    if (d16 + d8 > 0)
      std::printf(
          "engine steps during the run: %.0f fp16, %.0f fp8 (%.1f%% fp8 steps, %.1f%% fp8 "
          "tokens)\n",
          d16, d8, 100 * d8 / (d16 + d8), k16 + k8 > 0 ? 100 * k8 / (k16 + k8) : 0.0);
  } else if (!poller.saw_metrics()) {
    std::fprintf(stderr,
                 "note: no nestedfp_steps_total metrics at %s/metrics; no precision-share plot\n",
                 o.url.c_str());
  } else {
    std::fprintf(stderr,
                 "note: the run was shorter than two /metrics polls; no precision-share plot\n");
  }

  if (!o.out.empty()) {
    std::filesystem::create_directories(o.out);
    nlohmann::json mj = nlohmann::json::array();
    for (auto& m : samples)
      mj.push_back({{"t_s", m.t_s},
                    {"steps_fp16", m.steps_fp16},
                    {"steps_fp8", m.steps_fp8},
                    {"tokens_fp16", m.tokens_fp16},
                    {"tokens_fp8", m.tokens_fp8}});
    std::time_t now = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    nlohmann::json doc = {{"tool", "nestedfp bench serve"},
                          {"date", stamp},
                          {"url", o.url},
                          {"model", ep.model},
                          {"mode", o.mode},
                          {"seed", o.seed},
                          {"slo", {{"ttft_ms", slo.ttft_s * 1e3}, {"tpot_ms", slo.tpot_s * 1e3}}},
                          {"unloaded", unloaded},
                          {"runs", runs_json},
                          {"precision_metrics", mj}};
    std::string path =
        (std::filesystem::path(o.out) / ("bench_serve_" + o.mode + ".json")).string();
    std::ofstream f(path);
    if (!f) fail("cannot write {}", path);
    f << doc.dump(2) << "\n";
    std::printf("wrote %s\n", path.c_str());
    for (auto& p : write_plots(o.out, all_results, samples,
                               o.mode == "trace" ? runs[0].label : "throughput sweep"))
      std::printf("wrote %s\n", p.c_str());
  }
  if (any_empty) fail("a run completed no requests (see the errors above)");
  return 0;
}

const BenchRegistration reg(
    "serve", "load-test an OpenAI-compatible server (throughput sweep or trace replay)",
    [](CLI::App& app) {
      auto o = std::make_shared<Opts>();
      app.add_option("--url", o->url, "server base URL, e.g. http://127.0.0.1:8000")->required();
      app.add_option("--mode", o->mode, "throughput | trace")->capture_default_str();
      app.add_option("--model", o->model, "model name to send (default: the first of /v1/models)");
      app.add_option("--api-key", o->api_key, "bearer token");
      app.add_option("--out", o->out, "directory for bench_serve_<mode>.json and the PNG plots");
      app.add_option("--input-lens", o->input_lens, "throughput: prompt lengths in tokens")
          ->capture_default_str();
      app.add_option("--output-lens", o->output_lens, "throughput: max_tokens values")
          ->capture_default_str();
      app.add_option("--concurrency", o->concurrency, "throughput: concurrent clients")
          ->capture_default_str();
      app.add_option("--num-prompts", o->num_prompts, "throughput: requests per cell")
          ->capture_default_str();
      app.add_option("--trace", o->trace,
                     "trace: CSV with TIMESTAMP,ContextTokens,GeneratedTokens");
      app.add_option("--time-scale", o->time_scale, "trace: divide inter-arrival times by this")
          ->capture_default_str();
      app.add_option("--start", o->start, "trace: window start, seconds after the first row")
          ->capture_default_str();
      app.add_option("--duration", o->duration, "trace: window length in seconds (0 = to the end)")
          ->capture_default_str();
      app.add_option("--num-requests", o->num_requests,
                     "trace: at most this many requests (0 = all in the window)");
      app.add_option("--middle-ratio", o->middle_ratio,
                     "trace: keep the middle fraction of requests for statistics")
          ->capture_default_str();
      app.add_option("--max-input-len", o->max_input_len, "clamp prompt lengths (0 = no clamp)");
      app.add_option("--max-output-len", o->max_output_len, "clamp output lengths (0 = no clamp)");
      app.add_option("--slo-ttft", o->slo_ttft_ms, "TTFT target in ms");
      app.add_option("--slo-tpot", o->slo_tpot_ms, "TPOT target in ms");
      app.add_option("--slo-scale", o->slo_scale,
                     "targets = K x unloaded TTFT/TPOT (measured first) unless given in ms");
      app.add_option("--unloaded-requests", o->unloaded_requests,
                     "sequential requests for the unloaded latency")
          ->capture_default_str();
      app.add_option("--token-range", o->token_range,
                     "random prompt token ids LO:HI (HI <= vocab size)")
          ->capture_default_str();
      app.add_flag("--ignore-eos", o->ignore_eos,
                   "send ignore_eos=true (vLLM extension; servers may reject it)");
      app.add_option("--seed", o->seed, "seed of the random prompts")->capture_default_str();
      app.add_option("--metrics-interval", o->metrics_interval, "seconds between /metrics polls")
          ->capture_default_str();
      app.add_option("--timeout", o->timeout, "per-request timeout in seconds")
          ->capture_default_str();
      return std::function<int()>([o] { return run(*o); });
    },
    20);

}  // namespace
}  // namespace nestedfp::cli
