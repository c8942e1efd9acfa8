// The OpenAI server over real HTTP on loopback, with the cpu backend on pystd-16m.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "server/http_helpers.hpp"

using namespace nestedfp;
using namespace nestedfp::httptest;
using namespace std::chrono_literals;

namespace {

class Serve : public SuiteServer {
 protected:
  void SetUp() override { stack_->engine().set_precision_policy("fp16"); }
  static bool idle_and_free() {
    for (int i = 0; i < 500; ++i) {
      auto s = engine().stats();
      if (s.running == 0 && s.waiting == 0 && s.kv_blocks_used == 0) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
};

std::string stream_text(const Sse& s, bool chat) {
  std::string t;
  for (auto& e : s.events) {
    if (e.contains("error")) return "ERROR: " + e.dump();
    for (auto& c : e["choices"]) {
      if (chat) {
        if (c["delta"].contains("content")) t += c["delta"]["content"].get<std::string>();
      } else {
        t += c["text"].get<std::string>();
      }
    }
  }
  return t;
}

}  // namespace

TEST_F(Serve, HealthModelsAndCompletion) {
  Client c(port());
  EXPECT_EQ(c.get("/health").status, 200);
  auto m = c.get("/v1/models");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.j["data"][0]["id"], "pystd-16m");
  auto r = c.post("/v1/completions", json{{"model", "pystd-16m"},
                                          {"prompt", "def add(a, b):"},
                                          {"max_tokens", 12},
                                          {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j["object"], "text_completion");
  EXPECT_EQ(r.j["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(r.j["choices"][0]["text"].get<std::string>().empty());
  EXPECT_EQ(r.j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(r.j["usage"]["total_tokens"], r.j["usage"]["prompt_tokens"].get<int>() + 12);
  // The same greedy request through token ids gives the same text.
  Tokenizer tok = Tokenizer::load(model_dir());
  auto ids = tok.encode("def add(a, b):", true);
  auto r2 =
      c.post("/v1/completions", json{{"prompt", ids}, {"max_tokens", 12}, {"temperature", 0}});
  ASSERT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(r2.j["choices"][0]["text"], r.j["choices"][0]["text"]);
}

TEST_F(Serve, ConcurrentSeededStreamsMatchOneAtATimeInFp16) {
  const std::vector<std::string> prompts = {
      "import os\n",     "class Stack:\n",      "def parse(text):\n    ",
      "# Utilities for", "for i in range(10):", "from typing import",
      "x = [",           "def main():\n"};
  auto body = [&](size_t i) {
    return json{{"prompt", prompts[i]},
                {"max_tokens", 24},
                {"temperature", 0.9},
                {"top_p", 0.95},
                {"seed", 1234 + static_cast<int>(i)},
                {"stream", true}};
  };
  std::vector<std::string> alone(prompts.size()), together(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = Client(port()).post("/v1/completions", body(i));
    ASSERT_EQ(r.status, 200);
    auto s = parse_sse(r.body);
    ASSERT_TRUE(s.done);
    alone[i] = stream_text(s, false);
  }
  std::vector<std::thread> ts;
  for (size_t i = 0; i < prompts.size(); ++i)
    ts.emplace_back([&, i] {
      auto r = Client(port()).post("/v1/completions", body(i));
      together[i] = r.status == 200 ? stream_text(parse_sse(r.body), false)
                                    : "HTTP " + std::to_string(r.status);
    });
  for (auto& t : ts) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(together[i], alone[i]) << "prompt " << i;
  // Different seeds give different text (the comparison above is not vacuous).
  int distinct = 0;
  for (size_t i = 1; i < alone.size(); ++i) distinct += alone[i] != alone[0];
  EXPECT_GT(distinct, 0);
  EXPECT_TRUE(idle_and_free());
}

TEST_F(Serve, DynamicPolicyRunsFp8UnderABurstAndFp16UnderLightLoad) {
  Client c(port());
  auto set = c.post("/admin/precision", json{{"precision", "dynamic:threshold=48"}});
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(set.j["precision"], "dynamic:threshold=48,hysteresis=0");
  EXPECT_EQ(c.get("/admin/precision").j["precision"], "dynamic:threshold=48,hysteresis=0");
  auto fp8 = [&] {
    return metric(c.get("/metrics").body, "nestedfp_steps_total{precision=\"fp8\"}");
  };
  auto fp16 = [&] {
    return metric(c.get("/metrics").body, "nestedfp_steps_total{precision=\"fp16\"}");
  };

  // Light load: one short request; its prefill (< 48 tokens) and decodes are FP16.
  double a8 = fp8(), a16 = fp16();
  ASSERT_EQ(c.post("/v1/completions", json{{"prompt", "def f(x):"}, {"max_tokens", 8}}).status,
            200);
  EXPECT_EQ(fp8(), a8);
  EXPECT_GE(fp16(), a16 + 8);

  // Burst: 12 requests with ~60-token prompts at once; steps above 48 tokens run FP8.
  std::string long_prompt;
  for (int i = 0; i < 12; ++i)
    long_prompt += "value_" + std::to_string(i) + " = compute(" + std::to_string(i) + ")\n";
  double b8 = fp8();
  std::vector<std::future<int>> fs;
  for (int i = 0; i < 12; ++i)
    fs.push_back(std::async(std::launch::async, [&, i] {
      return Client(port())
          .post("/v1/completions",
                json{{"prompt", long_prompt + "# " + std::to_string(i)}, {"max_tokens", 4}})
          .status;
    }));
  for (auto& f : fs) EXPECT_EQ(f.get(), 200);
  EXPECT_GT(fp8(), b8);
  std::string m = c.get("/metrics").body;
  EXPECT_GT(metric(m, "nestedfp_step_tokens_total{precision=\"fp8\"}"), 48);
  EXPECT_NE(
      m.find("nestedfp_precision_policy_info{policy=\"dynamic:threshold=48,hysteresis=0\"} 1"),
      std::string::npos);
  EXPECT_EQ(c.post("/admin/precision", json{{"precision", "fp32"}}).status, 400);
  EXPECT_EQ(c.post("/admin/precision", std::string("{")).status, 400);
  EXPECT_EQ(c.get("/admin/precision").j["precision"], "dynamic:threshold=48,hysteresis=0");
}

TEST_F(Serve, ErrorsAreOpenAIStyleWithTheRightStatus) {
  Client c(port());
  struct Case {
    const char* path;
    std::string body;
    int status;
    const char* param;  // expected "param", or nullptr for null
  };
  std::string too_long = json{{"prompt", std::vector<int>(1100, 5)}, {"max_tokens", 1}}.dump();
  const std::vector<Case> cases = {
      {"/v1/completions", "{not json", 400, nullptr},
      {"/v1/completions", "", 400, nullptr},
      {"/v1/completions", "[1,2]", 400, nullptr},
      {"/v1/completions", R"({"max_tokens": 5})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": 5})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": []})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": ["a", [1]]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": [1, -2]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": [999999]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": "10"})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": -1})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 1000000000})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 1023})", 400,
       "prompt"},  // 2 + 1023 > 1024
      {"/v1/completions", too_long, 400, "prompt"},
      {"/v1/completions", R"({"prompt": "x", "temperature": -0.1})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": "x", "temperature": "hot"})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": "x", "temperature": 100.5})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": "x", "top_p": 0})", 400, "top_p"},
      {"/v1/completions", R"({"prompt": "x", "top_p": 1.01})", 400, "top_p"},
      {"/v1/completions", R"({"prompt": "x", "top_k": -5})", 400, "top_k"},
      {"/v1/completions", R"({"prompt": "x", "n": 9})", 400, "n"},
      {"/v1/completions", R"({"prompt": "x", "logprobs": 50})", 400, "logprobs"},
      {"/v1/completions", R"({"prompt": "x", "stop": [1]})", 400, "stop"},
      {"/v1/completions", R"({"prompt": "x", "stop": ""})", 400, "stop"},
      {"/v1/completions", R"({"prompt": "x", "stream": "yes"})", 400, "stream"},
      {"/v1/completions", R"({"prompt": "x", "seed": 1.5})", 400, "seed"},
      {"/v1/completions", R"({"prompt": "x", "max_tokens": 0})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "x", "model": "gpt-9"})", 404, "model"},
      {"/v1/chat/completions", R"({"messages": []})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages": [{"content": "hi"}]})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages": "hi"})", 400, "messages"},
      {"/v1/chat/completions",
       R"({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3})", 400,
       "top_logprobs"},
      {"/v1/nothing", "{}", 404, nullptr},
  };
  for (const auto& k : cases) {
    auto r = c.post(k.path, k.body);
    EXPECT_EQ(r.status, k.status) << k.path << " " << k.body << " -> " << r.body;
    ASSERT_TRUE(r.j.is_object() && r.j.contains("error")) << r.body;
    const json& e = r.j["error"];
    EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << r.body;
    EXPECT_TRUE(e["type"].is_string()) << r.body;
    EXPECT_TRUE(e.contains("code"));
    if (k.param)
      EXPECT_EQ(e["param"], k.param) << k.body << " -> " << r.body;
    else
      EXPECT_TRUE(e["param"].is_null()) << k.body << " -> " << r.body;
  }
  auto ctx = c.post("/v1/completions", too_long);
  EXPECT_NE(ctx.j["error"]["message"].get<std::string>().find("maximum context length is 1024"),
            std::string::npos);
  EXPECT_EQ(ctx.j["error"]["code"], "context_length_exceeded");
  EXPECT_EQ(c.get("/v1/completions").status, 405);  // wrong method
  // The server is still fine.
  EXPECT_EQ(c.post("/v1/completions", json{{"prompt", "x"}, {"max_tokens", 2}}).status, 200);
  EXPECT_TRUE(idle_and_free());
}

