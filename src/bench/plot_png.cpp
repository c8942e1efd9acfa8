// PNG charts: canvas, bitmap font, chart layout, and the PNG container (signature, IHDR, IDAT with
// zlib-compressed filtered scanlines, IEND; each chunk with its CRC-32).
#include "bench/plot_png.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "nestedfp/error.hpp"

namespace nestedfp::bench::plot {

namespace {

// 5x7 glyphs, one byte per row, bit 4 = leftmost column.
struct Glyph {
  char c;
  std::array<uint8_t, 7> rows;
};
constexpr Glyph kFont[] = {
    {' ', {0, 0, 0, 0, 0, 0, 0}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},
    {',', {0, 0, 0, 0, 0x0C, 0x04, 0x08}},
    {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
    {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'[', {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E}},
    {']', {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'/', {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}},
    {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},
    {'=', {0, 0, 0x1F, 0, 0x1F, 0, 0}},
    {'_', {0, 0, 0, 0, 0, 0, 0x1F}},
    {'*', {0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0}},
    {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'!', {0x04, 0x04, 0x04, 0x04, 0x04, 0, 0x04}},
    {'\'', {0x0C, 0x04, 0x08, 0, 0, 0, 0}},
    {'"', {0x0A, 0x0A, 0x0A, 0, 0, 0, 0}},
    {'#', {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A}},
    {'@', {0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0E}},
    {'?', {0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04}},
};

const std::array<uint8_t, 7>& glyph(char c) {
  if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
  for (auto& g : kFont)
    if (g.c == c) return g.rows;
  return kFont[sizeof(kFont) / sizeof(kFont[0]) - 1].rows;  // '?'
}

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
}

void chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
  put_u32(out, uint32_t(data.size()));
  size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_u32(out, crc32(out.data() + start, out.size() - start));
}

std::string tick_label(double v, double step) {
  char buf[32];
  if (v == 0) return "0";
  double a = std::fabs(v);
  if (a >= 1e6 || a < 1e-3) {
    std::snprintf(buf, sizeof buf, "%.2g", v);
  } else {
    int decimals = std::max(0, int(std::ceil(-std::log10(step) - 1e-9)));
    std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 6), v);
  }
  return buf;
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc) {
  static const auto table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

Canvas::Canvas(int width, int height, Rgb bg)
    : w_(width), h_(height), px_(size_t(width) * height * 3) {
  if (width <= 0 || height <= 0) fail("plot: canvas size {}x{} must be positive", width, height);
  for (size_t i = 0; i < px_.size(); i += 3) px_[i] = bg.r, px_[i + 1] = bg.g, px_[i + 2] = bg.b;
}

void Canvas::set(int x, int y, Rgb c) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return;
  uint8_t* p = &px_[(size_t(y) * w_ + x) * 3];
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

Rgb Canvas::get(int x, int y) const {
  if (x < 0 || y < 0 || x >= w_ || y >= h_) return {};
  const uint8_t* p = &px_[(size_t(y) * w_ + x) * 3];
  return {p[0], p[1], p[2]};
}

void Canvas::fill_rect(int x0, int y0, int x1, int y1, Rgb c) {
  if (x0 > x1) std::swap(x0, x1);
  if (y0 > y1) std::swap(y0, y1);
  for (int y = std::max(0, y0); y <= std::min(h_ - 1, y1); ++y)
    for (int x = std::max(0, x0); x <= std::min(w_ - 1, x1); ++x) set(x, y, c);
}

void Canvas::line(int x0, int y0, int x1, int y1, Rgb c, int thickness) {
  // Bresenham; thickness by stamping a small square at each step.
  int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
  int lo = -(thickness - 1) / 2, hi = thickness / 2;
  for (int guard = 0; guard < 100000; ++guard) {
    fill_rect(x0 + lo, y0 + lo, x0 + hi, y0 + hi, c);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

void Canvas::marker(int x, int y, Rgb c, int r) {
  for (int dy = -r; dy <= r; ++dy)
    for (int dx = -r; dx <= r; ++dx)
      if (dx * dx + dy * dy <= r * r + r) set(x + dx, y + dy, c);
}

void Canvas::text(int x, int y, const std::string& s, Rgb c, int scale, bool vertical) {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto& rows = glyph(s[i]);
    for (int row = 0; row < 7; ++row)
      for (int col = 0; col < 5; ++col) {
        if (!(rows[size_t(row)] & (0x10 >> col))) continue;
        int gx = int(i) * 6 + col, gy = row;  // glyph pixel in unrotated text space
        // vertical: text runs upward from (x, y + height); glyph x -> -y, glyph y -> +x.
        int px = vertical ? x + gy * scale : x + gx * scale;
        int py = vertical ? y - (gx + 1) * scale + 1 : y + gy * scale;
        fill_rect(px, py, px + scale - 1, py + scale - 1, c);
      }
  }
}

std::vector<uint8_t> Canvas::encode_png() const {
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> ihdr;
  put_u32(ihdr, uint32_t(w_));
  put_u32(ihdr, uint32_t(h_));
  ihdr.insert(ihdr.end(),
              {8, 2, 0, 0, 0});  // 8-bit, truecolour, deflate, adaptive filter, no interlace
  chunk(out, "IHDR", ihdr);
  // Filter type 1 (Sub) on every row: charts are mostly flat colour, which Sub turns into zeros.
  std::vector<uint8_t> raw;
  raw.reserve(size_t(h_) * (size_t(w_) * 3 + 1));
  for (int y = 0; y < h_; ++y) {
    raw.push_back(1);
    const uint8_t* row = &px_[size_t(y) * w_ * 3];
    for (int i = 0; i < w_ * 3; ++i) raw.push_back(uint8_t(row[i] - (i >= 3 ? row[i - 3] : 0)));
  }
  uLongf cap = compressBound(uLong(raw.size()));
  std::vector<uint8_t> z(cap);
  if (compress2(z.data(), &cap, raw.data(), uLong(raw.size()), 9) != Z_OK)
    fail("plot: zlib compression failed");
  z.resize(cap);
  chunk(out, "IDAT", z);
  chunk(out, "IEND", {});
  return out;
}

void Canvas::save_png(const std::string& path) const {
  auto png = encode_png();
  std::ofstream f(path, std::ios::binary);
  if (!f) fail("plot: cannot write {}", path);
  f.write(reinterpret_cast<const char*>(png.data()), std::streamsize(png.size()));
  if (!f) fail("plot: error writing {}", path);
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) hi = lo + 1;
  double raw = (hi - lo) / std::max(1, target);
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag * (1 + 1e-9)) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  return ticks;
}

