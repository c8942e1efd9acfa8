// Bench client: one timed streaming completion over HTTP (SSE), model discovery, /metrics polling,
// and the closed-loop (fixed concurrency) and open-loop (trace arrival times) drivers.
#include "bench/bench_client.hpp"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <list>
#include <mutex>
#include <thread>

#include "nestedfp/error.hpp"

namespace nestedfp::bench {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Endpoint parse_url(const std::string& url) {
  Endpoint ep;
  std::string rest = url;
  if (rest.rfind("http://", 0) == 0)
    rest = rest.substr(7);
  else if (rest.rfind("https://", 0) == 0)
    rest = rest.substr(8), ep.scheme = "https";
  else if (rest.find("://") != std::string::npos)
    fail("--url {}: only http:// and https:// URLs are supported", url);
  size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos) ep.base_path = rest.substr(slash);
  while (!ep.base_path.empty() && ep.base_path.back() == '/') ep.base_path.pop_back();
  if (ep.base_path.size() >= 3 && ep.base_path.compare(ep.base_path.size() - 3, 3, "/v1") == 0)
    ep.base_path.resize(ep.base_path.size() - 3);  // accept the OpenAI-client style ".../v1"
  size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) {
    ep.host = hostport;
    ep.port = ep.scheme == "https" ? 443 : 80;
  } else {
    ep.host = hostport.substr(0, colon);
    try {
      size_t used = 0;
      ep.port = std::stoi(hostport.substr(colon + 1), &used);
      if (used != hostport.size() - colon - 1 || ep.port <= 0 || ep.port > 65535)
        throw std::exception();
    } catch (const std::exception&) {
      fail("--url {}: bad port '{}'", url, hostport.substr(colon + 1));
    }
  }
  if (ep.host.empty()) fail("--url {}: missing host (expected http://HOST:PORT)", url);
  return ep;
}

