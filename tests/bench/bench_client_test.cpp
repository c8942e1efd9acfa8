// The bench client against a fake OpenAI SSE server on loopback with fixed token timing, plus the
// statistics, trace parsing and PNG output on their own.
#include "bench/bench_client.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bench/plot_png.hpp"
#include "nestedfp/error.hpp"

using namespace nestedfp::bench;
using json = nlohmann::json;

namespace {

constexpr double kFirstDelay = 0.060;  // fake prefill time
constexpr double kTokenDelay = 0.015;  // fake time per further token
constexpr int kEosAfter = 20;          // the fake "model" emits EOS after 20 tokens

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

// Streams max_tokens (at most kEosAfter) tokens "t0 t1 ..."; a prompt starting with id 1 gets no
// usage chunk (the client must count events) and a closing finish-only event; prompts longer than
// 1000 tokens are rejected with 400 like a real server's context check.
class FakeServer {
 public:
  FakeServer() {
    srv_.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"fake-model","object":"model"}]})",
                      "application/json");
    });
    srv_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      int s = steps_.load();
      res.set_content(
          "# HELP nestedfp_steps_total x\n# TYPE nestedfp_steps_total counter\n"
          "nestedfp_steps_total{precision=\"fp16\"} " +
              std::to_string(s) + "\n" + "nestedfp_steps_total{precision=\"fp8\"} " +
              std::to_string(s / 2) + "\n" + "nestedfp_step_tokens_total{precision=\"fp16\"} " +
              std::to_string(10 * s) + "\n" + "nestedfp_step_tokens_total{precision=\"fp8\"} " +
              std::to_string(30 * s) + "\n",
          "text/plain");
    });
    srv_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      json body = json::parse(req.body);
      last_body_ = req.body;
      auto prompt = body["prompt"].get<std::vector<int>>();
      if (prompt.size() > 1000) {
        res.status = 400;
        res.set_content(R"({"error":{"message":"prompt too long","type":"invalid_request_error"}})",
                        "application/json");
        return;
      }
      int n = std::min(body["max_tokens"].get<int>(), kEosAfter);
      bool usage = prompt.empty() || prompt[0] != 1;
      res.set_chunked_content_provider("text/event-stream", [this, n, usage, np = prompt.size()](
                                                                size_t, httplib::DataSink& sink) {
        for (int k = 0; k < n; ++k) {
          sleep_s(k == 0 ? kFirstDelay : kTokenDelay);
          steps_++;
          json ev = {{"id", "c"},
                     {"object", "text_completion"},
                     {"choices",
                      {{{"index", 0},
                        {"text", " t" + std::to_string(k)},
                        {"finish_reason", k + 1 == n ? json("length") : json(nullptr)}}}}};
          if (!usage && k + 1 == n) ev["choices"][0]["finish_reason"] = nullptr;
          std::string s = "data: " + ev.dump() + "\n\n";
          sink.write(s.data(), s.size());
        }
        if (!usage) {
          std::string fin =
              "data: " +
              json({{"choices", {{{"index", 0}, {"text", ""}, {"finish_reason", "stop"}}}}})
                  .dump() +
              "\n\n";
          sink.write(fin.data(), fin.size());
        } else {
          std::string u = "data: " +
                          json({{"choices", json::array()},
                                {"usage", {{"prompt_tokens", np}, {"completion_tokens", n}}}})
                              .dump() +
                          "\n\n";
          sink.write(u.data(), u.size());
        }
        std::string done = "data: [DONE]\n\n";
        sink.write(done.data(), done.size());
        sink.done();
        return true;
      });
    });
    port_ = srv_.bind_to_any_port("127.0.0.1");
    th_ = std::thread([this] { srv_.listen_after_bind(); });
    while (!srv_.is_running()) sleep_s(0.001);
  }
  ~FakeServer() {
    srv_.stop();
    th_.join();
  }
  Endpoint endpoint() const {
    Endpoint ep = parse_url("http://127.0.0.1:" + std::to_string(port_));
    ep.model = "fake-model";
    return ep;
  }
  std::string last_body_;

 private:
  httplib::Server srv_;
  int port_ = 0;
  std::thread th_;
  std::atomic<int> steps_{0};
};

