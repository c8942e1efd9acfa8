#pragma once
// `nestedfp bench <what>`: each benchmark (kernels, serve, ...) is one src/cli/cmd_bench_<what>.cpp
// with a static BenchRegistration; cmd_bench.cpp turns them into subcommands of `bench`.
#include "cli/command.hpp"

namespace nestedfp::cli {

std::vector<Command>& bench_registry();

struct BenchRegistration {
  BenchRegistration(std::string name, std::string description, Setup setup, int order = 100) {
    bench_registry().push_back({std::move(name), std::move(description), std::move(setup), order});
  }
};

}  // namespace nestedfp::cli
