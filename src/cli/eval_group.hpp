#pragma once
// `nestedfp eval <what>`: a subcommand group. Each src/cli/cmd_eval_*.cpp (and cmd_eval.cpp for
// `ppl`) adds itself with a static EvalRegistration, like top-level commands do.
#include "cli/command.hpp"

namespace nestedfp::cli {

std::vector<Command>& eval_registry();

struct EvalRegistration {
  EvalRegistration(std::string name, std::string description, Setup setup, int order = 100) {
    eval_registry().push_back({std::move(name), std::move(description), std::move(setup), order});
  }
};

}  // namespace nestedfp::cli
