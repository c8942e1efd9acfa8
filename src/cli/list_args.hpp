#pragma once
// Comma-separated list options of the bench commands (`--batch 1,8,32`, `--k 1..8`,
// `--slo-scales 10,15`): one parser, so every command refuses the same bad input the same way.
#include <stdexcept>
#include <string>
#include <vector>

#include "nestedfp/error.hpp"

namespace nestedfp::cli {

// Items of `s` between commas, empty ones included (so "1,,2" is refused, not read as "1,2").
inline std::vector<std::string> comma_items(const std::string& s) {
  std::vector<std::string> out;
  for (size_t p = 0;;) {
    const size_t e = s.find(',', p);
    out.push_back(s.substr(p, e == std::string::npos ? std::string::npos : e - p));
    if (e == std::string::npos) return out;
    p = e + 1;
  }
}

// Positive integers and inclusive ranges LO..HI; every character must belong to a number.
inline std::vector<int> positive_ints(const std::string& s, const char* option) {
  std::vector<int> out;
  auto one = [&](const std::string& item) {
    size_t used = 0;
    const int v = std::stoi(item, &used);
    if (used != item.size() || v <= 0) throw std::invalid_argument(item);
    return v;
  };
  for (const std::string& item : comma_items(s)) {
    try {
      const size_t dots = item.find("..");
      if (dots == std::string::npos) {
        out.push_back(one(item));
      } else {
        const int lo = one(item.substr(0, dots)), hi = one(item.substr(dots + 2));
        if (hi < lo) throw std::invalid_argument(item);
        for (int x = lo; x <= hi; ++x) out.push_back(x);
      }
    } catch (const std::exception&) {
      fail(
          "{} '{}': expected comma-separated positive integers or ranges like 1..8 (bad item '{}')",
          option, s, item);
    }
  }
  return out;
}

inline std::vector<double> positive_doubles(const std::string& s, const char* option) {
  std::vector<double> out;
  for (const std::string& item : comma_items(s)) {
    try {
      size_t used = 0;
      const double v = std::stod(item, &used);
      if (used != item.size() || !(v > 0)) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      fail("{} '{}': expected comma-separated positive numbers (bad item '{}')", option, s, item);
    }
  }
  return out;
}

}  // namespace nestedfp::cli
