#pragma once
// The two nested GEMM families' variant tables as the host-only kernel-table code sees them
// (backend/kernel_table.hpp): names by index, which this build compiled, and the dispatcher built
// over a table. Shared by the cuda backend, `bench kernels` and `tune`, so all three resolve a
// table the same way.
#include <memory>
#include <string>

#include "backend/cuda/kernels.hpp"
#include "backend/cuda/nested_fp16_gemm.hpp"
#include "backend/kernel_table.hpp"

namespace nestedfp::cuda {

inline backend::VariantSet nfp16_variant_set() {
  backend::VariantSet s;
  s.names = nested_fp16_gemm_variant_names();
  for (int i = 0; i < int(s.names.size()); ++i) s.built.push_back(nested_fp16_config_available(i));
  return s;
}

inline backend::VariantSet nfp8_variant_set() {
  backend::VariantSet s;
  s.names = nested_fp8_gemm_variant_names();
  for (int i = 0; i < int(s.names.size()); ++i) s.built.push_back(nested_fp8_gemm_variant_built(i));
  return s;
}

// `spec` = FILE | auto | none (backend::open_kernel_table) for the GPU named `gpu_name`.
inline std::unique_ptr<backend::KernelDispatch> make_kernel_dispatch(const std::string& spec,
                                                                     const std::string& gpu_name) {
  return std::make_unique<backend::KernelDispatch>(backend::open_kernel_table(spec, gpu_name),
                                                   nfp16_variant_set(), nfp8_variant_set());
}

}  // namespace nestedfp::cuda
