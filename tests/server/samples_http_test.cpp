// n and best_of on /v1/completions and /v1/chat/completions (pystd-16m, cpu backend): validation,
// response shape, each choice against the same request sent alone with its seed, best_of ranking
// against logprobs computed separately, and the prefix-cache metrics.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "server/http_helpers.hpp"
#include "server/openai_request.hpp"

using namespace nestedfp;
using namespace nestedfp::httptest;

namespace {

class Samples : public SuiteServer {};

const char* kPrompt = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n";

json completion(uint64_t seed, int n = 1) {
  return {{"prompt", kPrompt}, {"max_tokens", 8}, {"temperature", 1.0},
          {"seed", seed},      {"n", n},          {"ignore_eos", true}};
}

std::string text_alone(Client& c, uint64_t seed) {
  auto r = c.post("/v1/completions", completion(seed));
  EXPECT_EQ(r.status, 200) << r.body;
  return r.j["choices"][0]["text"].get<std::string>();
}

}  // namespace

TEST(SamplesPolicy, NAndBestOfAreValidated) {
  using server::parse_chat_request;
  using server::parse_completion_request;
  struct Case {
    const char* body;
    bool chat;
    const char* param;
  } bad[] = {
      {R"({"prompt": "x", "n": 9})", false, "n"},
      {R"({"prompt": "x", "n": 0})", false, "n"},
      {R"({"prompt": "x", "n": 3, "best_of": 2})", false, "best_of"},
      {R"({"prompt": "x", "best_of": 9})", false, "best_of"},
      {R"({"prompt": "x", "best_of": 3, "stream": true})", false, "best_of"},
      {R"({"messages": [{"role": "user", "content": "x"}], "best_of": 2})", true, "best_of"},
      {R"({"messages": [{"role": "user", "content": "x"}], "n": 1.5})", true, "n"},
  };
  for (const auto& k : bad) {
    auto e = k.chat ? parse_chat_request(k.body).error : parse_completion_request(k.body).error;
    EXPECT_EQ(e.param, k.param) << k.body << " -> " << e.message;
    EXPECT_EQ(e.status, 400);
  }
  auto ok = parse_completion_request(R"({"prompt": "x", "n": 2, "best_of": 5})");
  ASSERT_TRUE(ok.ok()) << ok.error.message;
  EXPECT_EQ(ok.request->n, 2);
  EXPECT_EQ(ok.request->best_of, 5);
  auto dflt = parse_completion_request(R"({"prompt": "x", "n": 3, "stream": true})");
  ASSERT_TRUE(dflt.ok()) << dflt.error.message;
  EXPECT_EQ(dflt.request->best_of, 3);  // best_of defaults to n; streaming n is fine
  auto chat = parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}], "n": 4})");
  ASSERT_TRUE(chat.ok()) << chat.error.message;
  EXPECT_EQ(chat.request->n, 4);
}

