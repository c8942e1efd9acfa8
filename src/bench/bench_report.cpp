// Bench reports: JSON records, the console table, and the PNG plots.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "bench/bench_client.hpp"
#include "bench/plot_png.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::bench {

namespace {
nlohmann::json dist_ms(const Dist& d) {
  return {{"mean", d.mean * 1e3},
          {"p50", d.p50 * 1e3},
          {"p90", d.p90 * 1e3},
          {"p99", d.p99 * 1e3},
          {"min", d.min * 1e3},
          {"max", d.max * 1e3},
          {"n", d.n}};
}
}  // namespace

nlohmann::json to_json(const Summary& s) {
  nlohmann::json j = {
      {"requests", s.requests},
      {"completed", s.completed},
      {"failed", s.failed},
      {"duration_s", s.duration_s},
      {"input_tokens", s.input_tokens},
      {"output_tokens", s.output_tokens},
      {"request_throughput", s.request_throughput},
      {"output_token_throughput", s.output_token_throughput},
      {"total_token_throughput", s.total_token_throughput},
      {"ttft_ms", dist_ms(s.ttft)},
      {"tpot_ms", dist_ms(s.tpot)},
      {"itl_ms", dist_ms(s.itl)},
      {"e2e_ms", dist_ms(s.e2e)},
      {"slo", {{"ttft_ms", s.slo.ttft_s * 1e3}, {"tpot_ms", s.slo.tpot_s * 1e3}}},
      {"slo_ttft_attainment", s.slo_ttft_attainment},
      {"slo_tpot_attainment", s.slo_tpot_attainment},
      {"slo_attainment", s.slo_attainment},
      {"goodput", s.goodput},
      {"errors", s.errors},
  };
  return j;
}

nlohmann::json to_json(const RequestResult& r) {
  nlohmann::json j = {{"ok", r.ok},
                      {"start_s", r.start_s},
                      {"ttft_ms", r.ttft_s * 1e3},
                      {"e2e_ms", r.e2e_s * 1e3},
                      {"prompt_tokens", r.prompt_tokens},
                      {"output_tokens", r.output_tokens},
                      {"max_tokens", r.max_tokens}};
  if (r.output_tokens > 1) j["tpot_ms"] = (r.e2e_s - r.ttft_s) / (r.output_tokens - 1) * 1e3;
  if (!r.ok) j["error"] = r.error;
  return j;
}

std::string format_table(const std::vector<std::pair<std::string, Summary>>& rows) {
  size_t lw = 3;
  for (auto& [label, _] : rows) lw = std::max(lw, label.size());
  std::string out = fmt::format(
      "{:<{}}  {:>9}  {:>7}  {:>7}  {:>9}  {:>9}  {:>31}  {:>31}  {:>15}  {:>17}  {:>6}  {:>7}\n",
      "run", lw, "ok/total", "dur s", "req/s", "out tok/s", "tot tok/s", "TTFT ms mean/p50/p90/p99",
      "TPOT ms mean/p50/p90/p99", "ITL ms p50/p99", "E2E ms mean/p99", "SLO %", "goodput");
  for (auto& [label, s] : rows) {
    auto four = [](const Dist& d) {
      return fmt::format("{:.1f}/{:.1f}/{:.1f}/{:.1f}", d.mean * 1e3, d.p50 * 1e3, d.p90 * 1e3,
                         d.p99 * 1e3);
    };
    out += fmt::format(
        "{:<{}}  {:>9}  {:>7.2f}  {:>7.2f}  {:>9.1f}  {:>9.1f}  {:>31}  {:>31}  {:>15}  {:>17}  "
        "{:>6.1f}  {:>7.2f}\n",
        label, lw, fmt::format("{}/{}", s.completed, s.requests), s.duration_s,
        s.request_throughput, s.output_token_throughput, s.total_token_throughput, four(s.ttft),
        four(s.tpot), fmt::format("{:.1f}/{:.1f}", s.itl.p50 * 1e3, s.itl.p99 * 1e3),
        fmt::format("{:.0f}/{:.0f}", s.e2e.mean * 1e3, s.e2e.p99 * 1e3), s.slo_attainment * 100,
        s.goodput);
    for (auto& e : s.errors) out += fmt::format("    error: {}\n", e);
  }
  return out;
}

