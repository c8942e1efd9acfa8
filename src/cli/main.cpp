// The one `nestedfp` executable: subcommands come from the registry (see command.hpp).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <exception>

#include "cli/command.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::cli {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace nestedfp::cli

int main(int argc, char** argv) {
  using namespace nestedfp;
  // A peer that closes its socket (a server refusing a connection under load, a client going away)
  // must turn writes into EPIPE errors, not kill the process: `bench serve` once died of SIGPIPE
  // (exit 141) mid-replay when the server answered 503 to a connection past --max-connections.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"nestedfp: one copy of FP16 weights, served in FP16 or FP8 per step"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("nestedfp 0.1.0"));
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "debug logging");

  auto& cmds = cli::registry();
  std::stable_sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.order < b.order; });
  std::function<int()> action;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    auto run = c.setup(*sub);
    sub->callback([&action, run] { action = run; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
  try {
    return action ? action() : 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "nestedfp: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nestedfp: internal error: %s\n", e.what());
    return 2;
  }
}
