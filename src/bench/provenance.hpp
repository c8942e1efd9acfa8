#pragma once
// The commit a result file is stamped with: $NESTEDFP_GIT_COMMIT (scripts/gpu-check.sh exports
// it), else .carry/git-commit (scripts/pack-device.sh writes it: on the device the tree's copy may
// carry a stale .git, which stamped a session's tune table with the session's first commit), else
// `git rev-parse`, else "unknown".
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace nestedfp::bench {

inline std::string result_commit() {
  if (const char* env = std::getenv("NESTEDFP_GIT_COMMIT"); env && *env) return env;
  std::string c;
  if (std::ifstream f(".carry/git-commit"); f >> c && !c.empty()) return c;
  if (FILE* p = popen("git rev-parse --short HEAD 2>/dev/null", "r")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, p)) c = buf;
    pclose(p);
  }
  while (!c.empty() && (c.back() == '\n' || c.back() == ' ')) c.pop_back();
  return c.empty() ? "unknown" : c;
}

}  // namespace nestedfp::bench
