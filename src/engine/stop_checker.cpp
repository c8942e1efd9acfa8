#include "engine/stop_checker.hpp"

#include <algorithm>

namespace nestedfp::engine {

StopChecker::StopChecker(std::vector<std::string> stops, bool include_stop)
    : include_stop_(include_stop) {
  for (auto& s : stops)
    if (!s.empty()) {
      max_stop_ = std::max(max_stop_, s.size());
      stops_.push_back(std::move(s));
    }
}

bool StopChecker::append(std::string_view piece) {
  if (stopped_) return true;
  size_t old = text_.size();
  text_.append(piece);
  if (stops_.empty()) return false;
  // A new match must end inside the new piece: start the search max_stop_-1 bytes before it.
  size_t from = old >= max_stop_ - 1 ? old - (max_stop_ - 1) : 0;
  // The match that completes first wins (as if the text had arrived byte by byte); on a tie, the
  // longer one.
  size_t best = std::string::npos, best_len = 0, best_end = std::string::npos;
  for (const auto& s : stops_) {
    size_t p = text_.find(s, from);
    if (p == std::string::npos) continue;
    size_t end = p + s.size();
    if (end < best_end || (end == best_end && p < best)) {
      best = p;
      best_len = s.size();
      best_end = end;
    }
  }
  if (best == std::string::npos) return false;
  text_.resize(best + (include_stop_ ? best_len : 0));
  emitted_ = std::min(emitted_, text_.size());
  stopped_ = true;
  return true;
}

size_t StopChecker::held_back() const {
  if (stopped_) return 0;
  // Longest suffix of the unemitted text that is a proper prefix of some stop string.
  size_t pending = text_.size() - emitted_, hold = 0;
  std::string_view t(text_);
  for (const auto& s : stops_) {
    for (size_t k = std::min(s.size() - 1, pending); k > hold; --k) {
      if (t.substr(t.size() - k) == std::string_view(s).substr(0, k)) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

std::string StopChecker::take_ready() {
  size_t end = text_.size() - held_back();
  if (end <= emitted_) return {};
  std::string out = text_.substr(emitted_, end - emitted_);
  emitted_ = end;
  return out;
}

std::string StopChecker::take_all() {
  std::string out = text_.substr(std::min(emitted_, text_.size()));
  emitted_ = text_.size();
  return out;
}

}  // namespace nestedfp::engine
