// Bench statistics (percentiles, summaries, middle-fraction filtering), trace CSV parsing and
// slicing, and random-token prompts.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "bench/bench_client.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::bench {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  double rank = std::clamp(p, 0.0, 100.0) / 100.0 * double(v.size() - 1);
  size_t lo = size_t(std::floor(rank));
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - double(lo));
}

Dist distribution(const std::vector<double>& v) {
  Dist d;
  d.n = v.size();
  if (v.empty()) return d;
  double sum = 0;
  for (double x : v) sum += x;
  d.mean = sum / double(v.size());
  d.p50 = percentile(v, 50);
  d.p90 = percentile(v, 90);
  d.p99 = percentile(v, 99);
  d.min = *std::min_element(v.begin(), v.end());
  d.max = *std::max_element(v.begin(), v.end());
  return d;
}

Summary summarize(const std::vector<RequestResult>& results, const Slo& slo, double window_s) {
  Summary s;
  s.slo = slo;
  s.requests = results.size();
  std::vector<double> ttft, tpot, itl, e2e;
  double first = INFINITY, last = -INFINITY;
  size_t met_ttft = 0, met_tpot = 0, met_both = 0;
  std::set<std::string> seen;
  for (auto& r : results) {
    if (!r.ok) {
      ++s.failed;
      if (seen.insert(r.error).second && s.errors.size() < 5) s.errors.push_back(r.error);
      continue;
    }
    ++s.completed;
    first = std::min(first, r.start_s);
    last = std::max(last, r.start_s + r.e2e_s);
    s.input_tokens += r.prompt_tokens;
    s.output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s);
    e2e.push_back(r.e2e_s);
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    double req_tpot = r.output_tokens > 1 ? (r.e2e_s - r.ttft_s) / (r.output_tokens - 1) : 0;
    if (r.output_tokens > 1) tpot.push_back(req_tpot);
    bool ok_ttft = slo.ttft_s <= 0 || r.ttft_s <= slo.ttft_s;
    bool ok_tpot = slo.tpot_s <= 0 || r.output_tokens <= 1 || req_tpot <= slo.tpot_s;
    met_ttft += ok_ttft;
    met_tpot += ok_tpot;
    met_both += ok_ttft && ok_tpot;
  }
  s.duration_s = window_s > 0 ? window_s : (s.completed ? last - first : 0);
  if (s.duration_s > 0) {
    s.request_throughput = double(s.completed) / s.duration_s;
    s.output_token_throughput = double(s.output_tokens) / s.duration_s;
    s.total_token_throughput = double(s.input_tokens + s.output_tokens) / s.duration_s;
    s.goodput = double(met_both) / s.duration_s;
  }
  s.ttft = distribution(ttft);
  s.tpot = distribution(tpot);
  s.itl = distribution(itl);
  s.e2e = distribution(e2e);
  if (s.requests) {  // failed requests miss every target
    s.slo_ttft_attainment = double(met_ttft) / double(s.requests);
    s.slo_tpot_attainment = double(met_tpot) / double(s.requests);
    s.slo_attainment = double(met_both) / double(s.requests);
  }
  return s;
}

std::vector<RequestResult> middle_fraction(std::vector<RequestResult> results, double ratio) {
  if (ratio <= 0 || ratio > 1) fail("--middle-ratio {} must be in (0, 1]", ratio);
  std::stable_sort(
      results.begin(), results.end(),
      [](const RequestResult& a, const RequestResult& b) { return a.start_s < b.start_s; });
  size_t n = results.size();
  size_t keep = size_t(std::llround(double(n) * ratio));
  if (keep == 0 && n > 0) keep = 1;
  size_t drop = (n - keep) / 2;
  return std::vector<RequestResult>(results.begin() + long(drop),
                                    results.begin() + long(drop + keep));
}

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = unsigned(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + int64_t(doe) - 719468;
}

bool parse_timestamp(const std::string& s, double& out) {
  int y, mo, d, h, mi;
  double sec;
  char sep;
  if (std::sscanf(s.c_str(), "%d-%d-%d%c%d:%d:%lf", &y, &mo, &d, &sep, &h, &mi, &sec) == 7 &&
      (sep == ' ' || sep == 'T')) {
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 ||
        sec >= 61)
      return false;
    out = double(days_from_civil(y, unsigned(mo), unsigned(d))) * 86400.0 + h * 3600.0 + mi * 60.0 +
          sec;
    return true;
  }
  try {  // plain seconds
    size_t used = 0;
    out = std::stod(s, &used);
    return used == s.size() && std::isfinite(out);
  } catch (const std::exception&) {
    return false;
  }
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace

