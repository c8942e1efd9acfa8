#pragma once
// Subcommands register themselves: each src/cli/cmd_*.cpp defines one static Registration, so a
// new subcommand is a new file and nothing else changes.
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace nestedfp::cli {

// `setup` adds the subcommand's options to `sub` and returns the action to run when it is chosen;
// the action returns the process exit code.
using Setup = std::function<std::function<int()>(CLI::App& sub)>;

struct Command {
  std::string name, description;
  Setup setup;
  int order;  // position in --help
};

std::vector<Command>& registry();

struct Registration {
  Registration(std::string name, std::string description, Setup setup, int order = 100) {
    registry().push_back({std::move(name), std::move(description), std::move(setup), order});
  }
};

}  // namespace nestedfp::cli
