#include "nestedfp/latency_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "nestedfp/error.hpp"

namespace nestedfp {
namespace {

// Features scaled so a typical step has entries near 1: the ridge weights below then mean
// "about that many observations" in every direction.
constexpr double kTokScale = 1024, kSeqScale = 64;
constexpr double kPriorWeight = 2;  // the prior counts like two observations per direction

std::array<double, 3> features(int tokens, int seqs) {
  return {1.0, tokens / kTokScale, seqs / kSeqScale};
}
LatencyModel::Coeffs unscale(const std::array<double, 3>& th) {
  return {th[0], th[1] / kTokScale, th[2] / kSeqScale};
}
std::array<double, 3> scale(const LatencyModel::Coeffs& c) {
  return {c.a, c.b * kTokScale, c.c * kSeqScale};
}

// Solves (A + lambda I) x = y + lambda x0 for a symmetric 3x3 A (Gaussian elimination, pivoting).
std::array<double, 3> ridge_solve(std::array<double, 9> A, std::array<double, 3> y, double lambda,
                                  const std::array<double, 3>& x0) {
  for (int i = 0; i < 3; ++i) A[i * 4] += lambda, y[i] += lambda * x0[i];
  for (int col = 0; col < 3; ++col) {
    int piv = col;
    for (int r = col + 1; r < 3; ++r)
      if (std::abs(A[r * 3 + col]) > std::abs(A[piv * 3 + col])) piv = r;
    if (piv != col) {
      for (int k = 0; k < 3; ++k) std::swap(A[col * 3 + k], A[piv * 3 + k]);
      std::swap(y[col], y[piv]);
    }
    double d = A[col * 3 + col];
    if (std::abs(d) < 1e-300) return x0;  // only possible with lambda = 0 and no data
    for (int r = col + 1; r < 3; ++r) {
      double f = A[r * 3 + col] / d;
      for (int k = col; k < 3; ++k) A[r * 3 + k] -= f * A[col * 3 + k];
      y[r] -= f * y[col];
    }
  }
  std::array<double, 3> x{};
  for (int r = 2; r >= 0; --r) {
    double s = y[r];
    for (int k = r + 1; k < 3; ++k) s -= A[r * 3 + k] * x[k];
    x[r] = s / A[r * 3 + r];
  }
  return x;
}

}  // namespace

LatencyModel::LatencyModel(double decay) : decay_(decay) {
  if (!(decay > 0 && decay <= 1)) fail("latency model: decay {} must be in (0, 1]", decay);
}

void LatencyModel::set_prior(Precision p, Coeffs c) {
  State& s = st_[idx(p)];
  s = State{};
  s.known = true;
  s.prior = s.fit = c;
}

void LatencyModel::set_prior(Precision p, const std::vector<StepTiming>& timings) {
  std::array<double, 9> A{};
  std::array<double, 3> y{};
  double mean = 0, fastest = 1e30;
  int n = 0;
  for (const auto& t : timings) {
    if (t.precision != p) continue;
    auto x = features(t.tokens, t.seqs);
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) A[i * 3 + j] += x[i] * x[j];
      y[i] += x[i] * t.seconds;
    }
    mean += t.seconds, ++n;
    fastest = std::min(fastest, t.seconds);
  }
  if (n == 0) fail("latency model: no {} timings to fit", to_string(p));
  // A tiny ridge towards "constant time" keeps under-determined fits (one or two points) sane.
  set_prior(p, unscale(ridge_solve(A, y, 1e-8, {mean / n, 0, 0})));
  st_[idx(p)].floor_s = std::max(1e-5, fastest);
}

void LatencyModel::observe(const StepTiming& t) {
  if (t.tokens <= 0 || !(t.seconds >= 0) || !std::isfinite(t.seconds)) return;
  State& s = st_[idx(t.precision)];
  auto x = features(t.tokens, t.seqs);
  for (auto& v : s.xtx) v *= decay_;
  for (auto& v : s.xty) v *= decay_;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) s.xtx[i * 3 + j] += x[i] * x[j];
    s.xty[i] += x[i] * t.seconds;
  }
  if (!s.known) {  // the first observation stands in for a prior: constant time
    s.known = true;
    s.prior = {t.seconds, 0, 0};
    s.floor_s = t.seconds;
  }
  s.floor_s = std::max(1e-5, std::min(s.floor_s, t.seconds));
  ++s.observed;
  refit(s);
}

void LatencyModel::refit(State& s) const {
  s.fit = unscale(ridge_solve(s.xtx, s.xty, kPriorWeight, scale(s.prior)));
}

double LatencyModel::predict(Precision p, int tokens, int seqs) const {
  const State* s = &st_[idx(p)];
  if (!s->known) s = &st_[1 - idx(p)];
  if (!s->known) return 1e-5;
  double v = s->fit.a + s->fit.b * tokens + s->fit.c * seqs;
  return std::max(v, s->floor_s);
}

