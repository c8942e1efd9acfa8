#include "bench/e2e_report.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "bench/plot_png.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::bench {
namespace fs = std::filesystem;
namespace {

const std::vector<std::string> kPolicies = {"fp16", "fp8", "dynamic", "slo"};

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  if (!f) fail("e2e-report: cannot open {}", p.string());
  try {
    return nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    fail("e2e-report: {} is not JSON: {}", p.string(), e.what());
  }
}

RequestResult request_from(const nlohmann::json& j) {
  RequestResult r;
  r.ok = j.at("ok").get<bool>();
  r.start_s = j.at("start_s").get<double>();
  r.ttft_s = j.value("ttft_ms", 0.0) / 1e3;
  r.e2e_s = j.value("e2e_ms", 0.0) / 1e3;
  r.prompt_tokens = j.value("prompt_tokens", 0);
  r.output_tokens = j.value("output_tokens", 0);
  r.max_tokens = j.value("max_tokens", 0);
  r.error = j.value("error", std::string());
  return r;
}

double step_share(const std::vector<MetricsSample>& m) {
  if (m.size() < 2) return NAN;
  double d16 = m.back().steps_fp16 - m.front().steps_fp16;
  double d8 = m.back().steps_fp8 - m.front().steps_fp8;
  return d16 + d8 > 0 ? d16 / (d16 + d8) : NAN;
}

// The same over the tokens the steps computed: FP8 steps are the large ones under load, so a
// policy's FP16 share of tokens is below its share of steps.
double token_share(const std::vector<MetricsSample>& m) {
  if (m.size() < 2) return NAN;
  double d16 = m.back().tokens_fp16 - m.front().tokens_fp16;
  double d8 = m.back().tokens_fp8 - m.front().tokens_fp8;
  return d16 + d8 > 0 ? d16 / (d16 + d8) : NAN;
}

std::string pct(double v) { return std::isnan(v) ? "n/a" : fmt::format("{:.1f}%", 100 * v); }

}  // namespace

