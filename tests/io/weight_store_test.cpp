// Model directories: single file, sharded via the index, and the errors for broken ones.
#include <gtest/gtest.h>

#include <cstring>

#include "io_test_util.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/safetensors.hpp"

namespace nestedfp::io {
namespace {

using test::TempDir;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

struct ShardedModel {
  std::vector<uint16_t> a = {1, 2, 3, 4, 5, 6}, b = {7, 8}, c = {9, 10, 11};
  explicit ShardedModel(const TempDir& d) {
    write_safetensors(d.file("model-1.safetensors"), {{"x.a", DType::F16, {2, 3}, a.data(), 12},
                                                      {"x.b", DType::F16, {2}, b.data(), 4}});
    write_safetensors(d.file("model-2.safetensors"), {{"x.c", DType::BF16, {3}, c.data(), 6}});
  }
  static std::string index(const std::string& c_shard = "model-2.safetensors",
                           const std::string& extra = "") {
    return R"({"metadata":{"total_size":22},"weight_map":{"x.a":"model-1.safetensors",)"
           R"("x.b":"model-1.safetensors","x.c":")" +
           c_shard + "\"" + extra + "}}";
  }
};

TEST(WeightStore, ShardedDirectory) {
  TempDir d;
  ShardedModel m(d);
  write_text(d.file("model.safetensors.index.json"), ShardedModel::index());
  const WeightStore ws = WeightStore::open_dir(d.path.string());
  EXPECT_EQ(ws.names(), (std::vector<std::string>{"x.a", "x.b", "x.c"}));
  EXPECT_EQ(ws.total_bytes(), 22u);
  const TensorView& c = ws.get("x.c");
  EXPECT_EQ(c.dtype, DType::BF16);
  EXPECT_NE(c.file.find("model-2.safetensors"), std::string::npos);
  EXPECT_EQ(std::memcmp(c.data, m.c.data(), 6), 0);
  EXPECT_EQ(std::memcmp(ws.get("x.a").data, m.a.data(), 12), 0);
  EXPECT_EQ(ws.find("x.d"), nullptr);
  EXPECT_NE(message_of([&] { ws.get("x.d"); }).find("x.d"), std::string::npos);
  // The store stays valid when copied (views point into shared memory maps).
  const WeightStore copy = ws;
  EXPECT_EQ(std::memcmp(copy.get("x.b").data, m.b.data(), 4), 0);
}

TEST(WeightStore, SingleFile) {
  TempDir d;
  const uint16_t v[2] = {0x3C00, 0xBC00};
  write_safetensors(d.file("model.safetensors"), {{"w", DType::F16, {1, 2}, v, 4}});
  const WeightStore ws = WeightStore::open_dir(d.path.string());
  EXPECT_EQ(ws.names(), std::vector<std::string>{"w"});
  EXPECT_EQ(ws.get("w").shape, (std::vector<int64_t>{1, 2}));
}

TEST(WeightStore, MissingShardIsNamed) {
  TempDir d;
  ShardedModel m(d);
  write_text(d.file("model.safetensors.index.json"), ShardedModel::index("model-3.safetensors"));
  const std::string msg = message_of([&] { WeightStore::open_dir(d.path.string()); });
  EXPECT_NE(msg.find("model-3.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(WeightStore, TensorAbsentFromItsShardIsNamed) {
  TempDir d;
  ShardedModel m(d);
  write_text(d.file("model.safetensors.index.json"),
             ShardedModel::index("model-2.safetensors", R"(,"x.ghost":"model-2.safetensors")"));
  const std::string msg = message_of([&] { WeightStore::open_dir(d.path.string()); });
  EXPECT_NE(msg.find("x.ghost"), std::string::npos) << msg;
  EXPECT_NE(msg.find("model-2.safetensors"), std::string::npos) << msg;
}

TEST(WeightStore, BrokenIndexAndEmptyDirectory) {
  TempDir d;
  EXPECT_NE(
      message_of([&] { WeightStore::open_dir(d.path.string()); }).find("no model.safetensors"),
      std::string::npos);
  EXPECT_NE(message_of([&] { WeightStore::open_dir(d.file("nope")); }).find("not a directory"),
            std::string::npos);
  ShardedModel m(d);
  const std::string index = d.file("model.safetensors.index.json");
  write_text(index, R"({"weight_map": {"x.a": )");
  std::string msg = message_of([&] { WeightStore::open_dir(d.path.string()); });
  EXPECT_NE(msg.find(index), std::string::npos) << msg;
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  write_text(index, R"({"metadata": {}})");
  EXPECT_NE(message_of([&] { WeightStore::open_dir(d.path.string()); }).find("weight_map"),
            std::string::npos);
  write_text(index, R"({"weight_map": {"x.a": "../model-1.safetensors"}})");
  EXPECT_NE(message_of([&] { WeightStore::open_dir(d.path.string()); }).find("invalid shard"),
            std::string::npos);
}

TEST(WeightStore, CorruptShardIsNamed) {
  TempDir d;
  ShardedModel m(d);
  write_text(d.file("model.safetensors.index.json"), ShardedModel::index());
  test::write_bytes(d.file("model-2.safetensors"), {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'});
  const std::string msg = message_of([&] { WeightStore::open_dir(d.path.string()); });
  EXPECT_NE(msg.find("model-2.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("past the end"), std::string::npos) << msg;
}

}  // namespace
}  // namespace nestedfp::io
