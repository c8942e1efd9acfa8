// Safetensors reader (one file, memory-mapped) and writer.
//
// Validation policy: every header problem is an Error naming the file. Data between or after
// tensors ("gaps") is tolerated, because some writers pad tensor data for alignment; overlapping
// tensor ranges, out-of-range offsets and byte sizes that disagree with shape x dtype are not.
#include "nestedfp/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "nestedfp/error.hpp"

namespace nestedfp::io {

namespace {

// The reference implementation refuses headers above 100 MB; so do we (a corrupt length field
// must not make us parse gigabytes of tensor data as JSON).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// JSON nesting deeper than this is never a valid header; refusing it early bounds parser work.
constexpr int kMaxJsonDepth = 32;
// No tensor can hold more bytes than this; keeps numel * dtype_size far from overflow.
constexpr uint64_t kMaxTensorBytes = uint64_t(1) << 48;

struct DTypeInfo {
  DType d;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::I64, "I64", 8},   {DType::I32, "I32", 4},         {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},     {DType::U8, "U8", 1},           {DType::BOOL, "BOOL", 1},
};

const DTypeInfo& info(DType d) {
  for (auto& i : kDTypes)
    if (i.d == d) return i;
  fail("invalid DType value {}", int(d));
}

// Maximum bracket nesting of a JSON text, ignoring brackets inside strings.
int json_depth(const char* p, size_t n) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < n; ++i) {
    const char c = p[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
      if (max_depth > kMaxJsonDepth) return max_depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

// A JSON integer in [0, 2^63) or an Error naming file, tensor and field.
uint64_t to_index(const nlohmann::json& v, const std::string& file, const std::string& tensor,
                  const char* field) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (x < 0) fail("{}: tensor '{}': {} has a negative value {}", file, tensor, field, x);
    return uint64_t(x);
  }
  fail("{}: tensor '{}': {} must hold integers, found {}", file, tensor, field, v.dump());
}

}  // namespace

size_t dtype_size(DType d) { return info(d).size; }
const char* dtype_name(DType d) { return info(d).name; }

