#pragma once
// Tile-scheduler overrides for tuning experiments, read from an environment variable such as
// NFP16_SCHED="raster=2,swizzle=8,decomp=2,splits=4" or NFP8_SCHED="decomp=1"
// (decomp: 0 heuristic, 1 data-parallel, 2 split-K, 3 stream-K). Keys left out keep the caller's
// values; unknown keys are ignored; each family documents which keys it reads (NestedFP8: decomp
// and splits). Host-only, no device compiler needed.
#include <cstdlib>
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
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    const std::string kv = s.substr(pos, end - pos);
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) {
      const std::string key = kv.substr(0, eq);
      const int v = std::atoi(kv.c_str() + eq + 1);
      if (key == "raster")
        o.raster = v;
      else if (key == "swizzle")
        o.swizzle = v;
      else if (key == "decomp")
        o.decomp = v;
      else if (key == "splits")
        o.splits = v;
    }
    pos = end + 1;
  }
  return o;
}

}  // namespace nestedfp::cuda
