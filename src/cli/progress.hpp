#pragma once
// Progress on stderr for long commands (inspect, tune): a bar redrawn in place on a terminal, a
// line per 10% otherwise (logs, CI). message() prints a line without breaking the bar.
#include <unistd.h>

#include <cstdio>
#include <string>

namespace nestedfp::cli {

class ProgressBar {
 public:
  explicit ProgressBar(std::string name) : name_(std::move(name)) {}
  // fraction in [0, 1]; detail: what is being done ("3 / 10 points", "1.2 GiB / 4.0 GiB").
  void update(double fraction, const std::string& detail) {
    fraction_ = fraction, detail_ = detail;
    if (tty_) {
      draw();
    } else if (int(fraction * 10) > last_decile_) {
      last_decile_ = int(fraction * 10);
      std::fprintf(stderr, "%s: %d%% (%s)\n", name_.c_str(), last_decile_ * 10, detail.c_str());
    }
  }
  void message(const std::string& line) {
    if (line.empty()) return;
    std::fprintf(stderr, tty_ && drawn_ ? "\r\033[K%s\n" : "%s\n", line.c_str());
    if (tty_ && drawn_) draw();
  }
  void finish() {
    if (drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  void draw() {
    const int width = 40, filled = int(fraction_ * width);
    std::fprintf(stderr, "\r\033[K%s [%s%s] %3d%% %s", name_.c_str(),
                 std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                 int(fraction_ * 100), detail_.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }
  std::string name_, detail_;
  double fraction_ = 0;
  bool tty_ = ::isatty(STDERR_FILENO) != 0;
  int last_decile_ = -1;
  bool drawn_ = false;
};

}  // namespace nestedfp::cli
