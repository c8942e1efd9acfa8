#pragma once
// Tile-scheduler overrides for tuning experiments, read from an environment variable such as
// NFP16_SCHED="raster=2,swizzle=8,decomp=2,splits=4" or NFP8_SCHED="decomp=1"
// (decomp: 0 heuristic, 1 data-parallel, 2 split-K, 3 stream-K). Keys left out keep the caller's
// values; each family documents which keys it reads (both read all four). An entry that
// is not key=non-negative integer with a known key is ignored with a warning on stderr (once per
// variable value), so a typo does not silently run the default. Host-only, no device compiler.
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>

namespace nestedfp::cuda {

struct SchedOverride {
  int raster = -1, swizzle = -1, decomp = -1, splits = -1;  // -1: not given
};

inline SchedOverride sched_override(const char* env_name) {
  SchedOverride o;
  const char* env = std::getenv(env_name);
  if (!env) return o;
  const std::string s(env);
  std::string bad;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    const std::string kv = s.substr(pos, end - pos);
    pos = end + 1;
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq),
                      val = eq == std::string::npos ? "" : kv.substr(eq + 1);
    char* stop = nullptr;
    const long v = val.empty() ? -1 : std::strtol(val.c_str(), &stop, 10);
    int* field = key == "raster"    ? &o.raster
                 : key == "swizzle" ? &o.swizzle
                 : key == "decomp"  ? &o.decomp
                 : key == "splits"  ? &o.splits
                                    : nullptr;
    // raster is 0 (heuristic), 1 or 2: a larger value would silently run the heuristic order.
    if (!field || v < 0 || v > (field == &o.raster ? 2 : 1024) || *stop != '\0') {
      bad += (bad.empty() ? "" : ", ") + ("'" + kv + "'");
      continue;
    }
    *field = int(v);
  }
  if (!bad.empty()) {
    static std::mutex m;
    static std::set<std::string> warned;
    std::lock_guard<std::mutex> lock(m);
    if (warned.insert(std::string(env_name) + "=" + s).second)
      std::fprintf(
          stderr,
          "warning: %s: ignoring %s (expected key=value with keys raster, swizzle, decomp, "
          "splits, non-negative integer values and raster <= 2, e.g. decomp=2,splits=4)\n",
          env_name, bad.c_str());
  }
  return o;
}

}  // namespace nestedfp::cuda
