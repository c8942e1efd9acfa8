// Backend-independent helpers of nestedfp/backend.hpp.
#include "nestedfp/backend.hpp"

namespace nestedfp::backend {

const char* to_string(WeightFormat f) {
  switch (f) {
    case WeightFormat::Nested: return "nested";
    case WeightFormat::FP8: return "fp8";
    case WeightFormat::FP16: break;
  }
  return "fp16";
}

}  // namespace nestedfp::backend
