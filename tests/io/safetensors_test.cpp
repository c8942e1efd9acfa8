// Safetensors writer -> reader round trips and the reader's answer to corrupt files.
#include "nestedfp/safetensors.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "io_test_util.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::io {
namespace {

using test::image;
using test::TempDir;

const DType kAll[] = {DType::F64,     DType::F32,     DType::F16, DType::BF16,
                      DType::F8_E4M3, DType::F8_E5M2, DType::I64, DType::I32,
                      DType::I16,     DType::I8,      DType::U8,  DType::BOOL};

TEST(Safetensors, DtypeNamesAndSizes) {
  const size_t sizes[] = {8, 4, 2, 2, 1, 1, 8, 4, 2, 1, 1, 1};
  for (size_t i = 0; i < std::size(kAll); ++i) {
    EXPECT_EQ(dtype_size(kAll[i]), sizes[i]) << dtype_name(kAll[i]);
    EXPECT_EQ(parse_dtype(dtype_name(kAll[i])), kAll[i]);
  }
  EXPECT_STREQ(dtype_name(DType::F8_E4M3), "F8_E4M3");
  EXPECT_THROW(parse_dtype("F4"), Error);
  EXPECT_THROW(parse_dtype("f16"), Error);
}

TEST(Safetensors, RoundTripEveryDtype) {
  TempDir tmp;
  const std::string path = tmp.file("all.safetensors");
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<TensorToWrite> tensors;
  for (size_t i = 0; i < std::size(kAll); ++i) {
    const std::vector<int64_t> shape = {int64_t(i % 3 + 1), 3};
    std::vector<uint8_t> bytes(size_t(shape[0] * shape[1]) * dtype_size(kAll[i]));
    for (size_t b = 0; b < bytes.size(); ++b) bytes[b] = uint8_t(31 * i + 7 * b + 1);
    payloads.push_back(std::move(bytes));
    tensors.push_back({std::string("t_") + dtype_name(kAll[i]), kAll[i], shape,
                       payloads.back().data(), payloads.back().size()});
  }
  // A scalar and an empty tensor are legal too.
  const float scalar = 2.5f;
  tensors.push_back({"scalar", DType::F32, {}, &scalar, 4});
  tensors.push_back({"empty", DType::F16, {0, 5}, nullptr, 0});
  write_safetensors(path, tensors, {{"format", "pt"}, {"note", "round trip"}});

  auto f = SafetensorsFile::open(path);
  ASSERT_EQ(f->tensors().size(), tensors.size());
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("note"), "round trip");
  for (size_t i = 0; i < std::size(kAll); ++i) {
    const TensorView* t = f->find(tensors[i].name);
    ASSERT_NE(t, nullptr) << tensors[i].name;
    EXPECT_EQ(t->dtype, kAll[i]);
    EXPECT_EQ(t->shape, tensors[i].shape);
    EXPECT_EQ(t->numel(), tensors[i].shape[0] * 3);
    ASSERT_EQ(t->nbytes, payloads[i].size());
    EXPECT_EQ(std::memcmp(t->data, payloads[i].data(), t->nbytes), 0) << tensors[i].name;
    EXPECT_EQ(t->file, path);
  }
  const TensorView* s = f->find("scalar");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ(s->numel(), 1);
  float back;
  std::memcpy(&back, s->data, 4);
  EXPECT_EQ(back, 2.5f);
  EXPECT_EQ(f->find("empty")->numel(), 0);
  EXPECT_EQ(f->find("absent"), nullptr);

  // Header padded with spaces to a multiple of 8, so tensor data starts 8-byte aligned.
  std::ifstream in(path, std::ios::binary);
  uint8_t len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | len[i];
  EXPECT_EQ(n % 8, 0u);
  std::string header(n, '\0');
  in.read(header.data(), std::streamsize(n));
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
}

TEST(Safetensors, WriterRejectsWrongByteCount) {
  TempDir tmp;
  const uint16_t v[3] = {1, 2, 3};
  EXPECT_THROW(write_safetensors(tmp.file("x.safetensors"), {{"w", DType::F16, {2, 2}, v, 6}}),
               Error);
}

TEST(Safetensors, GapsBetweenTensorsAreAllowed) {
  // 'b' starts 4 bytes after 'a' ends (alignment padding some writers emit).
  const std::string h = R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                        R"("b":{"dtype":"I16","shape":[2],"data_offsets":[8,12]}})";
  const auto img = image(h, 16);
  auto f = SafetensorsFile::from_memory(img.data(), img.size(), "gap.safetensors");
  const TensorView* b = f->find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->data[0], 8);  // data byte i holds i
  EXPECT_EQ(b->nbytes, 4u);
}

TEST(Safetensors, EmptyTensorsMayShareAnOffset) {
  const std::string h = R"({"a":{"dtype":"F16","shape":[0],"data_offsets":[2,2]},)"
                        R"("b":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},)"
                        R"("c":{"dtype":"F32","shape":[3,0],"data_offsets":[2,2]}})";
  const auto img = image(h, 2);
  EXPECT_EQ(SafetensorsFile::from_memory(img.data(), img.size(), "e.safetensors")->tensors().size(),
            3u);
}

struct Corrupt {
  const char* what;
  std::vector<uint8_t> bytes;
  const char* expect;  // a substring of the message besides the file name
};

std::string entry(const std::string& body) { return R"({"w":)" + body + "}"; }