std::vector<std::string> write_plots(const std::string& dir,
                                     const std::vector<RequestResult>& results,
                                     const std::vector<MetricsSample>& metrics,
                                     const std::string& title) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("cannot create output directory {}: {}", dir, ec.message());
  std::vector<std::string> written;
  using plot::Chart;
  using plot::Series;

  Series ttft{"TTFT", {}, {}, plot::palette(0), false, true};
  Series tpot{"TPOT", {}, {}, plot::palette(1), false, true};
  Series e2e{"E2E", {}, {}, plot::palette(2), false, true};
  for (auto& r : results) {
    if (!r.ok) continue;
    ttft.x.push_back(r.start_s), ttft.y.push_back(r.ttft_s * 1e3);
    e2e.x.push_back(r.start_s), e2e.y.push_back(r.e2e_s);
    if (r.output_tokens > 1)
      tpot.x.push_back(r.start_s),
          tpot.y.push_back((r.e2e_s - r.ttft_s) / (r.output_tokens - 1) * 1e3);
  }
  std::vector<Chart> lat = {
      {title + ": TTFT per request", "request send time (s)", "TTFT (ms)", {ttft}},
      {"TPOT per request", "request send time (s)", "TPOT (ms)", {tpot}},
      {"End-to-end latency per request", "request send time (s)", "E2E (s)", {e2e}},
  };
  std::string p = (std::filesystem::path(dir) / "latency_over_time.png").string();
  plot::save_charts_png(p, lat, 900, 300);
  written.push_back(p);

  if (metrics.size() >= 2) {
    std::vector<double> sends;
    for (auto& r : results) sends.push_back(r.start_s);
    PrecisionTimeline tl = precision_timeline(metrics, sends);
    Series steps{"FP16 share of steps", tl.t_s, tl.fp16_step_share, plot::palette(0), true, true};
    Series toks{"FP16 share of tokens", tl.t_s, tl.fp16_token_share, plot::palette(4), true, false};
    Series r16{"FP16 steps/s", tl.t_s, tl.fp16_steps_per_s, plot::palette(0), true, false};
    Series r8{"FP8 steps/s", tl.t_s, tl.fp8_steps_per_s, plot::palette(3), true, false};
    Series arr{"requests sent/s", tl.t_s, tl.arrivals_per_s, plot::palette(2), true, true};
    Chart share{title + ": precision share over time", "time (s)", "FP16 share", {steps, toks}};
    share.y_min = 0, share.y_max = 1;
    Chart rate{"Engine steps per second", "time (s)", "steps/s", {r16, r8}};
    Chart load{"Arrival rate", "time (s)", "requests/s", {arr}};
    p = (std::filesystem::path(dir) / "precision_share.png").string();
    plot::save_charts_png(p, {share, rate, load}, 900, 300);
    written.push_back(p);
  }
  return written;
}

PrecisionTimeline precision_timeline(const std::vector<MetricsSample>& m,
                                     const std::vector<double>& send_times_s) {
  PrecisionTimeline tl;
  for (size_t k = 1; k < m.size(); ++k) {
    const auto &a = m[k - 1], &b = m[k];
    double dt = std::max(1e-9, b.t_s - a.t_s);
    double d16 = b.steps_fp16 - a.steps_fp16, d8 = b.steps_fp8 - a.steps_fp8;
    double k16 = b.tokens_fp16 - a.tokens_fp16, k8 = b.tokens_fp8 - a.tokens_fp8;
    tl.t_s.push_back((a.t_s + b.t_s) / 2);
    tl.fp16_step_share.push_back(d16 + d8 > 0 ? d16 / (d16 + d8) : NAN);  // idle: a gap
    tl.fp16_token_share.push_back(k16 + k8 > 0 ? k16 / (k16 + k8) : NAN);
    tl.fp16_steps_per_s.push_back(d16 / dt);
    tl.fp8_steps_per_s.push_back(d8 / dt);
    size_t sent =
        static_cast<size_t>(std::count_if(send_times_s.begin(), send_times_s.end(),
                                          [&](double t) { return t >= a.t_s && t < b.t_s; }));
    tl.arrivals_per_s.push_back(static_cast<double>(sent) / dt);
  }
  return tl;
}

}  // namespace nestedfp::bench