TEST_F(Serve, EchoWithPromptLogprobsAndMaxTokensZero) {
  Client c(port());
  const std::string prompt = "def square(x):\n    return x * x\n";
  auto r = c.post("/v1/completions",
                  json{{"prompt", prompt}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 2}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json& ch = r.j["choices"][0];
  EXPECT_EQ(ch["text"], prompt);
  const json& lp = ch["logprobs"];
  const size_t n = r.j["usage"]["prompt_tokens"].get<size_t>();
  EXPECT_EQ(r.j["usage"]["completion_tokens"], 0);
  ASSERT_EQ(lp["tokens"].size(), n);
  ASSERT_EQ(lp["token_logprobs"].size(), n);
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  for (size_t i = 1; i < n; ++i) {
    ASSERT_TRUE(lp["token_logprobs"][i].is_number()) << i;
    EXPECT_LE(lp["token_logprobs"][i].get<double>(), 0.0);
    EXPECT_LE(lp["top_logprobs"][i].size(), 2u);
    EXPECT_GE(lp["text_offset"][i].get<int>(), lp["text_offset"][i - 1].get<int>());
  }
  // Offsets point at each token's text inside the echoed prompt.
  std::string rebuilt;
  for (size_t i = 0; i < n; ++i) {
    std::string t = lp["tokens"][i];
    if (t == "<|begin_of_text|>") continue;
    EXPECT_EQ(static_cast<size_t>(lp["text_offset"][i].get<int>()), rebuilt.size()) << i;
    rebuilt += t;
  }
  EXPECT_EQ(rebuilt, prompt);

  // echo + generation: the prompt's logprobs and then the generated tokens'.
  auto g = c.post("/v1/completions", json{{"prompt", prompt},
                                          {"max_tokens", 3},
                                          {"echo", true},
                                          {"logprobs", 1},
                                          {"temperature", 0}});
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_EQ(g.j["choices"][0]["logprobs"]["tokens"].size(), n + 3);
  EXPECT_EQ(g.j["choices"][0]["text"].get<std::string>().rfind(prompt, 0), 0u);
  // Greedy: each generated token is its own top alternative.
  for (size_t i = n; i < n + 3; ++i) {
    const json& top = g.j["choices"][0]["logprobs"]["top_logprobs"][i];
    std::string tokn = g.j["choices"][0]["logprobs"]["tokens"][i];
    ASSERT_TRUE(top.contains(tokn)) << top.dump();
    EXPECT_NEAR(top[tokn].get<double>(),
                g.j["choices"][0]["logprobs"]["token_logprobs"][i].get<double>(), 1e-6);
  }
}

TEST_F(Serve, ListOfPromptsStopStringsAndStreamingFormats) {
  Client c(port());
  auto r = c.post(
      "/v1/completions",
      json{{"prompt", {"import re\n", "import json\n"}}, {"max_tokens", 6}, {"temperature", 0}});
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.j["choices"].size(), 2u);
  EXPECT_EQ(r.j["choices"][1]["index"], 1);
  EXPECT_EQ(r.j["usage"]["completion_tokens"], 12);

  auto base = c.post("/v1/completions",
                     json{{"prompt", "def main():\n"}, {"max_tokens", 30}, {"temperature", 0}});
  std::string text = base.j["choices"][0]["text"];
  ASSERT_GE(text.size(), 12u);
  std::string stop = text.substr(6, 4);
  size_t at = text.find(stop);
  auto s = c.post(
      "/v1/completions",
      json{{"prompt", "def main():\n"}, {"max_tokens", 30}, {"temperature", 0}, {"stop", stop}});
  EXPECT_EQ(s.j["choices"][0]["text"], text.substr(0, at));
  EXPECT_EQ(s.j["choices"][0]["finish_reason"], "stop");
  auto ss = c.post("/v1/completions", json{{"prompt", "def main():\n"},
                                           {"max_tokens", 30},
                                           {"temperature", 0},
                                           {"stop", {stop}},
                                           {"stream", true}});
  auto sse = parse_sse(ss.body);
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(stream_text(sse, false), text.substr(0, at));
  EXPECT_EQ(sse.events.back()["choices"][0]["finish_reason"], "stop");

  auto chat =
      c.post("/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "hello"}}}},
                                          {"max_tokens", 5},
                                          {"stream", true},
                                          {"seed", 7},
                                          {"stream_options", {{"include_usage", true}}},
                                          {"logprobs", true},
                                          {"top_logprobs", 2}});
  ASSERT_EQ(chat.status, 200);
  auto cs = parse_sse(chat.body);
  ASSERT_TRUE(cs.done);
  ASSERT_GE(cs.events.size(), 3u);
  EXPECT_EQ(cs.events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(cs.events[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(cs.events.back()["choices"].empty());
  EXPECT_EQ(cs.events.back()["usage"]["completion_tokens"], 5);
  int lp_entries = 0;
  for (auto& e : cs.events)
    for (auto& ch : e["choices"])
      if (ch["logprobs"].is_object())
        lp_entries += static_cast<int>(ch["logprobs"]["content"].size());
  EXPECT_EQ(lp_entries, 5);

  auto nc =
      c.post("/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "hello"}}}},
                                          {"max_tokens", 5},
                                          {"seed", 7}});
  ASSERT_EQ(nc.status, 200) << nc.body;
  EXPECT_EQ(nc.j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(nc.j["choices"][0]["message"]["content"].get<std::string>(), stream_text(cs, true));
}

TEST_F(Serve, ClientDisconnectMidStreamAbortsAndFreesBlocks) {
  Client c(port());
  ASSERT_TRUE(idle_and_free());
  double before = metric(c.get("/metrics").body, "nestedfp_client_disconnects_total");
  int fd = raw_request(port(), "/v1/completions",
                       json{{"prompt", "def long_function():\n"},
                            {"max_tokens", 900},
                            {"stream", true},
                            {"ignore_eos", true}}
                           .dump());
  ASSERT_GE(fd, 0);
  char buf[4096];
  std::string got;
  while (got.find("data: ") == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  EXPECT_GT(engine().stats().kv_blocks_used, 0);
  ::close(fd);
  EXPECT_TRUE(idle_and_free()) << "blocks still used: " << engine().stats().kv_blocks_used;
  EXPECT_GE(engine().stats().requests_aborted, 1u);
  EXPECT_EQ(metric(c.get("/metrics").body, "nestedfp_client_disconnects_total"), before + 1);
  EXPECT_EQ(c.get("/health").status, 200);
}

TEST(ServeAuthAndQueue, ApiKeyAndFullQueue) {
  auto cfg = config();
  cfg.server.api_key = "sekret";
  cfg.engine.max_num_seqs = 1;
  cfg.engine.max_queue = 1;
  server::ServingStack stack(cfg);
  stack.start();
  const int port = stack.port();
  EXPECT_EQ(Client(port).get("/health").status, 200);  // probes need no key
  EXPECT_EQ(Client(port).get("/metrics").status, 200);
  auto no = Client(port).get("/v1/models");
  EXPECT_EQ(no.status, 401);
  EXPECT_EQ(no.j["error"]["code"], "invalid_api_key");
  EXPECT_EQ(Client(port, "wrong").get("/v1/models").status, 401);
  EXPECT_EQ(Client(port, "sekre").post("/v1/completions", json{{"prompt", "x"}}).status, 401);
  EXPECT_EQ(Client(port).post("/admin/precision", json{{"precision", "fp8"}}).status, 401);
  Client ok(port, "sekret");
  EXPECT_EQ(ok.get("/v1/models").status, 200);

  // One running (max_num_seqs 1) and one waiting (max_queue 1): the next gets 429.
  auto slow = json{{"prompt", "x"}, {"max_tokens", 600}, {"ignore_eos", true}};
  auto f1 = std::async(std::launch::async,
                       [&] { return Client(port, "sekret").post("/v1/completions", slow).status; });
  for (int i = 0; i < 500 && stack.engine().stats().running < 1; ++i)
    std::this_thread::sleep_for(5ms);
  auto f2 = std::async(std::launch::async,
                       [&] { return Client(port, "sekret").post("/v1/completions", slow).status; });
  for (int i = 0; i < 500 && stack.engine().stats().waiting < 1; ++i)
    std::this_thread::sleep_for(5ms);
  ASSERT_EQ(stack.engine().stats().waiting, 1);
  auto full = ok.post("/v1/completions", json{{"prompt", "x"}, {"max_tokens", 2}});
  EXPECT_EQ(full.status, 429) << full.body;
  EXPECT_EQ(full.j["error"]["code"], "queue_full");
  stack.stop();  // in-flight requests end (503) rather than hang
  int s1 = f1.get(), s2 = f2.get();
  EXPECT_TRUE(s1 == 200 || s1 == 503 || s1 == 0) << s1;
  EXPECT_TRUE(s2 == 200 || s2 == 503 || s2 == 0) << s2;
  EXPECT_EQ(stack.engine().stats().kv_blocks_used, 0);
}