std::vector<Corrupt> corrupt_cases() {
  const std::string ok = R"({"dtype":"F16","shape":[2,2],"data_offsets":[0,8]})";
  std::vector<Corrupt> c;
  c.push_back({"empty file", {}, "shorter than the 8-byte"});
  c.push_back({"7 bytes", {1, 0, 0, 0, 0, 0, 0}, "shorter than the 8-byte"});
  c.push_back({"header length past end", image(entry(ok), 8, 4096), "past the end"});
  c.push_back({"absurd header length", image(entry(ok), 8, UINT64_MAX - 3), "past the end"});
  c.push_back({"invalid json", image(R"({"w": {"dtype": "F16",)", 8), "not valid JSON"});
  c.push_back({"json not object", image("[1,2,3]", 0), "must be a JSON object"});
  c.push_back(
      {"deep nesting", image(std::string(5000, '[') + std::string(5000, ']'), 0), "nested deeper"});
  c.push_back({"entry not object", image(R"({"w":[1,2]})", 8), "must be an object"});
  c.push_back(
      {"missing dtype", image(entry(R"({"shape":[2,2],"data_offsets":[0,8]})"), 8), "dtype"});
  c.push_back({"dtype not string",
               image(entry(R"({"dtype":7,"shape":[2,2],"data_offsets":[0,8]})"), 8), "dtype"});
  c.push_back({"unknown dtype",
               image(entry(R"({"dtype":"F12","shape":[2,2],"data_offsets":[0,8]})"), 8),
               "unknown dtype 'F12'"});
  c.push_back(
      {"missing shape", image(entry(R"({"dtype":"F16","data_offsets":[0,8]})"), 8), "shape"});
  c.push_back({"shape not ints",
               image(entry(R"({"dtype":"F16","shape":[2,"2"],"data_offsets":[0,8]})"), 8),
               "integers"});
  c.push_back({"negative dim",
               image(entry(R"({"dtype":"F16","shape":[-2,-2],"data_offsets":[0,8]})"), 8),
               "negative"});
  c.push_back({"shape overflow",
               image(entry(R"({"dtype":"F64","shape":[4294967296,4294967296,16],)"
                           R"("data_offsets":[0,8]})"),
                     8),
               "too large"});
  c.push_back(
      {"missing offsets", image(entry(R"({"dtype":"F16","shape":[2,2]})"), 8), "data_offsets"});
  c.push_back({"offsets not a pair",
               image(entry(R"({"dtype":"F16","shape":[2,2],"data_offsets":[0,4,8]})"), 8),
               "data_offsets"});
  c.push_back({"negative offset",
               image(entry(R"({"dtype":"F16","shape":[2,2],"data_offsets":[-8,0]})"), 8),
               "negative"});
  c.push_back({"offsets out of range",
               image(entry(R"({"dtype":"F16","shape":[2,2],"data_offsets":[4,12]})"), 8),
               "run past the data section"});
  c.push_back({"begin after end",
               image(entry(R"({"dtype":"F16","shape":[2,2],"data_offsets":[8,0]})"), 8),
               "begin 8 > end 0"});
  c.push_back({"wrong byte size",
               image(entry(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,8]})"), 16),
               "needs 16"});
  c.push_back({"overlap",
               image(R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F16","shape":[2],"data_offsets":[6,10]}})",
                     16),
               "overlap"});
  c.push_back(
      {"metadata not strings", image(R"({"__metadata__":{"format":1}})", 0), "__metadata__"});
  c.push_back({"truncated data",
               [] {
                 auto v =
                     image(R"({"w":{"dtype":"F16","shape":[64],"data_offsets":[0,128]}})", 128);
                 v.resize(v.size() - 1);
                 return v;
               }(),
               "run past the data section"});
  return c;
}

TEST(Safetensors, CorruptInputGivesErrorNamingTheFile) {
  for (const Corrupt& c : corrupt_cases()) {
    SCOPED_TRACE(c.what);
    try {
      SafetensorsFile::from_memory(c.bytes.data(), c.bytes.size(), "bad/corrupt.safetensors");
      ADD_FAILURE() << "no error for: " << c.what;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("bad/corrupt.safetensors"), std::string::npos) << msg;
      EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
    }
  }
}

TEST(Safetensors, CorruptFilesOnDiskGiveErrorNamingThePath) {
  TempDir tmp;
  for (const Corrupt& c : corrupt_cases()) {
    SCOPED_TRACE(c.what);
    const std::string path = tmp.file("corrupt.safetensors");
    test::write_bytes(path, c.bytes);
    try {
      SafetensorsFile::open(path);
      ADD_FAILURE() << "no error for: " << c.what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(SafetensorsFile::open(tmp.file("missing.safetensors")), Error);
  EXPECT_THROW(SafetensorsFile::open(tmp.path.string()), Error);  // a directory
}

TEST(Safetensors, EveryTruncationOfAValidFileIsHandled) {
  TempDir tmp;
  const uint16_t v[6] = {1, 2, 3, 4, 5, 6};
  const std::string path = tmp.file("ok.safetensors");
  write_safetensors(path, {{"a", DType::F16, {2, 3}, v, 12}, {"b", DType::I8, {4}, v, 4}});
  std::ifstream in(path, std::ios::binary);
  const std::vector<uint8_t> full((std::istreambuf_iterator<char>(in)), {});
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_THROW(SafetensorsFile::from_memory(full.data(), n, "cut.safetensors"), Error) << n;
  }
  EXPECT_EQ(SafetensorsFile::from_memory(full.data(), full.size(), "ok")->tensors().size(), 2u);
}

}  // namespace
}  // namespace nestedfp::io
