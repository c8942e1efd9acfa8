// GEMM kernel tables (src/backend/kernel_table.*): parsing and its errors, bucket lookups at the
// edges, resolution against a family's variants with the heuristic as fallback, and where
// `--kernel-table auto` looks.
#include "backend/kernel_table.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "nestedfp/error.hpp"

namespace nestedfp::backend {
namespace {

namespace fs = std::filesystem;

const char* kTable = R"({
 "format": "nestedfp-kernel-table/1", "gpu": "NVIDIA H200", "cuda": "13.0",
 "commit": "abc1234", "date": "2026-12-02", "command": "nestedfp tune --shapes 4096,4096",
 "entries": [
  {"family": "nfp16", "N": 4096, "K": 4096, "M": 64, "variant": "b", "us": 20.5},
  {"family": "nfp16", "N": 4096, "K": 4096, "M": 1, "variant": "a"},
  {"family": "nfp16", "N": 4096, "K": 4096, "M": 256, "variant": "c", "heuristic": "a"},
  {"family": "nfp8", "N": 4096, "K": 4096, "M": 16, "variant": "x"},
  {"family": "nfp8", "N": 1024, "K": 4096, "M": 16, "variant": "gone"}
 ]})";

// The message of the Error that parsing `text` throws ("" and a test failure when none).
std::string parse_error(const std::string& text) {
  try {
    KernelTable::parse(text, "/tmp/t.json");
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << text;
  return "";
}

// kTable with one substring replaced.
std::string with(const std::string& from, const std::string& to) {
  std::string s = kTable;
  const size_t p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  return s.replace(p, from.size(), to);
}

TEST(KernelTable, ParsesHeaderAndSortsBuckets) {
  const KernelTable t = KernelTable::parse(kTable, "t.json");
  EXPECT_EQ(t.gpu, "NVIDIA H200");
  EXPECT_EQ(t.cuda, "13.0");
  EXPECT_EQ(t.commit, "abc1234");
  EXPECT_EQ(t.date, "2026-12-02");
  EXPECT_EQ(t.size(), 5u);
  const auto* b = t.buckets(GemmFamily::Nfp16, 4096, 4096);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(b->size(), 3u);
  EXPECT_EQ((*b)[0].M, 1);
  EXPECT_EQ((*b)[1].M, 64);
  EXPECT_EQ((*b)[2].M, 256);
  EXPECT_DOUBLE_EQ((*b)[1].us, 20.5);
  EXPECT_EQ((*b)[2].heuristic, "a");
}

TEST(KernelTable, LookupPicksTheSmallestBucketAtOrAboveM) {
  const KernelTable t = KernelTable::parse(kTable, "t.json");
  auto at = [&](int m) { return t.lookup(GemmFamily::Nfp16, 4096, 4096, m)->variant; };
  EXPECT_EQ(at(1), "a");
  EXPECT_EQ(at(2), "b");
  EXPECT_EQ(at(64), "b");
  EXPECT_EQ(at(65), "c");
  EXPECT_EQ(at(256), "c");
  EXPECT_EQ(at(257), "c");  // beyond the largest bucket: the largest
  EXPECT_EQ(at(1 << 20), "c");
  EXPECT_EQ(t.lookup(GemmFamily::Nfp8, 4096, 4096, 1000)->variant, "x");
  // Untuned: another shape, the transposed shape, or the other family's shape.
  EXPECT_EQ(t.lookup(GemmFamily::Nfp16, 4096, 14336, 1), nullptr);
  EXPECT_EQ(t.lookup(GemmFamily::Nfp16, 1024, 4096, 16), nullptr);
}

TEST(KernelTable, DumpParsesBackToTheSameTable) {
  const KernelTable t = KernelTable::parse(kTable, "t.json");
  const KernelTable u = KernelTable::parse(t.dump(), "dumped");
  EXPECT_EQ(u.gpu, t.gpu);
  EXPECT_EQ(u.command, t.command);
  ASSERT_EQ(u.size(), t.size());
  for (const auto& [key, b] : t.shapes) {
    const auto* ub = u.buckets(std::get<0>(key), std::get<1>(key), std::get<2>(key));
    ASSERT_NE(ub, nullptr);
    ASSERT_EQ(ub->size(), b.size());
    for (size_t i = 0; i < b.size(); ++i) {
      EXPECT_EQ((*ub)[i].M, b[i].M);
      EXPECT_EQ((*ub)[i].variant, b[i].variant);
      EXPECT_DOUBLE_EQ((*ub)[i].us, b[i].us);
    }
  }
}

TEST(KernelTable, MergeReplacesWholeShapes) {
  KernelTable t = KernelTable::parse(kTable, "t.json");
  KernelTable n;
  n.gpu = "NVIDIA H200", n.cuda = "13.1", n.commit = "def5678", n.date = "2026-12-03";
  n.command = "nestedfp tune --tp 4";
  for (auto [K, v] : {std::pair{4096, "d"}, {1024, "e"}}) {
    KernelTable::Entry e;
    e.N = 4096, e.K = K, e.M = 16, e.variant = v;
    n.add(e);
  }
  t.merge(n);
  EXPECT_EQ(t.commit, "def5678");
  EXPECT_EQ(t.command, "nestedfp tune --shapes 4096,4096; nestedfp tune --tp 4");
  // 4096x4096 nfp16 now has only the new run's bucket; the others stay.
  EXPECT_EQ(t.buckets(GemmFamily::Nfp16, 4096, 4096)->size(), 1u);
  EXPECT_EQ(t.lookup(GemmFamily::Nfp16, 4096, 4096, 1000)->variant, "d");
  EXPECT_EQ(t.lookup(GemmFamily::Nfp16, 4096, 1024, 1)->variant, "e");
  EXPECT_EQ(t.lookup(GemmFamily::Nfp8, 4096, 4096, 1)->variant, "x");
  n.gpu = "NVIDIA H100";
  EXPECT_THROW(t.merge(n), Error);
}

TEST(KernelTable, BadFilesAreRefusedNamingFileAndField) {
  auto expect = [](const std::string& err, const std::string& part) {
    EXPECT_NE(err.find("/tmp/t.json"), std::string::npos) << err;
    EXPECT_NE(err.find(part), std::string::npos) << err;
  };
  expect(parse_error("{\"format\": "), "not valid JSON");
  expect(parse_error("[1, 2]"), "expected a JSON object");
  expect(parse_error(with("nestedfp-kernel-table/1", "other/2")), "format \"other/2\"");
  expect(parse_error(with("\"gpu\": \"NVIDIA H200\",", "")), "missing field \"gpu\"");
  expect(parse_error(with("\"cuda\": \"13.0\"", "\"cuda\": 13")), "\"cuda\" must be a string");
  expect(parse_error(with("\"entries\"", "\"rows\"")), "missing field \"entries\"");
  expect(parse_error(with("\"family\": \"nfp8\", \"N\": 4096", "\"family\": \"fp8\", \"N\": 4096")),
         "entries[3]: unknown family \"fp8\" (use nfp16 or nfp8)");
  expect(parse_error(with("\"M\": 64, ", "")), "entries[0]: missing field \"M\"");
  expect(parse_error(with("\"M\": 64, ", "\"M\": 0, ")), "\"M\" must be a positive integer");
  expect(parse_error(with("\"N\": 1024", "\"N\": 10.5")), "\"N\" must be a positive integer");
  expect(parse_error(with(", \"variant\": \"x\"", "")), "entries[3]: missing field \"variant\"");
  expect(parse_error(with("\"variant\": \"x\"", "\"variant\": \"\"")), "\"variant\" is empty");
  expect(parse_error(with("\"us\": 20.5", "\"us\": \"fast\"")), "\"us\" must be a number");
  expect(parse_error(with("\"M\": 256", "\"M\": 64")), "a second nfp16 entry for N=4096");
}

TEST(KernelTable, LoadNamesAMissingFile) {
  try {
    KernelTable::load("/nonexistent/dir/h200.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/h200.json: cannot open"),
              std::string::npos)
        << e.what();
  }
}

