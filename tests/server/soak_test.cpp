// Soak: many clients for a while with valid, streaming, disconnecting and malformed requests and
// run-time precision changes. The server must stay healthy, answer every request with a proper
// status, and end with every KV block free. Under AddressSanitizer (build/asan-*) LeakSanitizer
// checks for leaks at exit. NESTEDFP_SOAK_SECONDS sets the duration (default 8).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>

#include "server/http_helpers.hpp"

using namespace nestedfp;
using namespace nestedfp::httptest;
using namespace std::chrono_literals;

TEST(Soak, RandomTrafficLeavesTheServerHealthyAndAllBlocksFree) {
  const char* env = std::getenv("NESTEDFP_SOAK_SECONDS");
  const double seconds = env ? std::atof(env) : 8.0;
  auto cfg = config("dynamic:threshold=32");
  cfg.engine.num_kv_blocks = 48;  // small: preemption happens too
  cfg.engine.max_queue = 64;
  server::ServingStack stack(cfg);
  stack.start();
  const int port = stack.port();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);

  std::atomic<int> requests{0}, ok{0}, rejected{0}, bad_status{0}, disconnects{0};
  auto worker = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(id) * 7919u + 1);
    Client c(port);
    const std::vector<std::string> junk = {"{",
                                           "}",
                                           "[]",
                                           "null",
                                           "{\"prompt\":",
                                           "{\"prompt\": 1e999}",
                                           "{\"prompt\": \"x\", \"max_tokens\": -3}",
                                           "\xff\xfe",
                                           "{\"messages\": [{}]}",
                                           std::string(3000, '['),
                                           "{\"prompt\": [[[]]]}"};
    while (std::chrono::steady_clock::now() < deadline) {
      ++requests;
      int kind = static_cast<int>(rng() % 6);
      json body = {{"prompt", "def f" + std::to_string(rng() % 100) + "(x):"},
                   {"max_tokens", 1 + static_cast<int>(rng() % 40)},
                   {"seed", rng() % 1000}};
      if (kind == 0 || kind == 1) {
        auto r = c.post(kind == 0 ? "/v1/completions" : "/v1/chat/completions",
                        kind == 0 ? body
                                  : json{{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                         {"max_tokens", 8},
                                         {"stream", true}});
        if (r.status == 200)
          ++ok;
        else if (r.status == 429)
          ++rejected;
        else
          ++bad_status;
      } else if (kind == 2) {  // stream, then vanish after a few chunks
        body["stream"] = true;
        body["max_tokens"] = 200;
        int fd = raw_request(port, "/v1/completions", body.dump());
        if (fd < 0) {
          ++bad_status;
          continue;
        }
        char buf[2048];
        int chunks = static_cast<int>(rng() % 4);
        for (int i = 0; i < chunks; ++i)
          if (::recv(fd, buf, sizeof buf, 0) <= 0) break;
        ::close(fd);
        ++disconnects;
      } else if (kind == 3) {
        auto r = c.post("/v1/completions", junk[rng() % junk.size()]);
        if (r.status == 400)
          ++ok;
        else
          ++bad_status;
      } else if (kind == 4) {
        const char* specs[] = {"fp16", "fp8", "dynamic", "dynamic:threshold=16,hysteresis=4"};
        auto r = c.post("/admin/precision", json{{"precision", specs[rng() % 4]}});
        if (r.status == 200)
          ++ok;
        else
          ++bad_status;
      } else {
        auto r = c.get(rng() % 2 ? "/metrics" : "/health");
        if (r.status == 200)
          ++ok;
        else
          ++bad_status;
      }
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; ++i) ts.emplace_back(worker, i);
  for (auto& t : ts) t.join();

  bool free = false;
  for (int i = 0; i < 1000 && !free; ++i) {
    auto s = stack.engine().stats();
    free = s.running == 0 && s.waiting == 0 && s.kv_blocks_used == 0;
    if (!free) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(free) << "blocks used: " << stack.engine().stats().kv_blocks_used;
  EXPECT_EQ(bad_status.load(), 0);
  EXPECT_GT(requests.load(), 50);
  EXPECT_GT(disconnects.load(), 0);
  EXPECT_EQ(Client(port).get("/health").status, 200);
  auto r = Client(port).post("/v1/completions", json{{"prompt", "x"}, {"max_tokens", 3}});
  EXPECT_EQ(r.status, 200);
  auto st = stack.engine().stats();
  std::printf(
      "soak: %d requests (%d ok, %d 429, %d disconnects), %llu preemptions, steps fp16 %llu fp8 "
      "%llu\n",
      requests.load(), ok.load(), rejected.load(), disconnects.load(),
      static_cast<unsigned long long>(st.preemptions),
      static_cast<unsigned long long>(st.steps_fp16),
      static_cast<unsigned long long>(st.steps_fp8));
}
