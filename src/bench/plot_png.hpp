#pragma once
// Minimal charts as PNG files, with no plotting library: an RGB canvas, a PNG encoder (zlib
// deflate, CRC-32 written here), a 5x7 bitmap font (digits, A-Z, common punctuation; lowercase is
// drawn as uppercase) and a line/scatter chart with axes, "nice" ticks, grid, labels and a legend.
#include <cstdint>
#include <string>
#include <vector>

namespace nestedfp::bench::plot {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

class Canvas {
 public:
  Canvas(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return w_; }
  int height() const { return h_; }
  void set(int x, int y, Rgb c);
  Rgb get(int x, int y) const;
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c);  // inclusive corners
  void line(int x0, int y0, int x1, int y1, Rgb c, int thickness = 1);
  void marker(int x, int y, Rgb c, int radius = 2);  // filled disc
  // Text with its top-left corner at (x, y); each font pixel becomes scale x scale pixels.
  // vertical = rotated 90 degrees counter-clockwise (reads bottom to top).
  void text(int x, int y, const std::string& s, Rgb c, int scale = 1, bool vertical = false);
  static int text_width(const std::string& s, int scale = 1) { return int(s.size()) * 6 * scale; }
  static int text_height(int scale = 1) { return 7 * scale; }
  std::vector<uint8_t> encode_png() const;
  void save_png(const std::string& path) const;  // throws nestedfp::Error when it cannot write

 private:
  int w_, h_;
  std::vector<uint8_t> px_;  // RGB rows
};

// CRC-32 (ISO 3309, as PNG chunks use).
uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

struct Series {
  std::string name;
  std::vector<double> x, y;
  Rgb color{31, 119, 180};
  bool lines = true;     // connect points in x order
  bool markers = false;  // draw a disc at each point
  double bar_width = 0;  // > 0: a filled bar from y = 0 to each point, this wide in x units
};

struct Chart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  // Axis ranges; NaN = from the data (padded to nice ticks). y_min defaults to 0 when data >= 0.
  double x_min = 0.0 / 0.0, x_max = 0.0 / 0.0, y_min = 0.0 / 0.0, y_max = 0.0 / 0.0;
};

// Draws `chart` into the rectangle [x0, x0+w) x [y0, y0+h) of `canvas`.
void draw_chart(Canvas& canvas, const Chart& chart, int x0, int y0, int w, int h);

// One PNG with the charts stacked vertically, each `panel_height` pixels tall.
void save_charts_png(const std::string& path, const std::vector<Chart>& charts, int width = 900,
                     int panel_height = 360);

// Tick positions: "nice" steps of 1, 2 or 5 x 10^k covering [lo, hi] with about `target` ticks.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

// Palette for series (matplotlib's first colours).
Rgb palette(size_t i);

}  // namespace nestedfp::bench::plot