TEST(ShapeDispatch, EmptyMeansTheHeuristic) {
  ShapeDispatch d;
  EXPECT_EQ(d.variant(1), -1);
  d.buckets = {{16, 3}, {128, -1}, {1024, 7}};
  EXPECT_EQ(d.variant(1), 3);
  EXPECT_EQ(d.variant(16), 3);
  EXPECT_EQ(d.variant(17), -1);
  EXPECT_EQ(d.variant(129), 7);
  EXPECT_EQ(d.variant(5000), 7);
}

// A streaming mma kernel reads the weight once per token tile: a table whose last bucket names
// one must not send every larger M to it (a short tune --m list, then a long prefill).
TEST(KernelDispatch, AnMmaKernelInTheLastBucketStopsThere) {
  const char* table = R"({
 "format": "nestedfp-kernel-table/1", "gpu": "NVIDIA H200", "cuda": "13.0",
 "commit": "abc1234", "date": "2026-12-02", "command": "nestedfp tune --m 1,16",
 "entries": [
  {"family": "nfp16", "N": 1024, "K": 4096, "M": 1, "variant": "mma128x8"},
  {"family": "nfp16", "N": 1024, "K": 4096, "M": 16, "variant": "mma128x16"},
  {"family": "nfp8", "N": 1024, "K": 4096, "M": 16, "variant": "pp64x16"}
 ]})";
  auto t = std::make_shared<const KernelTable>(KernelTable::parse(table, "t.json"));
  VariantSet v16{{"t128x16", "mma128x8", "mma128x16"}, {true, true, true}};
  VariantSet v8{{"pp64x16"}, {true}};
  const KernelDispatch kd(t, v16, v8);
  const ShapeDispatch d16 = kd.resolve(GemmFamily::Nfp16, 1024, 4096);
  EXPECT_EQ(d16.variant(1), 1);
  EXPECT_EQ(d16.variant(16), 2);
  EXPECT_EQ(d16.variant(17), -1);
  EXPECT_EQ(d16.variant(8192), -1);
  // Other kernels still cover every larger M; lookups follow the same rule.
  EXPECT_EQ(kd.resolve(GemmFamily::Nfp8, 1024, 4096).variant(8192), 0);
  EXPECT_EQ(t->lookup(GemmFamily::Nfp16, 1024, 4096, 16)->variant, "mma128x16");
  EXPECT_EQ(t->lookup(GemmFamily::Nfp16, 1024, 4096, 17), nullptr);
  EXPECT_EQ(t->lookup(GemmFamily::Nfp8, 1024, 4096, 8192)->variant, "pp64x16");
}

