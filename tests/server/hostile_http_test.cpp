// A hostile but fair client against the real server over loopback: each test is one class of the
// findings in issue 14 (deep JSON, slow clients, abandoned requests, pipelining, bad lengths, wrong
// methods, unhonoured fields, huge prompts, the admin rule, the token endpoints).
#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <future>
#include <thread>

#include "server/http_helpers.hpp"

using namespace nestedfp;
using namespace nestedfp::httptest;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

bool send_str(int fd, const std::string& s) {
  return ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
}

// Reads until the peer closes, `until` appears `count` times, or `timeout` passes.
std::string read_for(int fd, std::chrono::milliseconds timeout, const std::string& until = "",
                     int count = 1) {
  std::string out;
  const auto end = Clock::now() + timeout;
  char buf[65536];
  while (Clock::now() < end) {
    if (!until.empty()) {
      int seen = 0;
      for (size_t p = out.find(until); p != std::string::npos; p = out.find(until, p + 1)) ++seen;
      if (seen >= count) break;
    }
    pollfd p{fd, POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0))) <= 0) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string post_req(const std::string& path, const std::string& body,
                     const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

server::ServeConfig hostile_config() {
  auto c = config();
  c.server.http_threads = 4;  // fewer workers than the slow clients below
  c.server.header_timeout_s = 2;
  c.server.body_timeout_s = 4;
  c.server.max_connections = 200;
  c.server.max_body_bytes = 1 << 20;
  return c;
}

class Hostile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new server::ServingStack(hostile_config());
    stack_->start();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  static int port() { return stack_->port(); }
  static Engine& engine() { return stack_->engine(); }
  static std::string metrics() { return Client(port()).get("/metrics").body; }
  static server::ServingStack* stack_;
};
server::ServingStack* Hostile::stack_ = nullptr;

}  // namespace

TEST_F(Hostile, DeepNestingOnEveryEndpointIsA400AndTheServerLives) {
  const std::string deep = std::string(150000, '[') + std::string(150000, ']');
  Client c(port());
  for (const std::string path : {"/v1/completions", "/v1/chat/completions", "/tokenize",
                                 "/detokenize", "/admin/precision"}) {
    for (const std::string& body :
         {"{\"messages\": " + deep + "}", "{\"prompt\": " + deep + "}", deep}) {
      auto r = c.post(path, body);
      ASSERT_EQ(r.status, 400) << path << ": " << r.body.substr(0, 200);
      EXPECT_NE(r.j["error"]["message"].get<std::string>().find("deeper than 64"),
                std::string::npos)
          << r.body;
    }
  }
  EXPECT_EQ(c.get("/health").status, 200);
}

TEST_F(Hostile, SlowClientsDoNotStopHealthAndAreCutAtTheHeaderTimeout) {
  // More slow clients than worker threads, each sending a header line every 300 ms.
  std::vector<int> slow;
  for (int i = 0; i < 16; ++i) {
    int fd = connect_to(port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_str(fd, "POST /v1/completions HTTP/1.1\r\n"));
    slow.push_back(fd);
  }
  std::atomic<bool> stop{false};
  std::thread dribble([&] {
    while (!stop) {
      for (int fd : slow) send_str(fd, "X-Slow: 1\r\n");
      std::this_thread::sleep_for(300ms);
    }
  });
  std::this_thread::sleep_for(300ms);
  Client c(port());
  for (int i = 0; i < 3; ++i) {
    auto t0 = Clock::now();
    EXPECT_EQ(c.get("/health").status, 200);
    EXPECT_LT(ms_since(t0), 1000) << "health waited behind slow clients";
    auto r = c.post("/tokenize", json{{"prompt", "def f():"}});  // a worker request too
    EXPECT_EQ(r.status, 200) << r.body;
  }
  // The header timeout (2 s) ends every slow request with 408, however steadily it dribbles.
  auto t0 = Clock::now();
  std::string first = read_for(slow[0], 5s);
  stop = true;
  dribble.join();
  EXPECT_EQ(status_of(first), 408) << first;
  EXPECT_LT(ms_since(t0), 4000);
  for (size_t i = 1; i < slow.size(); ++i) EXPECT_EQ(status_of(read_for(slow[i], 3s)), 408) << i;
  for (int fd : slow) ::close(fd);
  EXPECT_GE(metric(metrics(), "nestedfp_http_timeouts_total"), 16);
}

