// `nestedfp bench`: the parent of the benchmark subcommands registered in bench_command.hpp.
#include <algorithm>
#include <memory>

#include "cli/bench_command.hpp"

namespace nestedfp::cli {

std::vector<Command>& bench_registry() {
  static std::vector<Command> commands;
  return commands;
}

namespace {

const Registration reg(
    "bench", "benchmarks (kernels on the GPU, serving against a server)",
    [](CLI::App& app) {
      app.require_subcommand(1);
      auto chosen = std::make_shared<std::function<int()>>();
      auto& subs = bench_registry();
      std::stable_sort(subs.begin(), subs.end(),
                       [](auto& a, auto& b) { return a.order < b.order; });
      for (auto& c : subs) {
        CLI::App* sub = app.add_subcommand(c.name, c.description);
        auto run = c.setup(*sub);
        sub->callback([chosen, run] { *chosen = run; });
      }
      return std::function<int()>([chosen] { return *chosen ? (*chosen)() : 0; });
    },
    60);

}  // namespace
}  // namespace nestedfp::cli