std::vector<TraceRow> parse_trace(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  size_t lineno = 0;
  int col_t = -1, col_ctx = -1, col_gen = -1;
  std::vector<TraceRow> rows;
  double t0 = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (trim(line).empty()) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(trim(c));
    if (col_t < 0) {  // header
      for (size_t k = 0; k < cells.size(); ++k) {
        if (cells[k] == "TIMESTAMP") col_t = int(k);
        if (cells[k] == "ContextTokens") col_ctx = int(k);
        if (cells[k] == "GeneratedTokens") col_gen = int(k);
      }
      if (col_t < 0 || col_ctx < 0 || col_gen < 0)
        fail("{}:{}: expected a header with TIMESTAMP,ContextTokens,GeneratedTokens, got '{}'",
             name, lineno, trim(line));
      continue;
    }
    int need = std::max({col_t, col_ctx, col_gen});
    if (int(cells.size()) <= need)
      fail("{}:{}: expected {} columns, got {}", name, lineno, need + 1, cells.size());
    TraceRow r;
    double t;
    if (!parse_timestamp(cells[size_t(col_t)], t))
      fail("{}:{}: bad TIMESTAMP '{}' (expected YYYY-MM-DD HH:MM:SS.ffffff or seconds)", name,
           lineno, cells[size_t(col_t)]);
    auto count = [&](int col, const char* what) {
      const std::string& c = cells[size_t(col)];
      try {
        size_t used = 0;
        long long v = std::stoll(c, &used);
        if (used == c.size() && v >= 0 && v < (1LL << 31)) return int(v);
      } catch (const std::exception&) {
      }
      fail("{}:{}: bad {} '{}' (expected a non-negative integer)", name, lineno, what, c);
    };
    r.context_tokens = count(col_ctx, "ContextTokens");
    r.generated_tokens = count(col_gen, "GeneratedTokens");
    if (rows.empty()) t0 = t;
    r.t_s = t - t0;
    rows.push_back(r);
  }
  if (col_t < 0)
    fail("{}: empty trace (expected a TIMESTAMP,ContextTokens,GeneratedTokens header)", name);
  if (rows.empty()) fail("{}: the trace has a header but no rows", name);
  return rows;
}

std::vector<TraceRow> read_trace(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open trace {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_trace(ss.str(), path);
}

std::vector<RequestSpec> slice_trace(const std::vector<TraceRow>& rows_in, const TraceSlice& s) {
  if (s.time_scale <= 0) fail("--time-scale {} must be positive", s.time_scale);
  if (s.start_s < 0 || s.duration_s < 0) fail("--start and --duration must not be negative");
  std::vector<TraceRow> rows = rows_in;
  std::stable_sort(rows.begin(), rows.end(),
                   [](const TraceRow& a, const TraceRow& b) { return a.t_s < b.t_s; });
  std::vector<RequestSpec> out;
  double first = -1;
  for (auto& r : rows) {
    if (r.t_s < s.start_s) continue;
    if (s.duration_s > 0 && r.t_s >= s.start_s + s.duration_s) break;
    if (s.num_requests && out.size() >= s.num_requests) break;
    if (first < 0) first = r.t_s;
    RequestSpec spec;
    spec.arrival_s = (r.t_s - first) / s.time_scale;
    int in = std::max(1, r.context_tokens), gen = std::max(1, r.generated_tokens);
    if (s.max_input_len > 0) in = std::min(in, s.max_input_len);
    if (s.max_output_len > 0) gen = std::min(gen, s.max_output_len);
    spec.prompt.resize(size_t(in));  // ids are filled in by the caller
    spec.max_tokens = gen;
    out.push_back(std::move(spec));
  }
  if (out.empty())
    fail(
        "the trace slice is empty: no rows between --start {} s and --start + --duration ({} s); "
        "the trace spans {:.1f} s",
        s.start_s, s.duration_s > 0 ? s.start_s + s.duration_s : rows.back().t_s, rows.back().t_s);
  return out;
}

std::vector<int32_t> make_prompt(int len, int32_t lo, int32_t hi, uint64_t seed) {
  if (hi <= lo) fail("token id range [{}, {}) is empty", lo, hi);
  std::vector<int32_t> ids(size_t(std::max(0, len)));
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
  for (auto& id : ids) {  // splitmix64
    x += 0x9E3779B97F4A7C15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    id = lo + int32_t(z % uint64_t(hi - lo));
  }
  return ids;
}

}  // namespace nestedfp::bench