std::vector<StepTiming> load_step_timings(const std::string& path) {
  std::ifstream f(path);
  if (!f) fail("--latency-model {}: cannot open the file", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    fail("--latency-model {}: not JSON ({})", path, e.what());
  }
  std::vector<StepTiming> out;
  auto prec = [&](const std::string& s) {
    if (s == "fp16") return Precision::FP16;
    if (s == "fp8") return Precision::FP8;
    fail("--latency-model {}: precision '{}' is neither fp16 nor fp8", path, s);
  };
  try {
    if (j.contains("steps")) {
      for (const auto& s : j.at("steps"))
        out.push_back({prec(s.at("precision").get<std::string>()), s.at("tokens").get<int>(),
                       s.at("seqs").get<int>(), s.at("seconds").get<double>()});
    } else if (j.contains("decode")) {  // nestedfp bench engine (decode and prefill per mode)
      for (const auto& r : j.at("decode"))
        if (r.value("weights", std::string()) == "nested")
          out.push_back({prec(r.at("precision").get<std::string>()), r.at("batch").get<int>(),
                         r.at("batch").get<int>(), r.at("step_ms").get<double>() / 1e3});
      for (const auto& r : j.value("prefill", nlohmann::json::array())) {
        std::string e = r.value("engine", std::string());
        if (e != "NestedFP16" && e != "NestedFP8") continue;
        int chunk = r.at("chunk").get<int>();
        double tps = r.at("tok_s").get<double>();
        if (chunk > 0 && tps > 0)
          out.push_back(
              {e == "NestedFP16" ? Precision::FP16 : Precision::FP8, chunk, 1, chunk / tps});
      }
    } else if (j.contains("results")) {  // bench engine before 2026-12-02
      for (const auto& r : j.at("results")) {
        if (r.value("weights", std::string("nested")) != "nested") continue;
        Precision p = prec(r.at("precision").get<std::string>());
        int b = r.at("batch").get<int>();
        out.push_back({p, b, b, r.at("decode_step_ms").get<double>() / 1e3});
        // bench engine prefills in FP16 whatever the row's precision unless it says otherwise.
        double pf = r.value("prefill_tok_s", 0.0);
        int pt = r.value("prefill_step_tokens", 2048), ctx = std::max(1, r.value("context", 1024));
        Precision pp = prec(r.value("prefill_precision", std::string("fp16")));
        if (pf > 0 && pt > 0 && pp == p) out.push_back({p, pt, std::max(1, pt / ctx), pt / pf});
      }
    } else {
      fail(
          "--latency-model {}: expected a \"steps\" list or a bench engine engine.json "
          "(\"decode\" or \"results\")",
          path);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("--latency-model {}: {} (fields: precision, tokens, seqs, seconds; or bench engine rows)",
         path, e.what());
  }
  return out;
}

void fit_priors(LatencyModel& m, const std::vector<StepTiming>& timings, const std::string& what) {
  auto max_tokens = [&](Precision p) {
    int n = 0;
    for (auto& t : timings)
      if (t.precision == p) n = std::max(n, t.tokens);
    return n;
  };
  std::vector<StepTiming> all = timings;
  for (Precision p : {Precision::FP16, Precision::FP8}) {
    if (max_tokens(p) == 0)
      fail("{}: no {} step timings; the latency model needs both precisions", what, to_string(p));
    // bench engine measures prefill in FP16 only: a precision without large steps borrows the
    // other's, scaled by their ratio on the steps both have (else its per-token cost is a guess
    // from decode steps alone and large steps look nearly free).
    Precision o = p == Precision::FP16 ? Precision::FP8 : Precision::FP16;
    if (max_tokens(p) * 4 > max_tokens(o)) continue;
    double lsum = 0;
    int n = 0;
    for (auto& a : timings)
      for (auto& b : timings)
        if (a.precision == p && b.precision == o && a.tokens == b.tokens && a.seqs == b.seqs &&
            b.seconds > 0 && a.seconds > 0)
          lsum += std::log(a.seconds / b.seconds), ++n;
    if (n == 0) continue;
    for (auto& b : timings)
      if (b.precision == o && b.tokens > max_tokens(p))
        all.push_back({p, b.tokens, b.seqs, b.seconds * std::exp(lsum / n)});
  }
  for (Precision p : {Precision::FP16, Precision::FP8}) m.set_prior(p, all);
}

void render_latency_model(const LatencyModel& m, std::string& o) {
  o += "# HELP nestedfp_latency_model_coefficient Step-time model seconds = a + b*tokens + "
       "c*seqs, per precision (0 while unknown).\n# TYPE nestedfp_latency_model_coefficient "
       "gauge\n";
  for (Precision p : {Precision::FP16, Precision::FP8}) {
    auto c = m.coeffs(p);
    for (auto [term, v] : {std::pair{"a", c.a}, {"b", c.b}, {"c", c.c}})
      o += fmt::format("nestedfp_latency_model_coefficient{{precision=\"{}\",term=\"{}\"}} {}\n",
                       to_string(p), term, v);
  }
  o += "# HELP nestedfp_latency_model_observed_steps_total Served steps the model learnt from.\n"
       "# TYPE nestedfp_latency_model_observed_steps_total counter\n";
  for (Precision p : {Precision::FP16, Precision::FP8})
    o += fmt::format("nestedfp_latency_model_observed_steps_total{{precision=\"{}\"}} {}\n",
                     to_string(p), m.observed(p));
}

void ArrivalRate::add(double t_s, int tokens) {
  const double s = std::max(0, tokens);
  double w = 1 / window_;
  if (!started_ || t_s >= t_) {
    sum_ = at(t_s);  // decay what is there to the arrival, which becomes the reference time
    t_ = t_s;
    started_ = true;
  } else {
    w *= std::exp(-(t_ - t_s) / window_);
  }
  sum_.requests += w;
  sum_.tokens += w * s;
  sum_.tokens_sq += w * s * s;
}

ArrivalRate::Rates ArrivalRate::at(double now_s) const {
  if (!started_) return {};
  const double d = std::exp(-std::max(0.0, now_s - t_) / window_);
  return {sum_.requests * d, sum_.tokens * d, sum_.tokens_sq * d};
}

}  // namespace nestedfp
