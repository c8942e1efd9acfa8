// The NestedWeight overload of nested_fp16_gemm (kernels.hpp) on top of the raw-pointer entry
// point of nested_fp16_gemm.cu. Compiled only once that source exists (CMake defines the macro).
#if NESTEDFP_HAVE_NESTED_FP16
#include "backend/cuda/kernels.hpp"
#include "backend/cuda/nested_fp16_gemm.hpp"

namespace nestedfp::cuda {

void nested_fp16_gemm(const NestedWeight& w, const __half* X, __half* Y, int M, cudaStream_t stream,
                      const GemmConfig* cfg) {
  nested_fp16_gemm(w.upper, w.lower, w.k, X, Y, M, w.N, w.K, stream, cfg ? cfg->variant : -1);
}

}  // namespace nestedfp::cuda
#endif