Rgb palette(size_t i) {
  static const Rgb colors[] = {{31, 119, 180},  {255, 127, 14}, {44, 160, 44},   {214, 39, 40},
                               {148, 103, 189}, {140, 86, 75},  {227, 119, 194}, {127, 127, 127}};
  return colors[i % 8];
}

void draw_chart(Canvas& cv, const Chart& ch, int x0, int y0, int w, int h) {
  const Rgb black{0, 0, 0}, grid{225, 225, 225}, gray{90, 90, 90};
  // Data range.
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (auto& s : ch.series)
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, s.y[i]), ymax = std::max(ymax, s.y[i]);
    }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (ymin >= 0 && std::isnan(ch.y_min)) ymin = 0;
  if (!std::isnan(ch.x_min)) xmin = ch.x_min;
  if (!std::isnan(ch.x_max)) xmax = ch.x_max;
  if (!std::isnan(ch.y_min)) ymin = ch.y_min;
  if (!std::isnan(ch.y_max)) ymax = ch.y_max;
  if (!(xmax > xmin)) xmax = xmin + 1;
  if (!(ymax > ymin)) ymax = ymin + 1;
  // Extend data-derived ranges to the enclosing ticks so both axes end on a labelled value.
  auto snap = [](double& lo, double& hi, bool fixed_lo, bool fixed_hi) {
    auto t = nice_ticks(lo, hi);
    double step = t.size() > 1 ? t[1] - t[0] : 1;
    if (!fixed_lo) lo = std::floor(lo / step + 1e-9) * step;
    if (!fixed_hi) hi = std::ceil(hi / step - 1e-9) * step;
    t = nice_ticks(lo, hi);
    return t;
  };
  auto xt = snap(xmin, xmax, !std::isnan(ch.x_min), !std::isnan(ch.x_max));
  auto yt = snap(ymin, ymax, !std::isnan(ch.y_min), !std::isnan(ch.y_max));
  double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1, ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;

  // Layout: title on top, y label on the left, tick labels, x label below.
  int ylab_w = 0;
  for (double t : yt) ylab_w = std::max(ylab_w, Canvas::text_width(tick_label(t, ystep)));
  const int left = x0 + 14 + 8 + ylab_w + 6, right = x0 + w - 16;
  const int top = y0 + 28, bottom = y0 + h - 36;
  auto X = [&](double v) {
    return left + int(std::lround((v - xmin) / (xmax - xmin) * (right - left)));
  };
  auto Y = [&](double v) {
    return bottom - int(std::lround((v - ymin) / (ymax - ymin) * (bottom - top)));
  };

  for (double t : yt) {
    cv.line(left, Y(t), right, Y(t), grid);
    std::string l = tick_label(t, ystep);
    cv.text(left - 6 - Canvas::text_width(l), Y(t) - 3, l, gray);
  }
  for (double t : xt) {
    if (t < xmin - 1e-12 || t > xmax + 1e-12) continue;
    cv.line(X(t), top, X(t), bottom, grid);
    cv.line(X(t), bottom, X(t), bottom + 4, black);
    std::string l = tick_label(t, xstep);
    cv.text(X(t) - Canvas::text_width(l) / 2, bottom + 8, l, gray);
  }
  cv.line(left, top, left, bottom, black);
  cv.line(left, bottom, right, bottom, black);
  cv.text(x0 + (w - Canvas::text_width(ch.title, 2)) / 2, y0 + 6, ch.title, black, 2);
  cv.text(left + (right - left - Canvas::text_width(ch.x_label)) / 2, bottom + 22, ch.x_label,
          black);
  cv.text(x0 + 6, top + (bottom - top + Canvas::text_width(ch.y_label)) / 2, ch.y_label, black, 1,
          true);

  for (auto& s : ch.series) {
    size_t n = std::min(s.x.size(), s.y.size());
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return s.x[a] < s.x[b]; });
    bool have_prev = false;
    int px = 0, py = 0;
    for (size_t i : order) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        have_prev = false;  // gaps break the line
        continue;
      }
      int cx = std::clamp(X(s.x[i]), left, right), cy = std::clamp(Y(s.y[i]), top, bottom);
      if (s.bar_width > 0) {
        const int bx0 = std::clamp(X(s.x[i] - s.bar_width / 2), left, right),
                  bx1 = std::clamp(X(s.x[i] + s.bar_width / 2), left, right),
                  by0 = std::clamp(Y(std::max(ymin, 0.0)), top, bottom);
        cv.fill_rect(bx0, std::min(cy, by0), bx1, std::max(cy, by0), s.color);
      }
      if (s.lines && have_prev) cv.line(px, py, cx, cy, s.color, 2);
      if (s.markers) cv.marker(cx, cy, s.color, 2);
      px = cx, py = cy, have_prev = true;
    }
  }
  // Legend, top right inside the plot area.
  int lw = 0;
  for (auto& s : ch.series) lw = std::max(lw, Canvas::text_width(s.name));
  if (lw > 0) {
    int lx = right - lw - 30, ly = top + 6;
    int lh = int(ch.series.size()) * 12 + 6;
    cv.fill_rect(lx - 4, ly - 4, right - 4, ly + lh - 4, {255, 255, 255});
    for (size_t i = 0; i < ch.series.size(); ++i) {
      int yy = ly + int(i) * 12;
      cv.fill_rect(lx, yy + 1, lx + 12, yy + 5, ch.series[i].color);
      cv.text(lx + 18, yy, ch.series[i].name, black);
    }
  }
}

void save_charts_png(const std::string& path, const std::vector<Chart>& charts, int width,
                     int panel_height) {
  Canvas cv(width, panel_height * int(std::max<size_t>(1, charts.size())));
  for (size_t i = 0; i < charts.size(); ++i)
    draw_chart(cv, charts[i], 0, int(i) * panel_height, width, panel_height);
  cv.save_png(path);
}

}  // namespace nestedfp::bench::plot
