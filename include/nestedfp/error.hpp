#pragma once
// One exception type for every boundary error (bad file, bad config, bad request, OOM).
// The message says what is wrong and, where possible, what to do about it.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace nestedfp {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace nestedfp
