#pragma once
// Stop strings over streamed text. Generated text arrives in pieces (one per token, from the
// incremental detokenizer) and a stop string may span several pieces, so text that could be the
// start of a stop string is held back until the next piece decides it. Text after a stop string
// is never emitted.
#include <string>
#include <string_view>
#include <vector>

namespace nestedfp::engine {

class StopChecker {
 public:
  StopChecker() = default;
  // Empty strings in `stops` are ignored. With include_stop the stop string itself is emitted.
  StopChecker(std::vector<std::string> stops, bool include_stop);

  // Appends a piece; returns true when a stop string is now complete (the text is cut there).
  bool append(std::string_view piece);
  bool stopped() const { return stopped_; }
  // Text that can be emitted now: everything not yet emitted that cannot be part of a stop string.
  std::string take_ready();
  // At the end of the request: everything not yet emitted (held-back prefixes included).
  std::string take_all();
  const std::string& text() const { return text_; }  // all text so far (cut at a stop string)

 private:
  size_t held_back() const;
  std::vector<std::string> stops_;
  bool include_stop_ = false;
  bool stopped_ = false;
  size_t max_stop_ = 0;
  std::string text_;
  size_t emitted_ = 0;
};

}  // namespace nestedfp::engine