namespace {

std::string base_url(const Endpoint& ep) {
  return ep.scheme + "://" + ep.host + ":" + std::to_string(ep.port) + ep.base_path;
}

std::unique_ptr<httplib::Client> client_for(const Endpoint& ep, double timeout_s) {
  auto c = std::make_unique<httplib::Client>(ep.scheme + "://" + ep.host + ":" +
                                             std::to_string(ep.port));
  c->set_connection_timeout(std::chrono::milliseconds(int64_t(std::min(timeout_s, 10.0) * 1000)));
  c->set_read_timeout(std::chrono::milliseconds(int64_t(timeout_s * 1000)));
  c->set_write_timeout(std::chrono::seconds(30));
  c->set_keep_alive(false);
  return c;
}

httplib::Headers auth_headers(const Endpoint& ep) {
  httplib::Headers h;
  if (!ep.api_key.empty()) h.emplace("Authorization", "Bearer " + ep.api_key);
  return h;
}

std::string trim_body(std::string s) {
  if (s.size() > 300) s = s.substr(0, 300) + "...";
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

std::string discover_model(const Endpoint& ep) {
  auto c = client_for(ep, 10);
  auto res = c->Get((ep.base_path + "/v1/models").c_str(), auth_headers(ep));
  if (!res)
    fail("cannot reach the server at {} ({}); is `nestedfp serve` running there?", base_url(ep),
         httplib::to_string(res.error()));
  if (res->status != 200)
    fail("GET {}/v1/models answered HTTP {}: {}", base_url(ep), res->status, trim_body(res->body));
  nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
  if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
      !j["data"][0].contains("id") || !j["data"][0]["id"].is_string())
    fail("GET {}/v1/models: expected {{\"data\": [{{\"id\": ...}}]}}, got: {}", base_url(ep),
         trim_body(res->body));
  return j["data"][0]["id"].get<std::string>();
}

RequestResult run_request(const Endpoint& ep, const RequestSpec& spec, double run_start_s) {
  RequestResult r;
  r.max_tokens = spec.max_tokens;
  r.prompt_tokens = int(spec.prompt.size());
  nlohmann::json body = {
      {"model", ep.model}, {"prompt", spec.prompt}, {"max_tokens", spec.max_tokens},
      {"temperature", 0},  {"stream", true},        {"stream_options", {{"include_usage", true}}}};
  if (spec.ignore_eos) body["ignore_eos"] = true;

  httplib::Request req;
  req.method = "POST";
  req.path = ep.base_path + "/v1/completions";
  req.body = body.dump();
  req.headers = auth_headers(ep);
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", "text/event-stream");

  int status = 0;
  std::string buffer, raw;  // unparsed SSE text; the whole body (for error messages)
  bool done = false, first = true;
  int events = 0, usage_tokens = -1;
  double t0 = now_s(), last = 0;
  r.start_s = t0 - run_start_s;
  auto handle_event = [&](const std::string& data, double t) {
    if (data == "[DONE]") {
      done = true;
      return;
    }
    nlohmann::json j = nlohmann::json::parse(data, nullptr, false);
    if (j.is_discarded()) {
      r.error = "bad SSE payload: " + trim_body(data);
      return;
    }
    if (j.contains("error")) {
      r.error = "server error in stream: " + trim_body(j["error"].dump());
      return;
    }
    if (j.contains("usage") && j["usage"].is_object() && j["usage"].contains("completion_tokens")) {
      usage_tokens = j["usage"]["completion_tokens"].get<int>();
      if (j["usage"].contains("prompt_tokens"))
        r.prompt_tokens = j["usage"]["prompt_tokens"].get<int>();
    }
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty()) return;
    const auto& ch = j["choices"][0];
    std::string text;
    if (ch.contains("text") && ch["text"].is_string())
      text = ch["text"].get<std::string>();
    else if (ch.contains("delta") && ch["delta"].contains("content") &&
             ch["delta"]["content"].is_string())
      text = ch["delta"]["content"].get<std::string>();
    bool finish_only =
        text.empty() && ch.contains("finish_reason") && !ch["finish_reason"].is_null();
    if (finish_only) return;  // a closing event carries no token
    ++events;
    if (first) {
      r.ttft_s = t - t0;
      first = false;
    } else {
      r.itl_s.push_back(t - last);
    }
    last = t;
  };
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    double t = now_s();
    raw.append(data, n);
    if (status != 200) return raw.size() < (1 << 20);
    buffer.append(data, n);
    for (;;) {  // events end with a blank line
      size_t end = buffer.find("\n\n");
      size_t crlf = buffer.find("\r\n\r\n");
      size_t len = 2;
      if (crlf != std::string::npos && (end == std::string::npos || crlf < end))
        end = crlf, len = 4;
      if (end == std::string::npos) break;
      std::string ev = buffer.substr(0, end);
      buffer.erase(0, end + len);
      std::string payload;
      size_t p = 0;
      while (p < ev.size()) {
        size_t e = ev.find('\n', p);
        std::string line = ev.substr(p, e == std::string::npos ? std::string::npos : e - p);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.rfind("data:", 0) == 0) {
          std::string d = line.substr(5);
          if (!d.empty() && d[0] == ' ') d.erase(0, 1);
          payload += (payload.empty() ? "" : "\n") + d;
        }
        if (e == std::string::npos) break;
        p = e + 1;
      }
      if (!payload.empty()) handle_event(payload, t);
      if (!r.error.empty()) return false;
    }
    return true;
  };

  auto c = client_for(ep, ep.timeout_s);
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  bool sent = c->send(req, res, err);
  double t_end = now_s();
  r.e2e_s = t_end - t0;
  if (!r.error.empty()) return r;
  if (status <= 0) status = res.status;
  if (!sent && status == 200 && done) sent = true;  // the server closed right after [DONE]
  if (status > 0 && status != 200) {
    r.error = "HTTP " + std::to_string(status) + ": " + trim_body(raw.empty() ? res.body : raw);
    return r;
  }
  if (!sent) {
    r.error = "request failed: " + httplib::to_string(err);
    return r;
  }
  if (!done) {
    r.error = "stream ended without [DONE]";
    return r;
  }
  if (events == 0 && usage_tokens <= 0) {
    r.error = "stream carried no tokens";
    return r;
  }
  r.output_tokens = usage_tokens >= 0 ? usage_tokens : events;
  if (first) r.ttft_s = r.e2e_s;
  r.ok = true;
  return r;
}

// ---- /metrics polling ---------------------------------------------------------------------------