DType parse_dtype(const std::string& s) {
  for (auto& i : kDTypes)
    if (s == i.name) return i.d;
  fail("unknown dtype '{}' (supported: F64 F32 F16 BF16 F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL)",
       s);
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  const size_t size = size_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail(
        "{}: file is {} bytes, shorter than the 8-byte header length; it is truncated or not a "
        "safetensors file",
        path, size);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) fail("{}: mmap failed: {}", path, std::strerror(errno));
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_ = map;
  f->map_size_ = size;
  f->parse(static_cast<const uint8_t*>(map), size);  // on throw, ~SafetensorsFile unmaps
  return f;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::from_memory(const uint8_t* data, size_t size,
                                                              const std::string& name) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  f->parse(data, size);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  for (auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

void SafetensorsFile::parse(const uint8_t* data, size_t size) {
  const std::string& file = path_;
  if (size < 8)
    fail(
        "{}: file is {} bytes, shorter than the 8-byte header length; it is truncated or not a "
        "safetensors file",
        file, size);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | data[i];
  if (header_len > size - 8)
    fail(
        "{}: header length {} runs past the end of the file ({} bytes); the file is truncated "
        "or corrupt",
        file, header_len, size);
  if (header_len > kMaxHeaderBytes)
    fail("{}: header length {} is larger than the {}-byte limit; the file is corrupt", file,
         header_len, kMaxHeaderBytes);
  const char* hp = reinterpret_cast<const char*>(data + 8);
  if (json_depth(hp, header_len) > kMaxJsonDepth)
    fail("{}: header JSON is nested deeper than {} levels; the file is corrupt", file,
         kMaxJsonDepth);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hp, hp + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: header is not valid JSON ({})", file, e.what());
  }
  if (!header.is_object())
    fail("{}: header must be a JSON object, found {}", file, header.type_name());

  const uint8_t* base = data + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<TensorView> tensors;
  std::map<std::string, std::string> metadata;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [begin, end), index in tensors

  for (auto& [key, val] : header.items()) {
    if (key == "__metadata__") {
      if (!val.is_object()) fail("{}: __metadata__ must be an object of strings", file);
      for (auto& [mk, mv] : val.items()) {
        if (!mv.is_string()) fail("{}: __metadata__ value of '{}' must be a string", file, mk);
        metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    if (!val.is_object())
      fail("{}: tensor '{}': entry must be an object, found {}", file, key, val.type_name());
    TensorView t;
    t.name = key;
    t.file = file;
    auto dt = val.find("dtype");
    if (dt == val.end() || !dt->is_string())
      fail("{}: tensor '{}': missing string 'dtype'", file, key);
    try {
      t.dtype = parse_dtype(dt->get<std::string>());
    } catch (const Error& e) {
      fail("{}: tensor '{}': {}", file, key, e.what());
    }
    auto sh = val.find("shape");
    if (sh == val.end() || !sh->is_array())
      fail("{}: tensor '{}': missing array 'shape'", file, key);
    uint64_t elems = 1;
    const uint64_t esize = dtype_size(t.dtype);
    for (auto& d : *sh) {
      const uint64_t dim = to_index(d, file, key, "shape");
      // Checked product: elems * dim * esize must stay <= kMaxTensorBytes.
      if (dim != 0 && elems > kMaxTensorBytes / esize / dim)
        fail("{}: tensor '{}': shape {} is too large (byte size overflows)", file, key, sh->dump());
      elems *= dim;
      t.shape.push_back(int64_t(dim));
    }
    auto off = val.find("data_offsets");
    if (off == val.end() || !off->is_array() || off->size() != 2)
      fail("{}: tensor '{}': missing 'data_offsets' [begin, end]", file, key);
    const uint64_t begin = to_index((*off)[0], file, key, "data_offsets");
    const uint64_t end = to_index((*off)[1], file, key, "data_offsets");
    if (begin > end) fail("{}: tensor '{}': data_offsets begin {} > end {}", file, key, begin, end);
    if (end > data_size)
      fail(
          "{}: tensor '{}': data_offsets [{}, {}] run past the data section ({} bytes); the "
          "file is truncated or corrupt",
          file, key, begin, end, data_size);
    if (end - begin != elems * esize)
      fail("{}: tensor '{}': {} bytes in data_offsets but shape {} of {} needs {}", file, key,
           end - begin, sh->dump(), dtype_name(t.dtype), elems * esize);
    t.data = base + begin;
    t.nbytes = size_t(end - begin);
    ranges.emplace_back(begin, end);
    tensors.push_back(std::move(t));
  }

  // Overlap check on non-empty ranges, sorted by begin.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  const size_t* prev = nullptr;
  for (const size_t& i : order) {
    if (ranges[i].first == ranges[i].second) continue;
    if (prev && ranges[i].first < ranges[*prev].second)
      fail("{}: tensors '{}' [{}, {}) and '{}' [{}, {}) overlap; the file is corrupt", file,
           tensors[*prev].name, ranges[*prev].first, ranges[*prev].second, tensors[i].name,
           ranges[i].first, ranges[i].second);
    prev = &i;
  }
  tensors_ = std::move(tensors);
  metadata_ = std::move(metadata);
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (auto& t : tensors) {
    if (t.name == "__metadata__") fail("{}: '__metadata__' is not a valid tensor name", path);
    if (header.contains(t.name)) fail("{}: tensor '{}' given twice", path, t.name);
    uint64_t elems = 1;
    for (int64_t d : t.shape) {
      if (d < 0) fail("{}: tensor '{}' has a negative dimension", path, t.name);
      elems *= uint64_t(d);
    }
    if (elems * dtype_size(t.dtype) != t.nbytes)
      fail("{}: tensor '{}': {} bytes given but its shape and {} need {}", path, t.name, t.nbytes,
           dtype_name(t.dtype), elems * dtype_size(t.dtype));
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data section starts 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("{}: cannot create: {}", path, std::strerror(errno));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(h.size()) >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(h.data(), std::streamsize(h.size()));
  for (auto& t : tensors)
    if (t.nbytes) out.write(static_cast<const char*>(t.data), std::streamsize(t.nbytes));
  out.close();
  if (!out) fail("{}: write failed (disk full?)", path);
}

}  // namespace nestedfp::io
