#include "bench/policy_sim.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "nestedfp/error.hpp"
#include "nestedfp/precision_policy.hpp"

namespace nestedfp::bench {

std::vector<SimRequest> read_sim_requests(const std::string& path) {
  std::ifstream f(path);
  if (!f) fail("policy-sim: cannot open {}", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    fail("policy-sim: {} is not JSON: {}", path, e.what());
  }
  if (!j.contains("runs") || !j["runs"].is_array() || j["runs"].empty() ||
      !j["runs"][0].contains("requests"))
    fail("policy-sim: {} has no runs[0].requests: give a `bench serve` JSON", path);
  std::vector<SimRequest> out;
  for (const auto& r : j["runs"][0]["requests"]) {
    SimRequest s;
    try {
      s.send_s = r.at("start_s").get<double>();
      s.prompt_tokens = r.at("prompt_tokens").get<int>();
      s.output_tokens = r.value("max_tokens", 0);
      if (s.output_tokens <= 0) s.output_tokens = r.value("output_tokens", 0);
    } catch (const std::exception& e) {
      fail(
          "policy-sim: {}: request {}: start_s, prompt_tokens or max_tokens missing or not a "
          "number: {}",
          path, out.size(), e.what());
    }
    if (s.prompt_tokens < 1 || s.output_tokens < 1)
      fail("policy-sim: {}: request {} has {} prompt and {} output tokens (need >= 1 each)", path,
           out.size(), s.prompt_tokens, s.output_tokens);
    out.push_back(s);
  }
  if (out.empty()) fail("policy-sim: {} holds no requests", path);
  std::stable_sort(out.begin(), out.end(),
                   [](const SimRequest& a, const SimRequest& b) { return a.send_s < b.send_s; });
  return out;
}

LatencyModel parse_latency_model(const std::string& text, const std::string& name) {
  // [precision][term]: a, b, c
  std::array<std::array<double, 3>, 2> v{};
  std::array<std::array<bool, 3>, 2> seen{};
  std::istringstream in(text);
  std::string line;
  const std::string key = "nestedfp_latency_model_coefficient{";
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    const size_t close = line.find('}');
    if (close == std::string::npos) continue;
    const std::string labels = line.substr(key.size(), close - key.size());
    const int p = labels.find("precision=\"fp16\"") != std::string::npos  ? 0
                  : labels.find("precision=\"fp8\"") != std::string::npos ? 1
                                                                          : -1;
    const size_t t = labels.find("term=\"");
    if (p < 0 || t == std::string::npos || t + 7 > labels.size()) continue;
    const int term = labels[t + 6] - 'a';
    if (term < 0 || term > 2) continue;
    try {
      v[p][term] = std::stod(line.substr(close + 1));
    } catch (const std::exception&) {
      fail("policy-sim: {}: bad value in '{}'", name, line);
    }
    if (!std::isfinite(v[p][term]))  // a NaN step time would stall the simulated clock
      fail("policy-sim: {}: '{}' is not a finite number of seconds", name, line);
    seen[p][term] = true;
  }
  LatencyModel m;
  for (int p = 0; p < 2; ++p) {
    for (int t = 0; t < 3; ++t)
      if (!seen[p][t])
        fail(
            "policy-sim: {} lacks "
            "nestedfp_latency_model_coefficient{{precision=\"{}\",term=\"{}\"}} "
            "(a dump of a nested server's /metrics has it)",
            name, p ? "fp8" : "fp16", char('a' + t));
    m.set_prior(p ? Precision::FP8 : Precision::FP16,
                LatencyModel::Coeffs{v[p][0], v[p][1], v[p][2]});
  }
  return m;
}

LatencyModel read_latency_model(const std::string& path) {
  std::ifstream f(path);
  if (!f) fail("policy-sim: cannot open {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_latency_model(ss.str(), path);
}

SimResult simulate(const std::vector<SimRequest>& requests, const LatencyModel& model,
                   const std::string& spec, const SimOptions& o) {
  if (o.max_num_batched_tokens < 1 || o.max_num_seqs < 1)
    fail("policy-sim: --max-num-batched-tokens ({}) and --max-num-seqs ({}) must be >= 1",
         o.max_num_batched_tokens, o.max_num_seqs);
  PolicyContext ctx{o.max_num_batched_tokens, o.slo_ttft_ms, o.slo_tpot_ms, &model};
  auto policy = make_precision_policy(spec, ctx);
  SimResult res;
  res.policy = policy->spec();

  struct Live {
    int left = 0;       // prompt tokens without KV
    int generated = 0;  // output tokens so far
    double last = 0;    // when its latest token came
  };
  std::vector<Live> st(requests.size());
  res.requests.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    st[i].left = requests[i].prompt_tokens;
    auto& r = res.requests[i];
    r.ok = true;
    r.start_s = requests[i].send_s;
    r.prompt_tokens = requests[i].prompt_tokens;
    r.max_tokens = r.output_tokens = requests[i].output_tokens;
  }
  std::deque<size_t> waiting;  // no first token yet, arrival order
  std::vector<size_t> running;
  double now = 0;
  size_t next = 0;
  while (next < requests.size() || !waiting.empty() || !running.empty()) {
    for (; next < requests.size() && requests[next].send_s <= now; ++next) waiting.push_back(next);
    if (waiting.empty() && running.empty()) {
      now = requests[next].send_s;
      continue;
    }
    StepLoad load;
    load.now_s = now;
    // Decodes first, each one token, within both limits (the rest wait a step, as in the
    // scheduler); prompts get what is left.
    const int decodes =
        std::min({static_cast<int>(running.size()), o.max_num_seqs, o.max_num_batched_tokens});
    int budget = o.max_num_batched_tokens - decodes;
    load.num_tokens = load.num_seqs = load.num_decode_seqs = decodes;
    std::vector<std::pair<size_t, int>> chunks;
    for (size_t w : waiting) {
      load.prompts.push_back({now - requests[w].send_s, st[w].left, w});
      if (budget > 0 && load.num_seqs < o.max_num_seqs) {
        const int take = std::min(budget, st[w].left);
        chunks.emplace_back(w, take);
        budget -= take;
        load.num_tokens += take;
        ++load.num_seqs;
      }
    }
    const Precision p = policy->choose(load);
    now += model.predict(p, load.num_tokens, load.num_seqs);
    ++res.steps;
    res.tokens += load.num_tokens;
    if (p == Precision::FP16) {
      ++res.fp16_steps;
      res.fp16_tokens += load.num_tokens;
    }
    std::vector<size_t> still;
    for (size_t k = 0; k < running.size(); ++k) {
      const size_t i = running[k];
      if (static_cast<int>(k) < decodes) {
        res.requests[i].itl_s.push_back(now - st[i].last);
        st[i].last = now;
        if (++st[i].generated >= requests[i].output_tokens) {
          res.requests[i].e2e_s = now - requests[i].send_s;
          continue;
        }
      }
      still.push_back(i);
    }
    running.swap(still);
    for (auto [w, take] : chunks) {
      if ((st[w].left -= take) > 0) continue;
      st[w].last = now;
      st[w].generated = 1;
      res.requests[w].ttft_s = now - requests[w].send_s;
      if (requests[w].output_tokens <= 1)
        res.requests[w].e2e_s = res.requests[w].ttft_s;
      else
        running.push_back(w);
      waiting.erase(std::find(waiting.begin(), waiting.end(), w));
    }
  }
  return res;
}

}  // namespace nestedfp::bench