std::optional<MetricsSample> parse_precision_metrics(const std::string& text) {
  MetricsSample s;
  bool any = false;
  size_t p = 0;
  while (p < text.size()) {
    size_t e = text.find('\n', p);
    std::string line = text.substr(p, e == std::string::npos ? std::string::npos : e - p);
    p = e == std::string::npos ? text.size() : e + 1;
    if (line.empty() || line[0] == '#') continue;
    double* slot = nullptr;
    bool steps = line.rfind("nestedfp_steps_total{", 0) == 0;
    bool toks = line.rfind("nestedfp_step_tokens_total{", 0) == 0;
    if (!steps && !toks) continue;
    bool fp8 = line.find("precision=\"fp8\"") != std::string::npos;
    bool fp16 = line.find("precision=\"fp16\"") != std::string::npos;
    if (!fp8 && !fp16) continue;
    slot = steps ? (fp8 ? &s.steps_fp8 : &s.steps_fp16) : (fp8 ? &s.tokens_fp8 : &s.tokens_fp16);
    size_t brace = line.find('}');
    if (brace == std::string::npos) continue;
    try {
      *slot = std::stod(line.substr(brace + 1));
      any = true;
    } catch (const std::exception&) {
    }
  }
  if (!any) return std::nullopt;
  return s;
}

struct MetricsPoller::Impl {
  Endpoint ep;
  double start, interval;
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::vector<MetricsSample> samples;
  std::thread th;
};

MetricsPoller::MetricsPoller(Endpoint ep, double run_start_s, double interval_s) : impl_(new Impl) {
  impl_->ep = std::move(ep);
  impl_->start = run_start_s;
  impl_->interval = interval_s;
  impl_->th = std::thread([this] {
    Impl& m = *impl_;
    auto c = client_for(m.ep, 5);
    for (;;) {
      double t = now_s();
      if (auto res = c->Get((m.ep.base_path + "/metrics").c_str(), auth_headers(m.ep));
          res && res->status == 200) {
        if (auto s = parse_precision_metrics(res->body)) {
          s->t_s = t - m.start;
          saw_ = true;
          std::lock_guard<std::mutex> lock(m.mu);
          m.samples.push_back(*s);
        }
      }
      std::unique_lock<std::mutex> lock(m.mu);
      if (m.cv.wait_for(lock, std::chrono::duration<double>(m.interval),
                        [&] { return m.stopping; }))
        return;
    }
  });
}

void MetricsPoller::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->th.joinable()) impl_->th.join();
}

MetricsPoller::~MetricsPoller() {
  stop();
  delete impl_;
}

std::vector<MetricsSample> MetricsPoller::samples() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->samples;
}

// ---- drivers
// -------------------------------------------------------------------------------------

std::vector<RequestResult> run_closed_loop(const Endpoint& ep,
                                           const std::vector<RequestSpec>& specs, int concurrency,
                                           double run_start_s) {
  std::vector<RequestResult> results(specs.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < std::max(1, concurrency); ++w)
    workers.emplace_back([&] {
      for (size_t k; (k = next.fetch_add(1)) < specs.size();)
        results[k] = run_request(ep, specs[k], run_start_s);
    });
  for (auto& t : workers) t.join();
  return results;
}

std::vector<RequestResult> run_open_loop(const Endpoint& ep, const std::vector<RequestSpec>& specs,
                                         double run_start_s) {
  std::vector<RequestResult> results(specs.size());
  std::vector<size_t> order(specs.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return specs[a].arrival_s < specs[b].arrival_s; });
  // One thread per request in flight; finished ones are joined as the replay goes, so a long
  // trace does not pile up thousands of exited threads.
  struct InFlight {
    std::thread th;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<InFlight> inflight;
  auto reap = [&] {
    for (auto it = inflight.begin(); it != inflight.end();)
      if (it->done->load())
        it->th.join(), it = inflight.erase(it);
      else
        ++it;
  };
  for (size_t k : order) {
    double wait = run_start_s + specs[k].arrival_s - now_s();
    if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    reap();
    auto done = std::make_shared<std::atomic<bool>>(false);
    inflight.push_back({std::thread([&, k, done] {
                          results[k] = run_request(ep, specs[k], run_start_s);
                          done->store(true);
                        }),
                        done});
  }
  for (auto& f : inflight) f.th.join();
  return results;
}

}  // namespace nestedfp::bench
