// make_backend: the one place that decides which backend a command runs on.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "nestedfp/backend.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::backend {

#ifdef NESTEDFP_HAVE_CUDA
// src/backend/cuda/runtime: empty when device `gpu` can run the cuda backend, else why not.
std::string cuda_unusable_reason(int gpu);
std::unique_ptr<Backend> make_cuda_backend(int gpu, const std::string& kernel_table);
#endif

namespace {
std::string cuda_reason(int gpu) {
#ifdef NESTEDFP_HAVE_CUDA
  return cuda_unusable_reason(gpu);
#else
  (void)gpu;
  return "this nestedfp was built without CUDA (build the `cuda` preset on a machine with nvcc)";
#endif
}
}  // namespace

std::string describe_auto_device() {
  const std::string why = cuda_reason(0);
  return why.empty() ? "cuda (a Hopper GPU is present)" : "cpu (" + why + ")";
}

std::unique_ptr<Backend> make_backend(const BackendOptions& o) {
  auto cpu = [&] {
    if (o.kernel_table != "auto" && o.kernel_table != "none") {
      // A mistyped path fails here as on the GPU, rather than only where the table is read.
      if (!std::filesystem::is_regular_file(o.kernel_table))
        fail(
            "--kernel-table {}: no such file (give a table written by `nestedfp tune`, auto or "
            "none)",
            o.kernel_table);
      spdlog::warn("--kernel-table {}: the cpu backend has no GEMM variants; ignored",
                   o.kernel_table);
    }
    return make_cpu_backend(o.cpu_threads);
  };
  if (o.device == "cpu") return cpu();
  if (o.device != "cuda" && o.device != "auto")
    fail("unknown device '{}' (use auto, cpu or cuda)", o.device);
  const std::string why = cuda_reason(o.gpu);
  if (!why.empty()) {
    if (o.device == "cuda")
      fail("--device cuda: {}; use --device cpu (or auto) to run on the cpu backend", why);
    spdlog::info("device auto: cpu backend ({})", why);
    return cpu();
  }
#ifdef NESTEDFP_HAVE_CUDA
  return make_cuda_backend(o.gpu, o.kernel_table);
#else
  fail("internal: cuda reported usable in a build without CUDA");
#endif
}

}  // namespace nestedfp::backend
