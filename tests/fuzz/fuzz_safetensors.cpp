// libFuzzer target for the safetensors header parser: any input either parses into views that
// lie inside the input, or throws nestedfp::Error. Anything else (crash, sanitizer report, other
// exception) is a bug.
#include <cstddef>
#include <cstdint>

#include "nestedfp/error.hpp"
#include "nestedfp/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nestedfp::io;
  try {
    auto f = SafetensorsFile::from_memory(data, size, "fuzz.safetensors");
    unsigned sum = 0;
    for (const TensorView& t : f->tensors()) {
      if (t.data < data || t.nbytes > size || t.data + t.nbytes > data + size) __builtin_trap();
      if (uint64_t(t.numel()) * dtype_size(t.dtype) != t.nbytes) __builtin_trap();
      for (size_t i = 0; i < t.nbytes; ++i) sum += t.data[i];  // ASan checks every byte
      if (f->find(t.name) == nullptr) __builtin_trap();
      if (t.dtype == DType::F16 || t.dtype == DType::BF16 || t.dtype == DType::F32) {
        ConversionReport r;
        if (to_fp16(t, &r).size() != size_t(t.numel())) __builtin_trap();
      }
    }
    for (auto& [k, v] : f->metadata()) sum += unsigned(k.size() + v.size());
    (void)sum;
  } catch (const nestedfp::Error&) {
  }
  return 0;
}
