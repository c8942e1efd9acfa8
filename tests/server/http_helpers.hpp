#pragma once
// Helpers for the HTTP tests: an in-process server on pystd-16m on a free loopback port, a JSON
// client, an SSE parser and a raw socket for disconnect tests.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "engine/model_runner.hpp"
#include "server/serving.hpp"

namespace nestedfp::httptest {

using nlohmann::json;

inline std::string model_dir() { return std::string(NESTEDFP_SOURCE_DIR) + "/models/pystd-16m"; }

inline server::ServeConfig config(const std::string& precision = "fp16") {
  server::ServeConfig c;
  c.model_dir = model_dir();
  c.engine.precision = precision;
  c.engine.max_num_batched_tokens = 256;
  c.engine.max_num_seqs = 16;
  c.engine.num_kv_blocks = 256;
  c.server.host = "127.0.0.1";
  c.server.port = 0;
  c.server.http_threads = 32;
  c.executor = [](const EngineConfig& e) -> std::unique_ptr<ModelExecutor> {
    engine::RunnerOptions ro;
    ro.num_kv_blocks = e.num_kv_blocks;
    ro.max_model_len = e.max_model_len;
    ro.max_num_batched_tokens = e.max_num_batched_tokens;
    ro.max_num_seqs = e.max_num_seqs;
    return std::make_unique<engine::ModelRunner>(
        backend::make_cpu_backend(),
        engine::ModelWeights::load(model_dir(), format::ScaleMode::None), ro);
  };
  return c;
}

struct Reply {
  int status = 0;
  std::string body;
  json j;  // parsed body when it is JSON
};

class Client {
 public:
  explicit Client(int port, std::string key = "") : cli_("127.0.0.1", port), key_(std::move(key)) {
    cli_.set_read_timeout(60, 0);
  }
  Reply post(const std::string& path, const std::string& body) {
    return finish(cli_.Post(path.c_str(), headers(), body, "application/json"));
  }
  Reply post(const std::string& path, const json& body) { return post(path, body.dump()); }
  Reply get(const std::string& path) { return finish(cli_.Get(path.c_str(), headers())); }

 private:
  httplib::Headers headers() const {
    httplib::Headers h;
    if (!key_.empty()) h.emplace("Authorization", "Bearer " + key_);
    return h;
  }
  static Reply finish(httplib::Result r) {
    Reply out;
    if (!r) return out;
    out.status = r->status;
    out.body = r->body;
    out.j = json::parse(out.body, nullptr, false);
    return out;
  }
  httplib::Client cli_;
  std::string key_;
};

// The JSON payloads of an SSE body, and whether it ended with [DONE].
struct Sse {
  std::vector<json> events;
  bool done = false;
};
inline Sse parse_sse(const std::string& body) {
  Sse s;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) continue;  // comments (keep-alive)
    std::string data = ev.substr(6);
    if (data == "[DONE]")
      s.done = true;
    else
      s.events.push_back(json::parse(data));
  }
  return s;
}

// A metric's value from /metrics text (first line starting with `series`).
inline double metric(const std::string& text, const std::string& series) {
  size_t p = text.find("\n" + series + " ");
  if (p == std::string::npos) return -1;
  return std::stod(text.substr(p + series.size() + 2));
}

// A TCP connection to the loopback port, or -1.
inline int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Opens a socket, sends a raw HTTP request and returns the fd (the caller reads and closes).
inline int raw_request(int port, const std::string& path, const std::string& body) {
  const int fd = connect_to(port);
  if (fd < 0) return -1;
  std::string req =
      "POST " + path +
      " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// One in-process server (config()) shared by every test of a suite: started before the suite's
// first test, stopped after its last.
class SuiteServer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new server::ServingStack(config());
    stack_->start();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  static int port() { return stack_->port(); }
  static Engine& engine() { return stack_->engine(); }
  static inline server::ServingStack* stack_ = nullptr;
};

}  // namespace nestedfp::httptest
