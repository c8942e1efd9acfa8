// The e2e report's Markdown, JSON and plots (e2e_report.hpp).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>

#include "bench/e2e_report.hpp"
#include "bench/plot_png.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::bench {
namespace {

const std::vector<std::string> kEngines = {"fp16-plain", "nested-fp16", "nested-fp8"};

std::string pct(double v) { return std::isnan(v) ? "n/a" : fmt::format("{:.1f}%", 100 * v); }
std::string ms3(const Dist& d) {
  return d.n ? fmt::format("{:.0f} / {:.0f} / {:.0f}", d.p50 * 1e3, d.p90 * 1e3, d.p99 * 1e3) : "-";
}
std::string ms3f(const Dist& d) {
  return d.n ? fmt::format("{:.1f} / {:.1f} / {:.1f}", d.p50 * 1e3, d.p90 * 1e3, d.p99 * 1e3) : "-";
}
plot::Rgb policy_color(const std::string& p) {
  if (p == "fp16") return plot::palette(0);
  if (p == "fp8") return plot::palette(3);
  if (p == "dynamic") return plot::palette(1);
  return plot::palette(2);
}

std::vector<std::string> policies_of(const TraceExperiment& t) {
  std::vector<std::string> out;
  for (auto& r : t.runs)
    if (std::find(out.begin(), out.end(), r.policy) == out.end()) out.push_back(r.policy);
  return out;
}

// Load sweep (throughput, attainment per SLO scale) and one surge: the highest load, where the
// adaptive policies switch most.
void trace_png(const TraceExperiment& t, const E2eOptions& o, const std::string& path) {
  using plot::Chart;
  using plot::Series;
  std::vector<Chart> charts;
  Chart thr{t.name + ": output throughput against load",
            "offered load (requests/s)",
            "output tokens/s",
            {}};
  std::vector<Chart> att;
  for (double k : o.slo_scales) {
    Chart c{fmt::format("SLO attainment ({}x unloaded TTFT and TPOT, middle {:.0f}%)", k,
                        o.middle_ratio * 100),
            "offered load (requests/s)",
            "attainment",
            {}};
    c.y_min = 0, c.y_max = 1;
    att.push_back(c);
  }
  for (auto& p : policies_of(t)) {
    Series s{p, {}, {}, policy_color(p), true, true};
    std::vector<Series> a(o.slo_scales.size(), s);
    for (auto& r : t.runs) {
      if (r.policy != p) continue;
      s.x.push_back(r.rate), s.y.push_back(r.at_scale[0].output_token_throughput);
      for (size_t k = 0; k < a.size(); ++k)
        a[k].x.push_back(r.rate), a[k].y.push_back(r.at_scale[k].slo_attainment);
    }
    thr.series.push_back(s);
    for (size_t k = 0; k < a.size(); ++k) att[k].series.push_back(a[k]);
  }
  charts.push_back(thr);
  for (auto& c : att) charts.push_back(c);

  double top = 0;
  for (auto& r : t.runs) top = std::max(top, r.time_scale);
  Chart share{fmt::format("One surge (x{}): FP16 share of engine steps over time", top),
              "time (s)",
              "FP16 share of steps",
              {}};
  share.y_min = 0, share.y_max = 1;
  Chart load{"Arrival rate in that replay", "time (s)", "requests/s", {}};
  for (auto& r : t.runs) {
    if (r.time_scale != top || r.metrics.size() < 2) continue;
    std::vector<double> sends;
    for (auto& q : r.requests) sends.push_back(q.start_s);
    auto tl = precision_timeline(r.metrics, sends);
    if (r.policy != "fp16" && r.policy != "fp8")
      share.series.push_back(
          {r.policy, tl.t_s, tl.fp16_step_share, policy_color(r.policy), true, true});
    if (load.series.empty())
      load.series.push_back(
          {"requests sent/s", tl.t_s, tl.arrivals_per_s, plot::palette(7), true, false});
  }
  double t_end = 0;  // one time axis for the share and the arrivals
  for (auto* c : {&share, &load})
    for (auto& se : c->series)
      for (double x : se.x) t_end = std::max(t_end, x);
  share.x_min = load.x_min = 0, share.x_max = load.x_max = t_end;
  if (!share.series.empty()) charts.push_back(share), charts.push_back(load);
  plot::save_charts_png(path, charts, 900, 300);
}

void grid_png(const E2eData& d, const std::string& path) {
  using plot::Chart;
  using plot::Series;
  std::vector<Chart> charts;
  std::set<std::pair<int, int>> shapes;
  for (auto& c : d.grid) shapes.insert({c.input_len, c.output_len});
  for (auto [in, out] : shapes) {
    Chart ch{fmt::format("Closed loop, input {} / output {} tokens", in, out),
             "concurrency",
             "output tokens/s",
             {}};
    for (size_t e = 0; e < kEngines.size(); ++e) {
      Series s{kEngines[e], {}, {}, plot::palette(e), true, true};
      for (auto& c : d.grid)
        if (c.input_len == in && c.output_len == out && c.out_tok_s.count(kEngines[e]))
          s.x.push_back(c.concurrency), s.y.push_back(c.out_tok_s.at(kEngines[e]));
      if (!s.x.empty()) ch.series.push_back(s);
    }
    charts.push_back(ch);
  }
  plot::save_charts_png(path, charts, 900, 260);
}

}  // namespace