TEST(KernelDispatch, ResolvesNamesAndFallsBackOncePerCause) {
  auto t = std::make_shared<const KernelTable>(KernelTable::parse(kTable, "t.json"));
  // nfp16: "c" exists but is not built; nfp8: "gone" does not exist in this build.
  VariantSet v16{{"z", "a", "b", "c"}, {true, true, true, false}};
  VariantSet v8{{"x", "y"}, {true, true}};
  const KernelDispatch kd(t, v16, v8);
  const ShapeDispatch d16 = kd.resolve(GemmFamily::Nfp16, 4096, 4096);
  ASSERT_EQ(d16.buckets.size(), 3u);
  EXPECT_EQ(d16.variant(1), 1);     // "a"
  EXPECT_EQ(d16.variant(64), 2);    // "b"
  EXPECT_EQ(d16.variant(200), -1);  // "c" not built: heuristic
  EXPECT_EQ(kd.resolve(GemmFamily::Nfp8, 4096, 4096).variant(8), 0);
  EXPECT_EQ(kd.resolve(GemmFamily::Nfp8, 1024, 4096).variant(8), -1);      // "gone"
  EXPECT_TRUE(kd.resolve(GemmFamily::Nfp8, 4096, 14336).buckets.empty());  // untuned
  const auto notes = kd.notes();
  ASSERT_EQ(notes.size(), 3u);
  EXPECT_NE(notes[0].find("'c' is not built"), std::string::npos) << notes[0];
  EXPECT_NE(notes[1].find("'gone' (1024x4096, M=16) does not exist"), std::string::npos)
      << notes[1];
  EXPECT_NE(notes[2].find("nfp8 4096x14336 not tuned"), std::string::npos) << notes[2];
  // Every layer of a model resolves the same shapes again: no new notes.
  kd.resolve(GemmFamily::Nfp16, 4096, 4096);
  kd.resolve(GemmFamily::Nfp8, 4096, 14336);
  EXPECT_EQ(kd.notes().size(), 3u);
  const KernelDispatch none(nullptr, v16, v8);
  EXPECT_TRUE(none.resolve(GemmFamily::Nfp16, 4096, 4096).buckets.empty());
  EXPECT_TRUE(none.notes().empty());
}

