// GEMM kernel tables: parsing, lookups, resolution against a family's variants, and where `auto`
// finds a GPU's table (kernel_table.hpp).
#include "backend/kernel_table.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "nestedfp/error.hpp"

namespace nestedfp::backend {
namespace {

constexpr const char* kFormat = "nestedfp-kernel-table/1";

// Fallbacks are logged once per process: tensor-parallel ranks resolve the same shapes, and a
// model has the same shape in every layer.
bool first_time(const std::string& msg) {
  static std::mutex m;
  static std::set<std::string> seen;
  std::lock_guard<std::mutex> lock(m);
  return seen.insert(msg).second;
}

std::string name_of(const std::string& source) {
  return source.empty() ? std::string("(in memory)") : source;
}

}  // namespace

const char* to_string(GemmFamily f) { return f == GemmFamily::Nfp8 ? "nfp8" : "nfp16"; }

KernelTable KernelTable::parse(const std::string& text, const std::string& source) {
  const std::string where = "kernel table " + name_of(source);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", where, e.what());
  }
  if (!j.is_object()) fail("{}: expected a JSON object", where);
  auto str = [&](const nlohmann::json& o, const char* key, const std::string& at, bool required) {
    const auto it = o.find(key);
    if (it == o.end()) {
      if (required) fail("{}: {}missing field \"{}\"", where, at, key);
      return std::string();
    }
    if (!it->is_string()) fail("{}: {}field \"{}\" must be a string", where, at, key);
    return it->get<std::string>();
  };
  if (str(j, "format", "", true) != kFormat)
    fail("{}: format \"{}\" is not \"{}\"", where, j["format"].get<std::string>(), kFormat);
  KernelTable t;
  t.source = source;
  t.gpu = str(j, "gpu", "", true), t.cuda = str(j, "cuda", "", true);
  t.commit = str(j, "commit", "", true), t.date = str(j, "date", "", true);
  t.command = str(j, "command", "", false);
  const auto entries = j.find("entries");
  if (entries == j.end()) fail("{}: missing field \"entries\"", where);
  if (!entries->is_array()) fail("{}: field \"entries\" must be an array", where);
  for (size_t i = 0; i < entries->size(); ++i) {
    const auto& o = (*entries)[i];
    const std::string at = "entries[" + std::to_string(i) + "]: ";
    if (!o.is_object()) fail("{}: {}expected an object", where, at);
    Entry e;
    const std::string fam = str(o, "family", at, true);
    if (fam == "nfp16")
      e.family = GemmFamily::Nfp16;
    else if (fam == "nfp8")
      e.family = GemmFamily::Nfp8;
    else
      fail("{}: {}unknown family \"{}\" (use nfp16 or nfp8)", where, at, fam);
    for (auto [key, dst] : {std::pair{"N", &e.N}, {"K", &e.K}, {"M", &e.M}}) {
      const auto it = o.find(key);
      if (it == o.end()) fail("{}: {}missing field \"{}\"", where, at, key);
      if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > (1 << 30))
        fail("{}: {}field \"{}\" must be a positive integer", where, at, key);
      *dst = it->get<int>();
    }
    e.variant = str(o, "variant", at, true);
    if (e.variant.empty()) fail("{}: {}field \"variant\" is empty", where, at);
    e.heuristic = str(o, "heuristic", at, false);
    for (auto [key, dst] : {std::pair{"us", &e.us}, {"heuristic_us", &e.heuristic_us}}) {
      const auto it = o.find(key);
      if (it == o.end()) continue;
      if (!it->is_number()) fail("{}: {}field \"{}\" must be a number", where, at, key);
      *dst = it->get<double>();
    }
    try {
      t.add(e);
    } catch (const Error& err) {
      fail("{}: {}{}", where, at, err.what());
    }
  }
  return t;
}