RequestSpec spec(int prompt_len, int max_tokens, int32_t first_id = 5) {
  RequestSpec s;
  s.prompt = make_prompt(prompt_len, 10, 100, 7);
  if (!s.prompt.empty()) s.prompt[0] = first_id;
  s.max_tokens = max_tokens;
  return s;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const nestedfp::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(BenchClient, ParsesUrls) {
  auto ep = parse_url("http://localhost:8123/v1");
  EXPECT_EQ(ep.host, "localhost");
  EXPECT_EQ(ep.port, 8123);
  EXPECT_EQ(ep.base_path, "");
  EXPECT_EQ(parse_url("http://h:1/proxy/").base_path, "/proxy");
  EXPECT_EQ(parse_url("https://h").port, 443);
  EXPECT_THROW(parse_url("ftp://h:1"), nestedfp::Error);
  EXPECT_THROW(parse_url("http://h:notaport"), nestedfp::Error);
}

TEST(BenchClient, TimesAStreamingRequest) {
  FakeServer fake;
  Endpoint ep = fake.endpoint();
  EXPECT_EQ(discover_model(ep), "fake-model");
  RequestResult r = run_request(ep, spec(16, 8), now_s());
  ASSERT_TRUE(r.ok) << r.error;
  json sent = json::parse(fake.last_body_);
  EXPECT_EQ(sent["prompt"].size(), 16u);
  EXPECT_EQ(sent["max_tokens"], 8);
  EXPECT_EQ(sent["stream"], true);
  EXPECT_EQ(sent["model"], "fake-model");
  EXPECT_EQ(r.output_tokens, 8);
  EXPECT_EQ(r.prompt_tokens, 16);
  // Lower bounds are tight (the fake cannot be faster); upper bounds leave room for a loaded CI
  // box.
  EXPECT_GE(r.ttft_s, kFirstDelay * 0.9);
  EXPECT_LT(r.ttft_s, kFirstDelay + 0.25);
  ASSERT_EQ(r.itl_s.size(), 7u);
  double mean_itl = 0;
  for (double x : r.itl_s) mean_itl += x / 7;
  EXPECT_GE(mean_itl, kTokenDelay * 0.9);
  EXPECT_LT(mean_itl, kTokenDelay + 0.04);
  EXPECT_GE(r.e2e_s, r.ttft_s + 7 * kTokenDelay * 0.9);
  EXPECT_LT(r.e2e_s, kFirstDelay + 7 * kTokenDelay + 0.4);
}

TEST(BenchClient, EarlyEosAndEventCounting) {
  FakeServer fake;
  Endpoint ep = fake.endpoint();
  RequestResult eos = run_request(ep, spec(4, 30), now_s());  // stops at the fake EOS
  ASSERT_TRUE(eos.ok) << eos.error;
  EXPECT_EQ(eos.output_tokens, kEosAfter);
  EXPECT_EQ(eos.max_tokens, 30);
  // No usage chunk: tokens are counted from content events; the finish-only event is not one.
  RequestResult counted = run_request(ep, spec(4, 6, /*first_id=*/1), now_s());
  ASSERT_TRUE(counted.ok) << counted.error;
  EXPECT_EQ(counted.output_tokens, 6);
  EXPECT_EQ(counted.itl_s.size(), 5u);
}

TEST(BenchClient, ReportsServerAndConnectionErrors) {
  FakeServer fake;
  RequestResult bad = run_request(fake.endpoint(), spec(1001, 4), now_s());
  EXPECT_FALSE(bad.ok);
  EXPECT_NE(bad.error.find("HTTP 400"), std::string::npos) << bad.error;
  EXPECT_NE(bad.error.find("prompt too long"), std::string::npos) << bad.error;

  // A port nobody listens on: bind one without listen() and keep it bound while connecting, so
  // no other test running in parallel can take the port (a connect to it is refused).
  int port;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  Endpoint gone = parse_url("http://127.0.0.1:" + std::to_string(port));
  std::string e = error_of([&] { discover_model(gone); });
  EXPECT_NE(e.find("cannot reach the server at http://127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << e;
  gone.model = "m";
  gone.timeout_s = 5;
  RequestResult r = run_request(gone, spec(4, 4), now_s());
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("request failed"), std::string::npos) << r.error;
}

TEST(BenchClient, ClosedLoopStatisticsAndMetricsPolling) {
  FakeServer fake;
  Endpoint ep = fake.endpoint();
  std::vector<RequestSpec> specs(8, spec(32, 8));
  specs[7] = spec(1001, 8);  // one failure
  double start = now_s();
  MetricsPoller poller(ep, start, 0.05);
  double t0 = now_s();
  auto results = run_closed_loop(ep, specs, 4, start);
  double wall = now_s() - t0;
  poller.stop();
  Summary s = summarize(results, Slo{0.5, 0.001}, wall);
  EXPECT_EQ(s.requests, 8u);
  EXPECT_EQ(s.completed, 7u);
  EXPECT_EQ(s.failed, 1u);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_EQ(s.output_tokens, 7 * 8);
  EXPECT_EQ(s.input_tokens, 7 * 32);
  EXPECT_GE(s.ttft.mean, kFirstDelay * 0.9);
  EXPECT_LT(s.ttft.mean, kFirstDelay + 0.25);
  EXPECT_GE(s.tpot.mean, kTokenDelay * 0.9);
  EXPECT_LT(s.tpot.mean, kTokenDelay + 0.04);
  EXPECT_EQ(s.itl.n, 7u * 7u);
  // 7 successes through 4 clients take at least two request times.
  EXPECT_GE(wall, 2 * (kFirstDelay + 7 * kTokenDelay) * 0.9);
  EXPECT_NEAR(s.request_throughput, 7 / wall, 1e-9);
  EXPECT_NEAR(s.output_token_throughput, 56 / wall, 1e-9);
  // TTFT target 500 ms is met by all 7, TPOT target 1 ms by none; the failure misses both.
  EXPECT_NEAR(s.slo_ttft_attainment, 7.0 / 8, 1e-12);
  EXPECT_EQ(s.slo_tpot_attainment, 0);
  EXPECT_EQ(s.goodput, 0);
  // The requests overlapped: 4 start at about the same time.
  std::vector<double> starts;
  for (auto& r : results) starts.push_back(r.start_s);
  std::sort(starts.begin(), starts.end());
  EXPECT_LT(starts[3] - starts[0], 0.1);

  auto samples = poller.samples();
  ASSERT_GE(samples.size(), 2u);
  EXPECT_TRUE(poller.saw_metrics());
  EXPECT_GT(samples.back().steps_fp16, samples.front().steps_fp16);
  EXPECT_EQ(samples.back().tokens_fp8, 30 * samples.back().steps_fp16);
}

TEST(BenchClient, OpenLoopFollowsArrivalTimes) {
  FakeServer fake;
  std::vector<RequestSpec> specs = {spec(8, 2), spec(8, 2), spec(8, 2)};
  specs[0].arrival_s = 0, specs[1].arrival_s = 0.2, specs[2].arrival_s = 0.1;
  auto results = run_open_loop(fake.endpoint(), specs, now_s());
  for (auto& r : results) ASSERT_TRUE(r.ok) << r.error;
  EXPECT_GE(results[1].start_s, 0.2);
  EXPECT_LT(results[1].start_s, 0.3);
  EXPECT_GE(results[2].start_s, 0.1);
  EXPECT_LT(results[2].start_s, 0.2);
}

TEST(BenchStats, Percentiles) {
  EXPECT_DOUBLE_EQ(percentile({4, 1, 3, 2}, 50), 2.5);
  EXPECT_DOUBLE_EQ(percentile({1, 2, 3, 4}, 90), 3.7);
  EXPECT_NEAR(percentile({1, 2, 3, 4}, 99), 3.97, 1e-12);
  EXPECT_DOUBLE_EQ(percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(percentile({}, 50), 0);
  std::vector<double> v;
  for (int k = 1; k <= 100; ++k) v.push_back(k);
  Dist d = distribution(v);
  EXPECT_DOUBLE_EQ(d.mean, 50.5);
  EXPECT_DOUBLE_EQ(d.p50, 50.5);
  EXPECT_DOUBLE_EQ(d.p90, 90.1);
  EXPECT_DOUBLE_EQ(d.p99, 99.01);
  EXPECT_EQ(d.n, 100u);
}

TEST(BenchStats, SummaryFromKnownRequests) {
  std::vector<RequestResult> rs(4);
  // start, ttft, e2e, output tokens
  double data[4][4] = {
      {0.0, 0.1, 1.1, 11}, {0.5, 0.3, 0.8, 6}, {1.0, 0.2, 0.2, 1}, {1.5, 0.05, 2.05, 5}};
  for (int k = 0; k < 4; ++k) {
    rs[size_t(k)].ok = true;
    rs[size_t(k)].start_s = data[k][0], rs[size_t(k)].ttft_s = data[k][1],
    rs[size_t(k)].e2e_s = data[k][2];
    rs[size_t(k)].output_tokens = int(data[k][3]);
    rs[size_t(k)].prompt_tokens = 10;
  }
  // TPOTs: 0.1, 0.1, (none: 1 token), 0.5. Window: 0 .. max(1.1, 1.3, 1.2, 3.55) = 3.55 s.
  Summary s = summarize(rs, Slo{0.25, 0.2});
  EXPECT_DOUBLE_EQ(s.duration_s, 3.55);
  EXPECT_EQ(s.tpot.n, 3u);
  EXPECT_NEAR(s.tpot.mean, 0.7 / 3, 1e-12);
  EXPECT_NEAR(s.ttft.mean, 0.65 / 4, 1e-12);
  EXPECT_EQ(s.output_tokens, 23);
  EXPECT_NEAR(s.total_token_throughput, 63 / 3.55, 1e-9);
  // TTFT <= 250 ms: requests 0, 2, 3. TPOT <= 200 ms: 0, 1, 2 (single token counts as met).
  EXPECT_DOUBLE_EQ(s.slo_ttft_attainment, 0.75);
  EXPECT_DOUBLE_EQ(s.slo_tpot_attainment, 0.75);
  EXPECT_DOUBLE_EQ(s.slo_attainment, 0.5);
  EXPECT_NEAR(s.goodput, 2 / 3.55, 1e-12);

  std::vector<RequestResult> ten(10);
  for (int k = 0; k < 10; ++k) ten[size_t(k)].start_s = 9 - k;  // reverse order on purpose
  auto mid = middle_fraction(ten, 0.6);
  ASSERT_EQ(mid.size(), 6u);
  EXPECT_EQ(mid.front().start_s, 2);
  EXPECT_EQ(mid.back().start_s, 7);
  EXPECT_EQ(middle_fraction(ten, 1).size(), 10u);
  EXPECT_THROW(middle_fraction(ten, 0), nestedfp::Error);
}

TEST(BenchTrace, ParsesAndSlices) {
  std::string csv =
      "TIMESTAMP,ContextTokens,GeneratedTokens\n"
      "2023-11-16 23:59:59.5000000,374,44\n"
      "2023-11-17 00:00:00.2500000,3000,109\n"
      "2023-11-17 00:00:02.5000000,91,0\n"
      "2023-11-17 00:00:04.5000000,50,500\n";
  auto rows = parse_trace(csv, "t.csv");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_NEAR(rows[1].t_s, 0.75, 1e-9);  // across midnight
  EXPECT_NEAR(rows[3].t_s, 5.0, 1e-9);
  EXPECT_EQ(rows[1].context_tokens, 3000);

  TraceSlice sl;
  sl.start_s = 0.5;
  sl.duration_s = 4;
  sl.time_scale = 2;
  sl.max_input_len = 1000;
  sl.max_output_len = 100;
  auto specs = slice_trace(rows, sl);  // rows at 0.75 and 3.0 are inside [0.5, 4.5)
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_DOUBLE_EQ(specs[0].arrival_s, 0);
  EXPECT_NEAR(specs[1].arrival_s, (3.0 - 0.75) / 2, 1e-9);
  EXPECT_EQ(specs[0].prompt.size(), 1000u);  // clamped
  EXPECT_EQ(specs[0].max_tokens, 100);       // clamped
  EXPECT_EQ(specs[1].max_tokens, 1);         // 0 generated tokens -> at least 1
  sl = TraceSlice{};
  sl.num_requests = 3;
  EXPECT_EQ(slice_trace(rows, sl).size(), 3u);
  sl.start_s = 100;
  EXPECT_THROW(slice_trace(rows, sl), nestedfp::Error);

  auto e = error_of([] {
    parse_trace("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0,12,x\n", "bad.csv");
  });
  EXPECT_NE(e.find("bad.csv:2: bad GeneratedTokens 'x'"), std::string::npos) << e;
  e = error_of([] { parse_trace("time,in,out\n1,2,3\n", "h.csv"); });
  EXPECT_NE(e.find("h.csv:1: expected a header"), std::string::npos) << e;
  e = error_of(
      [] { parse_trace("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,2\n", "ts.csv"); });
  EXPECT_NE(e.find("ts.csv:2: bad TIMESTAMP"), std::string::npos) << e;
  EXPECT_THROW(read_trace("/nonexistent/trace.csv"), nestedfp::Error);
}

TEST(BenchTrace, ReadsTheAzureConversationTrace) {
  std::string path =
      std::string(NESTEDFP_SOURCE_DIR) + "/../shared/data/traces/azure_llm_2023_conv.csv";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no trace at " << path;
  auto rows = read_trace(path);
  EXPECT_EQ(rows.size(), 19366u);  // the file has no trailing newline
  EXPECT_EQ(rows[0].context_tokens, 374);
  EXPECT_EQ(rows[0].generated_tokens, 44);
  EXPECT_NEAR(rows[1].t_s, 4.314579, 1e-6);  // 18:15:50.9951690 - 18:15:46.6805900
  TraceSlice sl;
  sl.duration_s = 60;
  auto specs = slice_trace(rows, sl);
  EXPECT_GT(specs.size(), 10u);
  EXPECT_LT(specs.back().arrival_s, 60);
}

TEST(BenchMetrics, ParsesPrecisionCounters) {
  auto s = parse_precision_metrics(
      "# HELP nestedfp_steps_total Engine steps\n"
      "nestedfp_requests_total 5\n"
      "nestedfp_steps_total{precision=\"fp16\"} 12\n"
      "nestedfp_steps_total{precision=\"fp8\"} 30\n"
      "nestedfp_step_tokens_total{precision=\"fp16\"} 100\n"
      "nestedfp_step_tokens_total{precision=\"fp8\"} 4096\n");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->steps_fp16, 12);
  EXPECT_EQ(s->steps_fp8, 30);
  EXPECT_EQ(s->tokens_fp16, 100);
  EXPECT_EQ(s->tokens_fp8, 4096);
  EXPECT_FALSE(parse_precision_metrics("other_metric 1\n").has_value());
}

TEST(BenchMetrics, PrecisionTimelinePerInterval) {
  std::vector<MetricsSample> m = {{0.0, 0, 0, 0, 0},
                                  {0.5, 30, 10, 300, 900},   // 30 fp16 + 10 fp8 steps
                                  {1.0, 30, 10, 300, 900},   // idle
                                  {1.5, 50, 10, 400, 900}};  // fp16 only
  auto tl = precision_timeline(m, {0.1, 0.2, 0.3, 0.6, 1.49, 1.5});
  ASSERT_EQ(tl.t_s.size(), 3u);
  EXPECT_DOUBLE_EQ(tl.t_s[0], 0.25);
  EXPECT_DOUBLE_EQ(tl.fp16_step_share[0], 0.75);
  EXPECT_DOUBLE_EQ(tl.fp16_token_share[0], 0.25);
  EXPECT_TRUE(std::isnan(tl.fp16_step_share[1]));
  EXPECT_DOUBLE_EQ(tl.fp16_step_share[2], 1.0);
  EXPECT_DOUBLE_EQ(tl.fp16_steps_per_s[0], 60);
  EXPECT_DOUBLE_EQ(tl.fp8_steps_per_s[0], 20);
  EXPECT_DOUBLE_EQ(tl.arrivals_per_s[0], 6);  // 3 sends in [0, 0.5)
  EXPECT_DOUBLE_EQ(tl.arrivals_per_s[1], 2);  // 0.6
  EXPECT_DOUBLE_EQ(tl.arrivals_per_s[2], 2);  // 1.49; 1.5 is past the last sample
}

namespace {

uint32_t be32(const std::vector<uint8_t>& b, size_t p) {
  return uint32_t(b[p]) << 24 | uint32_t(b[p + 1]) << 16 | uint32_t(b[p + 2]) << 8 | b[p + 3];
}

struct DecodedPng {
  uint32_t w = 0, h = 0;
  std::vector<uint8_t> rgb;
};

// An independent reader: checks signature, chunk CRCs (with zlib's crc32), IHDR fields, and
// inflates + unfilters IDAT.
DecodedPng check_png(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  DecodedPng out;
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  EXPECT_TRUE(b.size() > 8 && std::equal(sig, sig + 8, b.begin())) << path;
  size_t p = 8;
  std::vector<uint8_t> idat;
  std::vector<std::string> types;
  while (p + 12 <= b.size()) {
    uint32_t len = be32(b, p);
    std::string type(b.begin() + long(p + 4), b.begin() + long(p + 8));
    types.push_back(type);
    EXPECT_LE(p + 12 + len, b.size());
    uint32_t crc = uint32_t(::crc32(0L, b.data() + p + 4, uInt(len + 4)));
    EXPECT_EQ(crc, be32(b, p + 8 + len)) << type << " CRC";
    if (type == "IHDR") {
      EXPECT_EQ(len, 13u);
      out.w = be32(b, p + 8), out.h = be32(b, p + 12);
      EXPECT_EQ(b[p + 16], 8);  // bit depth
      EXPECT_EQ(b[p + 17], 2);  // truecolour
    }
    if (type == "IDAT")
      idat.insert(idat.end(), b.begin() + long(p + 8), b.begin() + long(p + 8 + len));
    p += 12 + len;
  }
  EXPECT_EQ(p, b.size());
  EXPECT_TRUE(!types.empty() && types.front() == "IHDR" && types.back() == "IEND");
  size_t stride = size_t(out.w) * 3;
  std::vector<uint8_t> raw(size_t(out.h) * (stride + 1));
  uLongf n = uLongf(raw.size());
  EXPECT_EQ(uncompress(raw.data(), &n, idat.data(), uLong(idat.size())), Z_OK);
  EXPECT_EQ(n, raw.size());
  out.rgb.resize(size_t(out.h) * stride);
  for (size_t y = 0; y < out.h; ++y) {
    uint8_t filter = raw[y * (stride + 1)];
    EXPECT_LE(filter, 1);  // the encoder uses None or Sub only
    for (size_t i = 0; i < stride; ++i) {
      uint8_t v = raw[y * (stride + 1) + 1 + i];
      uint8_t left = i >= 3 ? out.rgb[y * stride + i - 3] : 0;
      out.rgb[y * stride + i] = uint8_t(filter == 1 ? v + left : v);
    }
  }
  return out;
}

}  // namespace

TEST(PlotPng, Crc32CheckValue) {
  const char* s = "123456789";
  EXPECT_EQ(nestedfp::bench::plot::crc32(reinterpret_cast<const uint8_t*>(s), 9), 0xCBF43926u);
}

TEST(PlotPng, CanvasRoundTripsThroughPng) {
  nestedfp::bench::plot::Canvas cv(37, 11, {10, 20, 30});
  cv.set(5, 3, {200, 100, 50});
  cv.text(10, 2, "A1", {0, 0, 0});
  std::string path = (std::filesystem::temp_directory_path() / "nestedfp_canvas_test.png").string();
  cv.save_png(path);
  auto png = check_png(path);
  ASSERT_EQ(png.w, 37u);
  ASSERT_EQ(png.h, 11u);
  auto at = [&](int x, int y, int c) {
    return png.rgb[(size_t(y) * 37 + size_t(x)) * 3 + size_t(c)];
  };
  EXPECT_EQ(at(0, 0, 0), 10);
  EXPECT_EQ(at(0, 0, 2), 30);
  EXPECT_EQ(at(5, 3, 0), 200);
  EXPECT_EQ(at(5, 3, 1), 100);
  // 'A' top row is .###. : pixels 11..13 of row 2 are ink, 10 and 14 are background.
  EXPECT_EQ(at(11, 2, 0), 0);
  EXPECT_EQ(at(13, 2, 0), 0);
  EXPECT_EQ(at(10, 2, 0), 10);
  EXPECT_EQ(at(14, 2, 0), 10);
  std::filesystem::remove(path);
}

TEST(PlotPng, NiceTicks) {
  auto t = nestedfp::bench::plot::nice_ticks(0, 97);
  ASSERT_FALSE(t.empty());
  EXPECT_EQ(t.front(), 0);
  EXPECT_DOUBLE_EQ(t[1] - t[0], 20);
  t = nestedfp::bench::plot::nice_ticks(0.013, 0.052);  // raw step 0.0065 rounds up to 0.01
  EXPECT_NEAR(t[1] - t[0], 0.01, 1e-12);
  EXPECT_NEAR(t.front(), 0.02, 1e-12);
  EXPECT_NEAR(t.back(), 0.05, 1e-12);
  t = nestedfp::bench::plot::nice_ticks(-3, 3, 6);
  EXPECT_EQ(t.size(), 7u);
  EXPECT_EQ(t[3], 0);
}

TEST(BenchReport, WritesPlotsAndJson) {
  std::vector<RequestResult> rs;
  for (int k = 0; k < 40; ++k) {
    RequestResult r;
    r.ok = true;
    r.start_s = k * 0.25;
    r.ttft_s = 0.05 + 0.002 * k;
    r.e2e_s = 0.5 + 0.01 * k;
    r.output_tokens = 16;
    rs.push_back(r);
  }
  std::vector<MetricsSample> ms;
  for (int k = 0; k <= 10; ++k)
    ms.push_back({double(k), 10.0 * k, k * k * 1.0, 100.0 * k, 500.0 * k * k});
  std::string dir = (std::filesystem::temp_directory_path() / "nestedfp_bench_plots").string();
  std::filesystem::remove_all(dir);
  auto files = write_plots(dir, rs, ms, "unit test");
  ASSERT_EQ(files.size(), 2u);
  for (auto& f : files) {
    auto png = check_png(f);
    EXPECT_EQ(png.w, 900u);
    size_t colored = 0;  // series pixels (saturated colours), not just black axes on white
    for (size_t i = 0; i + 2 < png.rgb.size(); i += 3) {
      int mx = std::max({png.rgb[i], png.rgb[i + 1], png.rgb[i + 2]});
      int mn = std::min({png.rgb[i], png.rgb[i + 1], png.rgb[i + 2]});
      colored += mx - mn > 80;
    }
    EXPECT_GT(colored, 200u) << f;
  }
  EXPECT_EQ(check_png(files[0]).h, 900u);  // three 300-pixel panels

  Summary s = summarize(rs, {});
  json j = to_json(s);
  EXPECT_EQ(j["completed"], 40);
  EXPECT_NEAR(j["ttft_ms"]["mean"].get<double>(), (0.05 + 0.002 * 19.5) * 1e3, 1e-9);
  std::string table = format_table({{"row-a", s}});
  EXPECT_NE(table.find("row-a"), std::string::npos);
  EXPECT_NE(table.find("40/40"), std::string::npos);
  const char* keep = std::getenv("NESTEDFP_KEEP_PLOTS");
  if (!keep) std::filesystem::remove_all(dir);
}

// Not a test: serves the fake on a fixed port for manual runs of `nestedfp bench serve`, e.g.
//   NESTEDFP_FAKE_SECONDS=60 test_bench --gtest_also_run_disabled_tests
//   --gtest_filter='*ManualFake*'
TEST(BenchClient, DISABLED_ManualFakeServer) {
  FakeServer fake;
  std::printf("fake server at http://127.0.0.1:%d\n", fake.endpoint().port);
  std::fflush(stdout);
  const char* secs = std::getenv("NESTEDFP_FAKE_SECONDS");
  sleep_s(secs ? std::atof(secs) : 30);
}