std::vector<std::string> write_e2e_report(const E2eData& d, const E2eOptions& o,
                                          const std::string& prefix) {
  std::vector<std::string> written;
  auto parent = std::filesystem::path(prefix).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  auto goals = evaluate_goals(d, o);
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));

  std::string md = fmt::format(
      "# End-to-end: precision policies under load\n\n{}; model `{}`; "
      "device: {}; commit {}; {}.\n\n",
      o.title, d.model, o.device.empty() ? "?" : o.device, o.commit.empty() ? "?" : o.commit,
      stamp);
  if (!o.command.empty()) md += fmt::format("Reproduce: `{}`\n\n", o.command);
  std::string multiples;
  for (size_t k = 0; k < o.slo_scales.size(); ++k)
    multiples += fmt::format("{}{}x",
                             k == 0                         ? ""
                             : k + 1 == o.slo_scales.size() ? " and "
                                                            : ", ",
                             o.slo_scales[k]);
  md += fmt::format(
      "Trace statistics keep the middle {:.0f}% of requests by send time; SLO targets are {} "
      "the unloaded FP16 TTFT and TPOT (measured first, at the trace window's median lengths); a "
      "request meets the SLO when it meets both. Policies are switched with POST "
      "/admin/precision on one server; `dynamic` switches at half the token budget (1024 of "
      "2048 on the GPU, the original system's rule); `slo`'s targets are given below each trace "
      "table.\n\n"
      "## Goals\n\n| goal | result | numbers |\n|---|---|---|\n",
      o.middle_ratio * 100, multiples);
  for (auto& g : goals)
    md += fmt::format("| {} | {} | {} |\n", g.name,
                      !g.evaluated ? "not evaluated"
                      : g.met      ? "**met**"
                                   : "**not met**",
                      g.detail);

  nlohmann::json jt = nlohmann::json::array();
  for (size_t ti = 0; ti < d.traces.size(); ++ti) {
    const auto& t = d.traces[ti];
    md += fmt::format(
        "\n## Trace replay: {}\n\nUnloaded FP16: TTFT {:.1f} ms, TPOT {:.2f} ms.\n\n"
        "| time scale | offered req/s | policy |",
        t.name, t.unloaded_ttft_s * 1e3, t.unloaded_tpot_s * 1e3);
    for (double k : o.slo_scales) md += fmt::format(" SLO {}x |", k);
    md +=
        " FP16 steps | FP16 tokens | TTFT ms p50/p90/p99 | TPOT ms p50/p90/p99 | output tok/s | "
        "ok/sent |\n|";
    for (size_t i = 0; i < 9 + o.slo_scales.size(); ++i) md += "---|";
    md += "\n";
    for (auto& r : t.runs) {
      const Summary& s = r.at_scale[0];
      md += fmt::format("| {} | {:.2f} | {} |", r.time_scale, r.rate, r.policy);
      nlohmann::json ja = nlohmann::json::array();
      for (auto& a : r.at_scale)
        md += fmt::format(" {} |", pct(a.slo_attainment)), ja.push_back(a.slo_attainment);
      size_t ok = std::count_if(r.requests.begin(), r.requests.end(),
                                [](const RequestResult& q) { return q.ok; });
      md += fmt::format(" {} | {} | {} | {} | {:.0f} | {}/{} |\n", pct(r.fp16_step_share),
                        pct(r.fp16_token_share), ms3(s.ttft), ms3f(s.tpot),
                        s.output_token_throughput, ok, r.requests.size());
      jt.push_back(
          {{"trace", t.name},
           {"policy", r.policy},
           {"time_scale", r.time_scale},
           {"offered_rps", r.rate},
           {"slo_attainment", ja},
           {"fp16_step_share",
            std::isnan(r.fp16_step_share) ? nlohmann::json() : nlohmann::json(r.fp16_step_share)},
           {"fp16_token_share",
            std::isnan(r.fp16_token_share) ? nlohmann::json() : nlohmann::json(r.fp16_token_share)},
           {"summary", to_json(s)}});
    }
    for (auto& r : t.runs)
      if (r.slo_ttft_s > 0 || r.slo_tpot_s > 0) {
        md += fmt::format(
            "\nThe slo policy's targets: TTFT {:.1f} ms, TPOT {:.2f} ms ({:.1f}x and "
            "{:.1f}x unloaded).\n",
            r.slo_ttft_s * 1e3, r.slo_tpot_s * 1e3, r.slo_ttft_s / t.unloaded_ttft_s,
            t.unloaded_tpot_s > 0 ? r.slo_tpot_s / t.unloaded_tpot_s : 0.0);
        break;
      }
    std::string png = ti == 0 ? prefix + ".png" : prefix + "-" + t.name + ".png";
    trace_png(t, o, png);
    written.push_back(png);
    md += fmt::format("\n![{}](./{})\n", t.name, std::filesystem::path(png).filename().string());
  }

  if (!d.grid.empty()) {
    md +=
        "\n## Throughput grid (closed loop, output tokens/s)\n\n| in | out | concurrency | "
        "plain FP16 | NestedFP16 | NestedFP8 | NestedFP8 / NestedFP16 | NestedFP8 / plain FP16 "
        "|\n|---|---|---|---|---|---|---|---|\n";
    auto cell = [](const ThroughputCell& c, const std::string& e) {
      auto it = c.out_tok_s.find(e);
      return it == c.out_tok_s.end() ? NAN : it->second;
    };
    for (auto& c : d.grid) {
      double pl = cell(c, "fp16-plain"), f16 = cell(c, "nested-fp16"), f8 = cell(c, "nested-fp8");
      auto num = [](double v) {
        return std::isnan(v) ? std::string("-") : fmt::format("{:.0f}", v);
      };
      auto ratio = [](double a, double b) {
        return std::isnan(a) || std::isnan(b) || b <= 0 ? std::string("-")
                                                        : fmt::format("{:.2f}x", a / b);
      };
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", c.input_len, c.output_len,
                        c.concurrency, num(pl), num(f16), num(f8), ratio(f8, f16), ratio(f8, pl));
    }
    std::string png = prefix + "-throughput.png";
    grid_png(d, png);
    written.push_back(png);
    md += fmt::format("\n![throughput](./{})\n", std::filesystem::path(png).filename().string());
  }

  std::ofstream(prefix + ".md") << md;
  written.insert(written.begin(), prefix + ".md");
  nlohmann::json jg = nlohmann::json::array();
  for (auto& g : goals)
    jg.push_back(
        {{"goal", g.name}, {"evaluated", g.evaluated}, {"met", g.met}, {"detail", g.detail}});
  nlohmann::json jgrid = nlohmann::json::array();
  for (auto& c : d.grid)
    jgrid.push_back({{"input_len", c.input_len},
                     {"output_len", c.output_len},
                     {"concurrency", c.concurrency},
                     {"output_tok_s", c.out_tok_s}});
  nlohmann::json doc = {{"tool", "nestedfp bench e2e-report"},
                        {"date", stamp},
                        {"model", d.model},
                        {"device", o.device},
                        {"commit", o.commit},
                        {"command", o.command},
                        {"slo_scales", o.slo_scales},
                        {"middle_ratio", o.middle_ratio},
                        {"goals", jg},
                        {"trace_runs", jt},
                        {"throughput_grid", jgrid}};
  std::ofstream(prefix + ".json") << doc.dump(2) << "\n";
  written.insert(written.begin() + 1, prefix + ".json");
  return written;
}

}  // namespace nestedfp::bench