KernelTable KernelTable::load(const std::string& path) {
  std::ifstream f(path);
  if (!f) fail("kernel table {}: cannot open the file", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse(ss.str(), path);
}

void KernelTable::add(const Entry& e) {
  auto& b = shapes[{e.family, e.N, e.K}];
  const auto it =
      std::lower_bound(b.begin(), b.end(), e.M, [](const Entry& x, int m) { return x.M < m; });
  if (it != b.end() && it->M == e.M)
    fail("a second {} entry for N={} K={} M={}", to_string(e.family), e.N, e.K, e.M);
  b.insert(it, e);
}

void KernelTable::merge(const KernelTable& newer) {
  if (newer.gpu != gpu)
    fail("kernel table {}: tuned on {}, cannot take entries measured on {}", name_of(source), gpu,
         newer.gpu);
  for (const auto& [key, b] : newer.shapes) shapes[key] = b;
  cuda = newer.cuda, commit = newer.commit, date = newer.date;
  command = command.empty() ? newer.command : command + "; " + newer.command;
}

size_t KernelTable::size() const {
  size_t n = 0;
  for (const auto& [key, b] : shapes) n += b.size();
  return n;
}

std::string KernelTable::dump() const {
  nlohmann::json head = {{"format", kFormat}, {"gpu", gpu},   {"cuda", cuda},
                         {"commit", commit},  {"date", date}, {"command", command}};
  // One entry per line, so that a re-tuned table diffs by the points that changed.
  std::string s = head.dump(1);
  s.pop_back();  // the closing brace
  s += ",\n \"entries\": [";
  bool first = true;
  for (const auto& [key, b] : shapes) {
    for (const Entry& e : b) {
      nlohmann::json o = {{"family", to_string(e.family)},
                          {"N", e.N},
                          {"K", e.K},
                          {"M", e.M},
                          {"variant", e.variant}};
      if (e.us > 0) o["us"] = std::round(e.us * 100) / 100;
      if (!e.heuristic.empty()) o["heuristic"] = e.heuristic;
      if (e.heuristic_us > 0) o["heuristic_us"] = std::round(e.heuristic_us * 100) / 100;
      s += (first ? "\n  " : ",\n  ") + o.dump();
      first = false;
    }
  }
  s += "\n ]\n}\n";
  return s;
}

const std::vector<KernelTable::Entry>* KernelTable::buckets(GemmFamily f, int N, int K) const {
  const auto it = shapes.find({f, N, K});
  return it == shapes.end() || it->second.empty() ? nullptr : &it->second;
}

namespace {
// Whether a shape's last bucket also covers every larger M: not for the streaming mma kernels,
// which read the weight once per token tile (KERNELS.md §2.6); past their bucket the heuristic
// chooses.
bool covers_larger_m(const KernelTable::Entry& last) { return last.variant.rfind("mma", 0) != 0; }
}  // namespace

const KernelTable::Entry* KernelTable::lookup(GemmFamily f, int N, int K, int m) const {
  const auto* b = buckets(f, N, K);
  if (!b) return nullptr;
  for (const Entry& e : *b)
    if (m <= e.M) return &e;
  return covers_larger_m(b->back()) ? &b->back() : nullptr;
}

int ShapeDispatch::variant(int m) const {
  for (const auto& [bm, v] : buckets)
    if (m <= bm) return v;
  return buckets.empty() ? -1 : buckets.back().second;
}

KernelDispatch::KernelDispatch(std::shared_ptr<const KernelTable> table, VariantSet nfp16,
                               VariantSet nfp8)
    : table_(std::move(table)), sets_{std::move(nfp16), std::move(nfp8)} {}

void KernelDispatch::note(const std::string& msg, bool warn) const {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (std::find(notes_.begin(), notes_.end(), msg) == notes_.end()) notes_.push_back(msg);
  }
  if (!first_time(msg)) return;
  if (warn)
    spdlog::warn("{}", msg);
  else
    spdlog::info("{}", msg);
}

ShapeDispatch KernelDispatch::resolve(GemmFamily f, int N, int K) const {
  ShapeDispatch d;
  if (!table_) return d;
  const std::string where = "kernel table " + name_of(table_->source);
  const auto* b = table_->buckets(f, N, K);
  if (!b) {
    // Not a warning: a table covers the shapes it was tuned for, and others are expected.
    note(fmt::format("{}: {} {}x{} not tuned; the heuristic chooses", where, to_string(f), N, K),
         false);
    return d;
  }
  const VariantSet& set = sets_[f == GemmFamily::Nfp8 ? 1 : 0];
  for (const auto& e : *b) {
    const auto it = std::find(set.names.begin(), set.names.end(), e.variant);
    int v = -1;
    if (it == set.names.end()) {
      note(fmt::format(
          "{}: {} variant '{}' ({}x{}, M={}) does not exist in this build (a table of another "
          "version?); the heuristic runs there",
          where, to_string(f), e.variant, N, K, e.M));
    } else if (!set.built[size_t(it - set.names.begin())]) {
      note(fmt::format(
          "{}: {} variant '{}' is not built in this build (its kernel set); the heuristic runs "
          "there (rebuild with -DNESTEDFP_CUDA_KERNEL_SET=all to use it)",
          where, to_string(f), e.variant));
    } else {
      v = int(it - set.names.begin());
    }
    d.buckets.emplace_back(e.M, v);
  }
  if (!b->empty() && !covers_larger_m(b->back()))  // past the last bucket: the heuristic
    d.buckets.emplace_back(std::numeric_limits<int>::max(), -1);
  return d;
}

