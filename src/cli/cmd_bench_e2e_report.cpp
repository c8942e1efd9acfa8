// `nestedfp bench e2e-report DIR --out PREFIX`: the report of scripts/e2e-experiment.sh
// (src/bench/e2e_report.hpp describes the directory layout and the goals).
// `--slo-spec-from FILE --scale K` prints the slo policy spec for K x the unloaded latency that a
// bench serve JSON recorded (the experiment script sets the slo policy with it).
#include <cstdio>
#include <memory>

#include "bench/e2e_report.hpp"
#include "cli/bench_command.hpp"
#include "cli/list_args.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::cli {
namespace {

struct Opts {
  std::string dir, out, slo_spec_from, scales = "10,15";
  double scale = 10;
  bench::E2eOptions o;
};

const BenchRegistration reg(
    "e2e-report", "combine an end-to-end experiment's bench serve JSONs into a report with plots",
    [](CLI::App& app) {
      auto a = std::make_shared<Opts>();
      app.add_option("DIR", a->dir, "experiment directory (scripts/e2e-experiment.sh)");
      app.add_option("--out", a->out,
                     "output prefix: writes PREFIX.md, .json, .png, "
                     "-throughput.png (default DIR/e2e)");
      app.add_option("--slo-scales", a->scales, "SLO targets as multiples of unloaded latency")
          ->capture_default_str();
      app.add_option("--middle-ratio", a->o.middle_ratio, "share of requests kept for statistics")
          ->capture_default_str();
      app.add_option("--title", a->o.title, "what was served")->capture_default_str();
      app.add_option("--device", a->o.device, "the machine, for the report");
      app.add_option("--commit", a->o.commit, "the commit measured");
      app.add_option("--command", a->o.command, "the command that reproduces the experiment");
      app.add_option("--slo-spec-from", a->slo_spec_from,
                     "print the slo spec for --scale x the unloaded latency in this bench serve "
                     "JSON, and exit");
      app.add_option("--scale", a->scale, "with --slo-spec-from")->capture_default_str();
      return std::function<int()>([a] {
        if (!a->slo_spec_from.empty()) {
          std::printf("%s\n", bench::slo_spec_from(a->slo_spec_from, a->scale).c_str());
          return 0;
        }
        if (a->dir.empty()) fail("bench e2e-report: give the experiment directory");
        a->o.slo_scales = positive_doubles(a->scales, "--slo-scales");
        auto d = bench::load_e2e(a->dir, a->o);
        for (auto& f : bench::write_e2e_report(d, a->o, a->out.empty() ? a->dir + "/e2e" : a->out))
          std::printf("wrote %s\n", f.c_str());
        for (auto& g : bench::evaluate_goals(d, a->o))
          std::printf("goal: %s: %s (%s)\n", g.name.c_str(),
                      !g.evaluated ? "not evaluated"
                      : g.met      ? "met"
                                   : "NOT met",
                      g.detail.c_str());
        return 0;
      });
    },
    25);

}  // namespace
}  // namespace nestedfp::cli