TEST_F(Samples, EachOfNChoicesIsTheRequestAloneWithSeedPlusIndex) {
  Client c(port());
  auto before = c.get("/metrics").body;
  auto r = c.post("/v1/completions", completion(70, 3));
  ASSERT_EQ(r.status, 200) << r.body;
  const auto& ch = r.j["choices"];
  ASSERT_EQ(ch.size(), 3u);
  std::vector<std::string> texts;
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(ch[j]["index"], j);
    EXPECT_EQ(ch[j]["finish_reason"], "length");
    texts.push_back(ch[j]["text"].get<std::string>());
  }
  EXPECT_FALSE(texts[0] == texts[1] && texts[1] == texts[2]);
  auto after = c.get("/metrics").body;
  // Usage: the prompt once, the tokens of all samples.
  const int prompt_tokens = r.j["usage"]["prompt_tokens"].get<int>();
  EXPECT_EQ(r.j["usage"]["completion_tokens"], 24);
  EXPECT_EQ(r.j["usage"]["total_tokens"], prompt_tokens + 24);
  // The two forks took the prompt's full blocks from the first sample.
  const double hits = metric(after, "nestedfp_prefix_cache_hits_total") -
                      metric(before, "nestedfp_prefix_cache_hits_total");
  EXPECT_GE(hits, 2.0 * ((prompt_tokens - 1) / 16 * 16));
  EXPECT_GE(metric(after, "nestedfp_prefix_cache_hit_rate"), 0.0);
  EXPECT_LE(metric(after, "nestedfp_prefix_cache_hit_rate"), 1.0);
  for (int j = 0; j < 3; ++j) EXPECT_EQ(texts[static_cast<size_t>(j)], text_alone(c, 70 + j));

  // Two prompts × n = 2: index = prompt * n + sample.
  json two = completion(80, 2);
  two["prompt"] = json::array({kPrompt, "class Stack:\n"});
  auto m = c.post("/v1/completions", two);
  ASSERT_EQ(m.status, 200) << m.body;
  ASSERT_EQ(m.j["choices"].size(), 4u);
  std::vector<int> idx;
  for (auto& x : m.j["choices"]) idx.push_back(x["index"].get<int>());
  EXPECT_EQ(idx, (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(m.j["choices"][1]["text"], text_alone(c, 81));
  json second = completion(80);
  second["prompt"] = "class Stack:\n";
  EXPECT_EQ(m.j["choices"][2]["text"], c.post("/v1/completions", second).j["choices"][0]["text"]);
}

TEST_F(Samples, StreamedChoicesCarryTheirIndexAndMatchTheNonStreamedOnes) {
  Client c(port());
  json body = completion(90, 2);
  auto whole = c.post("/v1/completions", body);
  ASSERT_EQ(whole.status, 200) << whole.body;
  body["stream"] = true;
  auto r = c.post("/v1/completions", body);
  ASSERT_EQ(r.status, 200);
  Sse s = parse_sse(r.body);
  EXPECT_TRUE(s.done);
  std::vector<std::string> text(2);
  std::vector<int> finished(2, 0);
  for (auto& e : s.events) {
    ASSERT_FALSE(e.contains("error")) << e.dump();
    for (auto& x : e["choices"]) {
      const int i = x["index"].get<int>();
      ASSERT_TRUE(i == 0 || i == 1);
      text[static_cast<size_t>(i)] += x["text"].get<std::string>();
      if (!x["finish_reason"].is_null()) ++finished[static_cast<size_t>(i)];
    }
  }
  EXPECT_EQ(finished, (std::vector<int>{1, 1}));
  EXPECT_EQ(text[0], whole.j["choices"][0]["text"]);
  EXPECT_EQ(text[1], whole.j["choices"][1]["text"]);
}

TEST_F(Samples, BestOfReturnsTheSamplesWithTheHighestCumulativeLogprob) {
  Client c(port());
  // Each sample alone, with its chosen tokens' logprobs: the ranking computed separately.
  std::vector<std::pair<double, std::string>> alone;
  // "import " with seeds 301..304 scores about -22, -15, -13, -10: the ranking reverses the order.
  for (uint64_t j = 0; j < 4; ++j) {
    json b = completion(301 + j);
    b["prompt"] = "import ";
    b["logprobs"] = 0;
    auto r = c.post("/v1/completions", b);
    ASSERT_EQ(r.status, 200) << r.body;
    const auto lps = r.j["choices"][0]["logprobs"]["token_logprobs"].get<std::vector<double>>();
    alone.emplace_back(std::accumulate(lps.begin(), lps.end(), 0.0),
                       r.j["choices"][0]["text"].get<std::string>());
  }
  std::vector<size_t> order{0, 1, 2, 3};
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return alone[a].first > alone[b].first; });
  ASSERT_NE(alone[order[0]].first, alone[order[1]].first) << "need distinct scores";
  ASSERT_NE(order[0], 0u) << "pick seeds whose best sample is not the first";

  json b = completion(301, 2);
  b["prompt"] = "import ";
  b["best_of"] = 4;
  auto r = c.post("/v1/completions", b);
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.j["choices"].size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(r.j["choices"][k]["index"], k);
    EXPECT_EQ(r.j["choices"][k]["text"], alone[order[k]].second) << "rank " << k;
    EXPECT_TRUE(r.j["choices"][k]["logprobs"].is_null());  // not asked for
  }
  EXPECT_EQ(r.j["usage"]["completion_tokens"], 4 * 8);  // every sample counts
  // With logprobs asked, they are the winners' own.
  b["logprobs"] = 1;
  auto l = c.post("/v1/completions", b);
  ASSERT_EQ(l.status, 200) << l.body;
  const auto lps = l.j["choices"][0]["logprobs"]["token_logprobs"].get<std::vector<double>>();
  EXPECT_NEAR(std::accumulate(lps.begin(), lps.end(), 0.0), alone[order[0]].first, 1e-4);
}

TEST_F(Samples, ChatNChoices) {
  Client c(port());
  json msg = json::array({{{"role", "user"}, {"content", "Write a loop."}}});
  json b = {{"messages", msg}, {"max_tokens", 6}, {"temperature", 1.0}, {"seed", 5}, {"n", 2}};
  auto r = c.post("/v1/chat/completions", b);
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.j["choices"].size(), 2u);
  for (int j = 0; j < 2; ++j) {
    EXPECT_EQ(r.j["choices"][j]["index"], j);
    json one = b;
    one["n"] = 1;
    one["seed"] = 5 + j;
    auto a = c.post("/v1/chat/completions", one);
    EXPECT_EQ(r.j["choices"][j]["message"]["content"], a.j["choices"][0]["message"]["content"]);
  }
}
