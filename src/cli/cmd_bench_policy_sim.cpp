// `nestedfp bench policy-sim RUN.json --latency METRICS --policy SPEC...`: precision policies
// replayed in simulated time over a recorded run's requests (src/bench/policy_sim.hpp).
#include <fmt/format.h>

#include <cstdio>
#include <memory>

#include "bench/policy_sim.hpp"
#include "cli/bench_command.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::cli {
namespace {

struct Opts {
  std::string run, latency;
  std::vector<std::string> policies;
  double slo_ttft_ms = 0, slo_tpot_ms = 0, middle_ratio = 0.7;
  bench::SimOptions sim;
};

std::string pct(double num, double den) {
  return den > 0 ? fmt::format("{:.1f}%", 100 * num / den) : "n/a";
}

const BenchRegistration reg(
    "policy-sim",
    "replay a recorded bench serve run's requests through precision policies in simulated time "
    "(a latency model instead of the GPU)",
    [](CLI::App& app) {
      auto a = std::make_shared<Opts>();
      app.add_option("RUN", a->run,
                     "a `bench serve` JSON (its send times, prompt and output lengths)")
          ->required();
      app.add_option("--latency", a->latency,
                     "a /metrics dump of a nested server with its fitted latency model (the e2e "
                     "experiment's slo-metrics.txt)")
          ->required();
      app.add_option("--policy", a->policies,
                     "a --precision spec, repeatable (e.g. fp8, dynamic:threshold=1024, "
                     "slo:ttft=340,tpot=48.4)")
          ->required();
      app.add_option("--slo-ttft", a->slo_ttft_ms,
                     "TTFT target in ms for attainment (and a bare `slo` policy's target)");
      app.add_option("--slo-tpot", a->slo_tpot_ms,
                     "TPOT target in ms for attainment (and a bare `slo` policy's target)");
      app.add_option("--middle-ratio", a->middle_ratio, "share of requests kept for statistics")
          ->capture_default_str();
      app.add_option("--max-num-batched-tokens", a->sim.max_num_batched_tokens,
                     "token budget per step")
          ->capture_default_str();
      app.add_option("--max-num-seqs", a->sim.max_num_seqs, "sequences per step")
          ->capture_default_str();
      return std::function<int()>([a] {
        if (a->slo_ttft_ms < 0 || a->slo_tpot_ms < 0)
          fail("bench policy-sim: --slo-ttft and --slo-tpot are milliseconds >= 0");
        const auto reqs = bench::read_sim_requests(a->run);
        const auto model = bench::read_latency_model(a->latency);
        a->sim.slo_ttft_ms = a->slo_ttft_ms;
        a->sim.slo_tpot_ms = a->slo_tpot_ms;
        const bench::Slo slo{a->slo_ttft_ms / 1e3, a->slo_tpot_ms / 1e3};
        std::printf(
            "%zu requests from %s; step times from %s; SLO TTFT %g ms, TPOT %g ms; middle "
            "%.0f%%\n\n",
            reqs.size(), a->run.c_str(), a->latency.c_str(), a->slo_ttft_ms, a->slo_tpot_ms,
            100 * a->middle_ratio);
        std::printf(
            "| policy | SLO attainment | TTFT met | TPOT met | TTFT ms p50/p90/p99 | TPOT ms "
            "p50/p90 | FP16 steps | FP16 tokens |\n|---|---|---|---|---|---|---|---|\n");
        for (const auto& spec : a->policies) {
          const auto r = bench::simulate(reqs, model, spec, a->sim);
          const auto s = bench::summarize(bench::middle_fraction(r.requests, a->middle_ratio), slo);
          std::printf("| %s | %s | %s | %s | %.0f / %.0f / %.0f | %.1f / %.1f | %s | %s |\n",
                      r.policy.c_str(), pct(s.slo_attainment, 1).c_str(),
                      pct(s.slo_ttft_attainment, 1).c_str(), pct(s.slo_tpot_attainment, 1).c_str(),
                      s.ttft.p50 * 1e3, s.ttft.p90 * 1e3, s.ttft.p99 * 1e3, s.tpot.p50 * 1e3,
                      s.tpot.p90 * 1e3, pct(double(r.fp16_steps), double(r.steps)).c_str(),
                      pct(double(r.fp16_tokens), double(r.tokens)).c_str());
        }
        return 0;
      });
    },
    26);

}  // namespace
}  // namespace nestedfp::cli