TEST_F(Hostile, AbandonedNonStreamingRequestsAreAbortedAndFreeTheirBlocks) {
  const double before = metric(metrics(), "nestedfp_client_disconnects_total");
  const std::string body =
      json{{"prompt", "def f():"}, {"max_tokens", 900}, {"ignore_eos", true}}.dump();
  std::vector<int> fds;
  for (int i = 0; i < 6; ++i) {
    int fd = connect_to(port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_str(fd, post_req("/v1/completions", body)));
    fds.push_back(fd);
  }
  for (int i = 0; i < 400 && engine().stats().running < 4; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_GE(engine().stats().running, 4);
  EXPECT_EQ(Client(port()).get("/health").status, 200);  // answered while every worker is busy
  for (int fd : fds) ::close(fd);
  // 900 tokens each would take far longer than this on the cpu backend.
  bool freed = false;
  for (int i = 0; i < 300 && !freed; ++i) {
    auto s = engine().stats();
    freed = s.running == 0 && s.waiting == 0 && s.kv_blocks_used == 0;
    if (!freed) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(freed) << "running " << engine().stats().running << ", KV blocks "
                     << engine().stats().kv_blocks_used;
  EXPECT_GE(metric(metrics(), "nestedfp_client_disconnects_total") - before, 6);
}

TEST_F(Hostile, PipelinedRequestsAreAllAnsweredInOrder) {
  int fd = connect_to(port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_str(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n" +
                               post_req("/tokenize", R"({"prompt": "abc"})") +
                               "GET /version HTTP/1.1\r\nHost: x\r\n\r\n" +
                               post_req("/detokenize", R"({"tokens": [999999]})")));
  std::string all = read_for(fd, 5s, "HTTP/1.1 ", 4);
  all += read_for(fd, 300ms);
  ::close(fd);
  std::vector<int> statuses;
  for (size_t p = all.find("HTTP/1.1 "); p != std::string::npos; p = all.find("HTTP/1.1 ", p + 1))
    statuses.push_back(std::stoi(all.substr(p + 9, 3)));
  EXPECT_EQ(statuses, (std::vector<int>{200, 200, 200, 400})) << all;
  const size_t tok = all.find("\"tokens\""), ver = all.find("\"version\""),
               det = all.find("outside the vocabulary");
  EXPECT_TRUE(tok != std::string::npos && ver != std::string::npos && tok < ver) << all;
  EXPECT_NE(det, std::string::npos) << all;
}

TEST_F(Hostile, BadContentLengthsAreAnsweredAtOnce) {
  struct Case {
    std::string head;
    int status;
  } cases[] = {
      {"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
       413},
      {"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n{\"prompt\": ",
       413},
      {"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
       "chunked\r\n\r\n5\r\n{\"a\":\r\n",
       411},
  };
  for (const auto& k : cases) {
    int fd = connect_to(port());
    ASSERT_GE(fd, 0);
    auto t0 = Clock::now();
    ASSERT_TRUE(send_str(fd, k.head));
    std::string r = read_for(fd, 10s);
    ::close(fd);
    EXPECT_EQ(status_of(r), k.status) << k.head << "\n-> " << r;
    EXPECT_LT(ms_since(t0), 1500) << "waited for a body that would never come: " << k.head;
    EXPECT_NE(r.find("\"error\""), std::string::npos) << r;
  }
  // A body that stops short gets 408 after the body timeout, not a hang.
  int fd = connect_to(port());
  ASSERT_TRUE(send_str(
      fd, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\""));
  EXPECT_EQ(status_of(read_for(fd, 8s)), 408);
  ::close(fd);
}

TEST_F(Hostile, WrongMethodsGet405WithAllow) {
  struct Case {
    std::string request;
    const char* allow;
  } cases[] = {
      {"GET /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n", "POST"},
      {"GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n", "POST"},
      {post_req("/v1/models", "{}"), "GET"},
      {"DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n", "GET"},
      {"PUT /admin/precision HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "GET, POST"},
      {"GET /tokenize HTTP/1.1\r\nHost: x\r\n\r\n", "POST"},
  };
  for (const auto& k : cases) {
    int fd = connect_to(port());
    ASSERT_TRUE(send_str(fd, k.request));
    std::string r = read_for(fd, 5s, "}");
    ::close(fd);
    EXPECT_EQ(status_of(r), 405) << k.request << "\n-> " << r;
    EXPECT_NE(r.find(std::string("Allow: ") + k.allow + "\r\n"), std::string::npos) << r;
  }
  EXPECT_EQ(Client(port()).get("/v1/nothing").status, 404);
}

TEST_F(Hostile, UnhonouredFieldsAndHugePromptsAre400s) {
  Client c(port());
  const json user = {{"role", "user"}, {"content", "hi"}};
  struct Case {
    std::string path;
    json body;
    const char* param;
  } cases[] = {
      {"/v1/chat/completions",
       {{"messages", {{{"role", "hacker"}, {"content", "x"}}}}},
       "messages"},
      {"/v1/chat/completions", {{"messages", {{{"role", ""}, {"content", "x"}}}}}, "messages"},
      {"/v1/chat/completions",
       {{"messages", {user}}, {"response_format", {{"type", "json_object"}}}},
       "response_format"},
      {"/v1/chat/completions",
       {{"messages", {user}}, {"response_format", {{"type", "json_schema"}}}},
       "response_format"},
      {"/v1/chat/completions", {{"messages", {user}}, {"tool_choice", "auto"}}, "tool_choice"},
      {"/v1/completions", {{"prompt", "x"}, {"logit_bias", {{"5", 200}}}}, "logit_bias"},
      {"/v1/completions", {{"prompt", "x"}, {"frobnicate", true}}, "frobnicate"},
  };
  for (const auto& k : cases) {
    auto r = c.post(k.path, k.body);
    EXPECT_EQ(r.status, 400) << k.body.dump() << " -> " << r.body;
    EXPECT_EQ(r.j["error"]["param"], k.param) << r.body;
  }
  // A 900 KB prompt is refused from its size, before the tokenizer runs.
  auto t0 = Clock::now();
  auto big =
      c.post("/v1/completions", json{{"prompt", std::string(900000, 'a')}, {"max_tokens", 1}});
  EXPECT_EQ(big.status, 400) << big.body.substr(0, 300);
  EXPECT_EQ(big.j["error"]["code"], "context_length_exceeded");
  EXPECT_NE(big.j["error"]["message"].get<std::string>().find("before tokenizing"),
            std::string::npos)
      << big.body;
  EXPECT_LT(ms_since(t0), 3000);
  auto big_chat =
      c.post("/v1/chat/completions",
             json{{"messages", {{{"role", "user"}, {"content", std::string(900000, 'b')}}}}});
  EXPECT_EQ(big_chat.j["error"]["code"], "context_length_exceeded") << big_chat.body.substr(0, 300);
  auto big_tok = c.post("/tokenize", json{{"prompt", std::string(900000, 'c')}});
  EXPECT_EQ(big_tok.j["error"]["code"], "context_length_exceeded") << big_tok.body.substr(0, 300);
}

TEST_F(Hostile, TokenEndpointsAndVersion) {
  Client c(port());
  Tokenizer tok = Tokenizer::load(model_dir());
  auto t = c.post("/tokenize", json{{"prompt", "def add(a, b):"}});
  ASSERT_EQ(t.status, 200) << t.body;
  EXPECT_EQ(t.j["tokens"].get<std::vector<int32_t>>(), tok.encode("def add(a, b):", true));
  EXPECT_EQ(t.j["count"], t.j["tokens"].size());
  EXPECT_EQ(t.j["max_model_len"], 1024);
  auto plain =
      c.post("/tokenize", json{{"prompt", "def add(a, b):"}, {"add_special_tokens", false}});
  EXPECT_EQ(plain.j["tokens"].get<std::vector<int32_t>>(), tok.encode("def add(a, b):", false));
  auto d = c.post("/detokenize", json{{"tokens", plain.j["tokens"]}});
  ASSERT_EQ(d.status, 200) << d.body;
  EXPECT_EQ(d.j["prompt"], "def add(a, b):");
  // Chat tokenization counts what a chat completion is charged for its prompt.
  const json msgs = {{{"role", "system"}, {"content", "Be brief."}},
                     {{"role", "user"}, {"content", "print hi"}}};
  auto ct = c.post("/tokenize", json{{"messages", msgs}});
  auto cc = c.post("/v1/chat/completions", json{{"messages", msgs}, {"max_tokens", 1}});
  ASSERT_EQ(cc.status, 200) << cc.body;
  EXPECT_EQ(ct.j["count"], cc.j["usage"]["prompt_tokens"]);
  EXPECT_EQ(c.post("/tokenize", json{{"prompt", "x"}, {"model", "other"}}).status, 404);
  auto v = c.get("/version");
  EXPECT_EQ(v.status, 200);
  EXPECT_EQ(v.j["version"], "0.1.0");
}

TEST(HostileAdmin, AdminKeyGuardsAdminAndLoopbackIsTheRuleWithoutKeys) {
  auto cfg = config();
  cfg.server.api_key = "api";
  cfg.server.admin_key = "root";
  server::ServingStack stack(cfg);
  stack.start();
  const int port = stack.port();
  EXPECT_EQ(Client(port).get("/admin/precision").status, 401);
  EXPECT_EQ(Client(port, "api").post("/admin/precision", json{{"precision", "fp8"}}).status,
            401);  // not the admin key
  EXPECT_EQ(Client(port, "api").get("/v1/models").status, 200);
  EXPECT_EQ(Client(port, "root").get("/v1/models").status, 401);  // the admin key is not an API key
  auto set = Client(port, "root").post("/admin/precision", json{{"precision", "fp8"}});
  EXPECT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(stack.engine().precision_policy(), "fp8");
  EXPECT_EQ(Client(port, "root")
                .post("/admin/precision", json{{"precision", "fp8"}, {"extra", 1}})
                .status,
            400);
  stack.stop();
  // No keys: loopback clients may administer (remote ones get 403: server::is_loopback_address).
  server::ServingStack open_stack(config());
  open_stack.start();
  EXPECT_EQ(Client(open_stack.port()).post("/admin/precision", json{{"precision", "fp8"}}).status,
            200);
}
