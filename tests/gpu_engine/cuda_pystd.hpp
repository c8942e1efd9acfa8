#pragma once
// pystd-16m streamed onto the cuda backend, for the GPU engine tests.
#include <memory>
#include <string>

#include "cpu/pystd_fixture.hpp"
#include "engine/model_runner.hpp"

namespace nestedfp::testing_pystd {

inline std::unique_ptr<engine::ModelRunner> load_cuda_pystd(const engine::RunnerOptions& ro,
                                                            bool nested = true,
                                                            const std::string& kernel_table = "") {
  backend::BackendOptions bo;
  bo.device = "cuda";
  if (!kernel_table.empty()) bo.kernel_table = kernel_table;
  engine::LoadOptions lo;
  lo.model_dir = kModel;
  lo.nested = nested;
  return engine::ModelRunner::load(backend::make_backend(bo), lo, ro);
}

}  // namespace nestedfp::testing_pystd
