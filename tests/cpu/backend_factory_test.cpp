// make_backend: the one place that picks a backend (auto | cpu | cuda) and explains refusals.
#include <gtest/gtest.h>

#include <string>

#include "nestedfp/backend.hpp"
#include "nestedfp/error.hpp"

using namespace nestedfp;

namespace {
std::string error_of(const backend::BackendOptions& o) {
  try {
    backend::make_backend(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(BackendFactory, CpuAndUnknownDevices) {
  backend::BackendOptions o;
  o.device = "cpu";
  o.cpu_threads = 1;
  auto be = backend::make_backend(o);
  ASSERT_TRUE(be);
  EXPECT_FALSE(be->is_gpu());
  EXPECT_NE(be->name().find("cpu"), std::string::npos);
  o.device = "tpu";
  EXPECT_NE(error_of(o).find("unknown device 'tpu'"), std::string::npos) << error_of(o);
}

// A kernel-table path that does not exist is refused on every backend (a typo must not pass
// silently on the cpu backend, which has no GEMM variants and otherwise ignores the table).
TEST(BackendFactory, MissingKernelTableFileIsRefused) {
  backend::BackendOptions o;
  o.device = "cpu";
  o.cpu_threads = 1;
  o.kernel_table = "/nonexistent/h200.json";
  EXPECT_NE(error_of(o).find("--kernel-table /nonexistent/h200.json: no such file"),
            std::string::npos)
      << error_of(o);
  o.kernel_table = "auto";
  EXPECT_EQ(error_of(o), "");
  o.kernel_table = "none";
  EXPECT_EQ(error_of(o), "");
}

#ifndef NESTEDFP_HAVE_CUDA
// A build without CUDA: auto falls back to the cpu backend; asking for cuda says why not and what
// to do instead.
TEST(BackendFactory, CudaWithoutCudaBuildIsRefusedClearly) {
  backend::BackendOptions o;
  o.cpu_threads = 1;
  o.device = "auto";
  EXPECT_FALSE(backend::make_backend(o)->is_gpu());
  EXPECT_NE(backend::describe_auto_device().find("cpu"), std::string::npos);
  o.device = "cuda";
  const std::string e = error_of(o);
  EXPECT_NE(e.find("built without CUDA"), std::string::npos) << e;
  EXPECT_NE(e.find("--device cpu"), std::string::npos) << e;
}
#endif