E2eData load_e2e(const std::string& dir, const E2eOptions& o) {
  if (!fs::is_directory(dir)) fail("e2e-report: {} is not a directory", dir);
  E2eData d;
  std::vector<fs::path> trace_dirs;
  for (auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && e.path().filename().string().rfind("trace-", 0) == 0)
      trace_dirs.push_back(e.path());
  // conv first: its load sweep is the main plot (PREFIX.png).
  std::sort(trace_dirs.begin(), trace_dirs.end(), [](const fs::path& x, const fs::path& y) {
    bool cx = x.filename() == "trace-conv", cy = y.filename() == "trace-conv";
    return cx != cy ? cx : x < y;
  });
  for (auto& td : trace_dirs) {
    TraceExperiment t;
    t.name = td.filename().string().substr(6);
    std::vector<fs::path> run_dirs;
    for (auto& e : fs::directory_iterator(td))
      if (fs::exists(e.path() / "bench_serve_trace.json")) run_dirs.push_back(e.path());
    for (auto& rd : run_dirs) {
      auto j = read_json(rd / "bench_serve_trace.json");
      if (j.contains("model")) d.model = j["model"].get<std::string>();
      const auto& u = j.value("unloaded", nlohmann::json());
      if (u.is_object() && u.contains("ttft_ms") && t.unloaded_ttft_s == 0) {
        t.unloaded_ttft_s = u["ttft_ms"].get<double>() / 1e3;
        t.unloaded_tpot_s = u["tpot_ms"].get<double>() / 1e3;
      }
      std::string name = rd.filename().string();
      auto x = name.rfind("-x");
      if (x == std::string::npos)
        fail("e2e-report: run directory {} is not named <policy>-x<scale>", rd.string());
      TraceRun r;
      r.policy = name.substr(0, x);
      const auto& run = j.at("runs").at(0);
      r.time_scale = run.at("params").at("time_scale").get<double>();
      double span = run["params"].value("replay_span_s", 0.0);
      for (auto& q : run.at("requests")) r.requests.push_back(request_from(q));
      r.rate = span > 0 ? double(r.requests.size()) / span : 0;
      for (auto& m : j.value("precision_metrics", nlohmann::json::array()))
        r.metrics.push_back({m.at("t_s").get<double>(), m.at("steps_fp16").get<double>(),
                             m.at("steps_fp8").get<double>(), m.at("tokens_fp16").get<double>(),
                             m.at("tokens_fp8").get<double>()});
      r.fp16_step_share = step_share(r.metrics);
      r.fp16_token_share = token_share(r.metrics);
      if (std::ifstream sm(rd / "slo-metrics.txt"); sm) {  // written by the script after slo runs
        std::string line;
        while (std::getline(sm, line)) {
          auto sp = line.rfind(' ');
          if (sp == std::string::npos) continue;
          if (line.rfind("nestedfp_slo_target_seconds{target=\"ttft\"}", 0) == 0)
            r.slo_ttft_s = std::atof(line.c_str() + sp + 1);
          if (line.rfind("nestedfp_slo_target_seconds{target=\"tpot\"}", 0) == 0)
            r.slo_tpot_s = std::atof(line.c_str() + sp + 1);
        }
      }
      t.runs.push_back(std::move(r));
    }
    if (t.runs.empty()) continue;
    if (t.unloaded_ttft_s <= 0)
      fail("e2e-report: no run under {} recorded the unloaded latency (bench serve --slo-scale)",
           td.string());
    for (auto& r : t.runs)
      for (double k : o.slo_scales)
        r.at_scale.push_back(summarize(middle_fraction(r.requests, o.middle_ratio),
                                       Slo{k * t.unloaded_ttft_s, k * t.unloaded_tpot_s}));
    std::sort(t.runs.begin(), t.runs.end(), [](const TraceRun& a, const TraceRun& b) {
      auto ia = std::find(kPolicies.begin(), kPolicies.end(), a.policy) - kPolicies.begin();
      auto ib = std::find(kPolicies.begin(), kPolicies.end(), b.policy) - kPolicies.begin();
      return std::tie(a.time_scale, ia, a.policy) < std::tie(b.time_scale, ib, b.policy);
    });
    d.traces.push_back(std::move(t));
  }
  fs::path tp = fs::path(dir) / "throughput";
  if (fs::is_directory(tp)) {
    for (auto& e : fs::directory_iterator(tp)) {
      fs::path f = e.path() / "bench_serve_throughput.json";
      if (!fs::exists(f)) continue;
      std::string engine = e.path().filename().string();
      auto j = read_json(f);
      for (auto& run : j.at("runs")) {
        const auto& p = run.at("params");
        int in = p.at("input_len").get<int>(), out = p.at("output_len").get<int>(),
            c = p.at("concurrency").get<int>();
        auto it = std::find_if(d.grid.begin(), d.grid.end(), [&](const ThroughputCell& x) {
          return x.input_len == in && x.output_len == out && x.concurrency == c;
        });
        if (it == d.grid.end()) it = d.grid.insert(d.grid.end(), ThroughputCell{in, out, c, {}});
        it->out_tok_s[engine] = run.at("summary").at("output_token_throughput").get<double>();
      }
    }
    std::sort(d.grid.begin(), d.grid.end(), [](const ThroughputCell& a, const ThroughputCell& b) {
      return std::tie(a.input_len, a.output_len, a.concurrency) <
             std::tie(b.input_len, b.output_len, b.concurrency);
    });
  }
  if (d.traces.empty() && d.grid.empty())
    fail(
        "e2e-report: {} holds no trace-*/<policy>-x<scale>/bench_serve_trace.json and no "
        "throughput/<engine>/bench_serve_throughput.json",
        dir);
  return d;
}

namespace {

// How far attainment b falls short of a, in points and requests, beside the sampling error of the
// difference as if the two runs were independent binomials over their middle requests. Verdicts
// stay strict. A yardstick, not a test: both runs replay the same requests (paired) and misses
// cluster in bursts.
struct Gap {
  double points = 0, two_se = 0;
  long requests = 0;
  size_t n = 0;
  bool within_noise() const { return points <= two_se; }
  std::string text() const {
    return fmt::format("gap {:.1f} points = {} of {} requests, 2 s.e. {:.1f}", points, requests, n,
                       two_se);
  }
};
Gap gap(const Summary& a, const Summary& b) {
  Gap g;
  const double pa = a.slo_attainment, pb = b.slo_attainment;
  const double na = std::max<double>(1, double(a.requests)),
               nb = std::max<double>(1, double(b.requests));
  g.points = 100 * (pa - pb);
  g.two_se = 200 * std::sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb);
  g.n = b.requests;
  g.requests = std::lround((pa - pb) * nb);
  return g;
}

}  // namespace