TEST(KernelTableFiles, GpuSlug) {
  EXPECT_EQ(gpu_slug("NVIDIA H200"), "h200");
  EXPECT_EQ(gpu_slug("NVIDIA H100 80GB HBM3"), "h100-80gb-hbm3");
  EXPECT_EQ(gpu_slug(" Odd__GPU (x) "), "odd-gpu-x");
  EXPECT_EQ(gpu_slug("???"), "unknown-gpu");
}

TEST(KernelTableFiles, FindAndOpen) {
  const fs::path dir = fs::path(NESTEDFP_BINARY_DIR) / "kernel_table_test";
  fs::create_directories(dir);
  std::ofstream(dir / "test-gpu-9000.json") << kTable;
  EXPECT_EQ(find_kernel_table("none", "Test GPU 9000"), "");
  try {
    find_kernel_table((dir / "missing.json").string(), "x");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.json: no such file"), std::string::npos);
  }
  const std::string file = (dir / "test-gpu-9000.json").string();
  EXPECT_EQ(find_kernel_table(file, "anything"), file);
  ::setenv("NESTEDFP_KERNEL_TABLE_DIR", dir.c_str(), 1);
  EXPECT_EQ(find_kernel_table("auto", "NVIDIA Test GPU 9000"), file);
  std::string looked;
  EXPECT_EQ(find_kernel_table("auto", "NVIDIA No Such GPU", &looked), "");
  EXPECT_NE(looked.find("no-such-gpu.json"), std::string::npos) << looked;
  ::unsetenv("NESTEDFP_KERNEL_TABLE_DIR");
  // Without the variable, auto still finds the checkout's bench/kernel-tables from the binary.
  bool repo_dir = false;
  for (const auto& d : kernel_table_dirs())
    repo_dir |= fs::equivalent(d, fs::path(NESTEDFP_SOURCE_DIR) / "bench/kernel-tables");
  EXPECT_TRUE(repo_dir);
  const auto t1 = open_kernel_table(file, "NVIDIA H200");
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(t1->size(), 5u);
  EXPECT_EQ(open_kernel_table(file, "NVIDIA H200"), t1);  // cached: ranks share it
  EXPECT_EQ(open_kernel_table("none", "NVIDIA H200"), nullptr);
}

// Every table shipped in the repository parses (a broken one would stop `auto` at startup).
TEST(KernelTableFiles, ShippedTablesParse) {
  const fs::path dir = fs::path(NESTEDFP_SOURCE_DIR) / "bench/kernel-tables";
  ASSERT_TRUE(fs::is_directory(dir));
  for (const auto& f : fs::directory_iterator(dir)) {
    if (f.path().extension() != ".json") continue;
    SCOPED_TRACE(f.path().string());
    const KernelTable t = KernelTable::load(f.path().string());
    EXPECT_GT(t.size(), 0u);
    EXPECT_EQ(gpu_slug(t.gpu) + ".json", f.path().filename().string());
  }
}

}  // namespace
}  // namespace nestedfp::backend
