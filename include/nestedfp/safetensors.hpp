#pragma once
// Safetensors reading (memory-mapped, sharded via model.safetensors.index.json) and writing.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace nestedfp::io {

enum class DType { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL };
size_t dtype_size(DType d);
const char* dtype_name(DType d);          // safetensors spelling, e.g. "F16"
DType parse_dtype(const std::string& s);  // throws Error on an unknown dtype

struct TensorView {
  std::string name;
  DType dtype = DType::F16;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the memory map; valid while the file is open
  size_t nbytes = 0;
  std::string file;  // the shard it came from (for error messages)
  int64_t numel() const;
};

// One .safetensors file, memory-mapped. Every header problem throws Error naming the file:
// truncation, a header length past the end (or above 100 MB), invalid or deeply nested JSON,
// malformed entries, unknown dtypes, negative or overflowing shapes, offsets out of range or
// with begin > end, byte sizes that disagree with shape x dtype, overlapping tensors.
// Policy: unused bytes between or after tensors (gaps) are allowed, since some writers align
// tensor data; tensor data may therefore be unaligned, so read it with memcpy or check alignment.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  // Parses a complete file image held in memory (used by the fuzzer and tests); copies nothing.
  static std::unique_ptr<SafetensorsFile> from_memory(const uint8_t* data, size_t size,
                                                      const std::string& name);
  ~SafetensorsFile();
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  void parse(const uint8_t* data, size_t size);
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All weights of a model directory: model.safetensors, or the shards an index names.
// With model.safetensors.index.json, exactly the tensors of its weight_map are visible; a missing
// shard or a tensor absent from its shard is an Error naming it. Copies share the memory maps.
class WeightStore {
 public:
  static WeightStore open_dir(const std::string& dir);
  const TensorView& get(const std::string& name) const;   // throws Error if absent
  const TensorView* find(const std::string& name) const;  // nullptr if absent
  std::vector<std::string> names() const;                 // sorted
  size_t total_bytes() const;

 private:
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// FP16 copy of a floating tensor (F16 copied, BF16/F32 rounded to nearest even).
// Counts are added to the report passed in; NaN and +-inf inputs are not counted.
struct ConversionReport {
  int64_t overflow = 0;   // finite values that became +-inf (not counted as inexact)
  int64_t inexact = 0;    // lost bits (includes underflow to zero/subnormal)
  int64_t underflow = 0;  // nonzero values that became zero
};
std::vector<uint16_t> to_fp16(const TensorView& t, ConversionReport* report = nullptr);

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace nestedfp::io