std::vector<Goal> evaluate_goals(const E2eData& d, const E2eOptions& o) {
  std::vector<Goal> goals;
  {  // 1. FP8 throughput >= 1.6x FP16 (geometric mean over the grid, nested weights)
    Goal g;
    g.name = "NestedFP8 throughput >= 1.6x NestedFP16 (geometric mean over the grid)";
    double lsum = 0, lsum_plain = 0;
    int n = 0, n_plain = 0;
    double worst = 1e30;
    for (auto& c : d.grid) {
      auto f8 = c.out_tok_s.find("nested-fp8"), f16 = c.out_tok_s.find("nested-fp16"),
           pl = c.out_tok_s.find("fp16-plain");
      if (f8 == c.out_tok_s.end() || f16 == c.out_tok_s.end() || f16->second <= 0) continue;
      double r = f8->second / f16->second;
      lsum += std::log(r), ++n, worst = std::min(worst, r);
      if (pl != c.out_tok_s.end() && pl->second > 0)
        lsum_plain += std::log(f8->second / pl->second), ++n_plain;
    }
    if (n > 0) {
      double gm = std::exp(lsum / n);
      g.evaluated = true, g.met = gm >= 1.6;
      g.detail = fmt::format("{:.2f}x over {} cells (lowest cell {:.2f}x)", gm, n, worst);
      if (n_plain)
        g.detail += fmt::format("; NestedFP8 / plain FP16 {:.2f}x", std::exp(lsum_plain / n_plain));
    } else {
      g.detail = "no throughput grid with both nested engines";
    }
    goals.push_back(g);
  }
  auto find = [](const TraceExperiment& t, const std::string& p, double scale) -> const TraceRun* {
    for (auto& r : t.runs)
      if (r.policy == p && r.time_scale == scale) return &r;
    return nullptr;
  };
  Goal g2, g3;
  g2.name = "at every load, dynamic or slo attains >= fp8's SLO attainment with >= 50% FP16 steps";
  g3.name = "slo's SLO attainment >= dynamic's at every load";
  int checked2 = 0, failed2 = 0, checked3 = 0, failed3 = 0, noise2 = 0, noise3 = 0;
  std::string bad2, bad3;
  for (auto& t : d.traces) {
    std::set<double> scales;
    for (auto& r : t.runs) scales.insert(r.time_scale);
    for (double s : scales) {
      const TraceRun *f8 = find(t, "fp8", s), *dy = find(t, "dynamic", s), *sl = find(t, "slo", s);
      for (size_t k = 0; k < o.slo_scales.size(); ++k) {
        auto att = [&](const TraceRun* r) { return r->at_scale[k].slo_attainment; };
        std::string where = fmt::format("{} x{} SLO {}x", t.name, s, o.slo_scales[k]);
        if (f8 && (dy || sl)) {
          ++checked2;
          auto ok = [&](const TraceRun* r) {
            return r && att(r) >= att(f8) && r->fp16_step_share >= 0.5;
          };
          if (!ok(dy) && !ok(sl)) {
            ++failed2;
            bad2 += fmt::format("; {}: fp8 {}, dynamic {} ({} FP16), slo {} ({} FP16)", where,
                                pct(att(f8)), dy ? pct(att(dy)) : "-",
                                dy ? pct(dy->fp16_step_share) : "-", sl ? pct(att(sl)) : "-",
                                sl ? pct(sl->fp16_step_share) : "-");
            // The closest policy that kept half its steps in FP16: is its shortfall noise?
            const TraceRun* best = nullptr;
            for (const TraceRun* r : {dy, sl})
              if (r && r->fp16_step_share >= 0.5 && (!best || att(r) > att(best))) best = r;
            if (best) {
              const Gap g = gap(f8->at_scale[k], best->at_scale[k]);
              noise2 += g.within_noise();
              bad2 += fmt::format(" [{}: {}]", best->policy, g.text());
            }
          }
        }
        if (dy && sl) {
          ++checked3;
          if (att(sl) < att(dy)) {
            ++failed3;
            const Gap g = gap(dy->at_scale[k], sl->at_scale[k]);
            noise3 += g.within_noise();
            bad3 += fmt::format("; {}: slo {} < dynamic {} [{}]", where, pct(att(sl)), pct(att(dy)),
                                g.text());
          }
        }
      }
    }
  }
  g2.evaluated = checked2 > 0, g2.met = checked2 > 0 && failed2 == 0;
  auto noise = [](int n, int failed) {
    return failed ? fmt::format(" ({} of them within 2 standard errors of sampling)", n)
                  : std::string();
  };
  g2.detail = checked2 ? fmt::format("{} of {} (load, SLO) points fail{}{}", failed2, checked2,
                                     noise(noise2, failed2), bad2)
                       : "no trace runs with fp8 and dynamic/slo";
  g3.evaluated = checked3 > 0, g3.met = checked3 > 0 && failed3 == 0;
  g3.detail = checked3 ? fmt::format("{} of {} (load, SLO) points fail{}{}", failed3, checked3,
                                     noise(noise3, failed3), bad3)
                       : "no trace runs with both dynamic and slo";
  goals.push_back(g2);
  goals.push_back(g3);
  return goals;
}

std::string slo_spec_from(const std::string& path, double scale) {
  auto j = read_json(path);
  const auto& u = j.value("unloaded", nlohmann::json());
  if (!u.is_object() || !u.contains("ttft_ms"))
    fail("e2e-report: {} has no unloaded latency (run bench serve with --slo-scale)", path);
  return fmt::format("slo:ttft={:.1f},tpot={:.2f}", scale * u["ttft_ms"].get<double>(),
                     scale * u["tpot_ms"].get<double>());
}

}  // namespace nestedfp::bench