std::vector<std::string> KernelDispatch::notes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return notes_;
}

std::string gpu_slug(const std::string& gpu_name) {
  std::string s = gpu_name;
  for (const char* drop : {"NVIDIA ", "nvidia "})
    if (s.rfind(drop, 0) == 0) s = s.substr(std::string(drop).size());
  std::string o;
  for (char c : s) {
    const bool alnum = std::isalnum(static_cast<unsigned char>(c)) != 0;
    if (alnum)
      o += char(std::tolower(static_cast<unsigned char>(c)));
    else if (!o.empty() && o.back() != '-')
      o += '-';
  }
  while (!o.empty() && o.back() == '-') o.pop_back();
  return o.empty() ? std::string("unknown-gpu") : o;
}

std::vector<std::string> kernel_table_dirs() {
  namespace fs = std::filesystem;
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("NESTEDFP_KERNEL_TABLE_DIR"); env && *env)
    dirs.emplace_back(env);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return dirs;
  fs::path dir = exe.parent_path();
  for (int up = 0; up < 6 && !dir.empty(); ++up) {
    for (const char* sub : {"bench/kernel-tables", "share/nestedfp/kernel-tables"})
      if (fs::is_directory(dir / sub, ec)) dirs.push_back((dir / sub).string());
    if (dir == dir.parent_path()) break;
    dir = dir.parent_path();
  }
  return dirs;
}

std::string find_kernel_table(const std::string& spec, const std::string& gpu_name,
                              std::string* looked) {
  namespace fs = std::filesystem;
  if (spec == "none") return "";
  if (spec == "auto") {
    const std::string file = gpu_slug(gpu_name) + ".json";
    std::string tried;
    for (const auto& d : kernel_table_dirs()) {
      const fs::path p = fs::path(d) / file;
      std::error_code ec;
      if (fs::is_regular_file(p, ec)) return p.string();
      tried += (tried.empty() ? "" : ", ") + p.string();
    }
    if (looked)
      *looked = tried.empty() ? "no kernel-tables directory near the executable and "
                                "NESTEDFP_KERNEL_TABLE_DIR unset"
                              : tried;
    return "";
  }
  std::error_code ec;
  if (spec.empty() || !fs::is_regular_file(spec, ec))
    fail("--kernel-table {}: no such file (give a table file, auto or none)", spec);
  return spec;
}

std::shared_ptr<const KernelTable> open_kernel_table(const std::string& spec,
                                                     const std::string& gpu_name) {
  std::string looked;
  const std::string path = find_kernel_table(spec, gpu_name, &looked);
  if (path.empty()) {
    if (spec == "auto" && first_time("no table for " + gpu_name))
      spdlog::info("kernel table: none for {} (looked for {}); the heuristics choose", gpu_name,
                   looked);
    return nullptr;
  }
  static std::mutex m;
  static std::map<std::string, std::shared_ptr<const KernelTable>> cache;
  std::lock_guard<std::mutex> lock(m);
  auto& t = cache[path];
  if (!t) {
    t = std::make_shared<const KernelTable>(KernelTable::load(path));
    spdlog::info("kernel table: {} ({} entries, tuned on {} with CUDA {}, commit {}, {})", path,
                 t->size(), t->gpu, t->cuda, t->commit, t->date);
    if (t->gpu != gpu_name)
      spdlog::warn(
          "kernel table {} was tuned on {}, this GPU is {}: its choices may be slower here", path,
          t->gpu, gpu_name);
  }
  return t;
}

}  // namespace nestedfp::backend
