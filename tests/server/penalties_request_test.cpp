// Penalties, logit_bias and min_tokens in requests: parsed into PenaltyParams on both endpoints,
// every bad value a 400 naming its field; over HTTP, a +100 bias forces a token and ids outside
// the vocabulary are refused.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/http_helpers.hpp"
#include "server/openai_request.hpp"

using namespace nestedfp;
using namespace nestedfp::server;
using namespace nestedfp::httptest;

TEST(PenaltyFields, ParsedOnCompletionsAndChat) {
  const std::string fields =
      R"("presence_penalty": 0.5, "frequency_penalty": -1.25, "repetition_penalty": 1.3,
         "min_tokens": 4, "max_tokens": 8, "logit_bias": {"17": 100, "3": -7.5}})";
  auto c = parse_completion_request(R"({"prompt": "x", )" + fields);
  auto h = parse_chat_request(R"({"messages": [{"role": "user", "content": "x"}], )" + fields);
  ASSERT_TRUE(c.ok()) << c.error.message;
  ASSERT_TRUE(h.ok()) << h.error.message;
  for (const PenaltyParams& p : {c.request->penalties, h.request->penalties}) {
    EXPECT_FLOAT_EQ(p.presence_penalty, 0.5f);
    EXPECT_FLOAT_EQ(p.frequency_penalty, -1.25f);
    EXPECT_FLOAT_EQ(p.repetition_penalty, 1.3f);
    EXPECT_EQ(p.min_tokens, 4);
    ASSERT_EQ(p.logit_bias.size(), 2u);
    EXPECT_EQ(p.logit_bias[0], (std::pair<int32_t, float>{17, 100.f}));
    EXPECT_EQ(p.logit_bias[1], (std::pair<int32_t, float>{3, -7.5f}));
  }
  // Absent or null: the neutral values.
  auto d = parse_completion_request(R"({"prompt": "x", "logit_bias": null, "min_tokens": null})");
  ASSERT_TRUE(d.ok()) << d.error.message;
  EXPECT_EQ(d.request->penalties.repetition_penalty, 1.f);
  EXPECT_FALSE(d.request->penalties.uses_history());
  EXPECT_TRUE(d.request->penalties.logit_bias.empty());
}

TEST(PenaltyFields, BadValuesAreRefusedByName) {
  struct Case {
    const char* fields;
    const char* param;
  } cases[] = {
      {R"("presence_penalty": 2.01)", "presence_penalty"},
      {R"("presence_penalty": -2.5)", "presence_penalty"},
      {R"("frequency_penalty": 3)", "frequency_penalty"},
      {R"("frequency_penalty": "1")", "frequency_penalty"},
      {R"("repetition_penalty": 0)", "repetition_penalty"},
      {R"("repetition_penalty": -1)", "repetition_penalty"},
      {R"("repetition_penalty": 1e300)", "repetition_penalty"},
      {R"("min_tokens": -1)", "min_tokens"},
      {R"("min_tokens": 1.5)", "min_tokens"},
      {R"("min_tokens": 9, "max_tokens": 8)", "min_tokens"},
      {R"("logit_bias": [1, 2])", "logit_bias"},
      {R"("logit_bias": {"abc": 1})", "logit_bias"},
      {R"("logit_bias": {"-1": 1})", "logit_bias"},
      {R"("logit_bias": {"12345678901": 1})", "logit_bias"},
      {R"("logit_bias": {"5": 100.5})", "logit_bias"},
      {R"("logit_bias": {"5": -101})", "logit_bias"},
      {R"("logit_bias": {"5": "1"})", "logit_bias"},
      {R"("logit_bias": {"5": 1, "05": 2})", "logit_bias"},
  };
  for (const auto& k : cases) {
    for (bool chat : {false, true}) {
      const std::string body =
          (chat ? std::string(R"({"messages": [{"role": "user", "content": "x"}], )")
                : std::string(R"({"prompt": "x", )")) +
          k.fields + "}";
      ApiError e = chat ? parse_chat_request(body).error : parse_completion_request(body).error;
      EXPECT_EQ(e.status, 400) << body;
      EXPECT_EQ(e.param, k.param) << body << " -> " << e.message;
      EXPECT_NE(e.message.find(k.param), std::string::npos) << e.message;
    }
  }
  // The limits themselves are accepted.
  auto ok = parse_completion_request(
      R"({"prompt": "x", "presence_penalty": -2, "frequency_penalty": 2, "logit_bias": {"0": -100, "1": 100}, "min_tokens": 0})");
  EXPECT_TRUE(ok.ok()) << ok.error.message;
}

TEST(PenaltyHttp, BiasForcesATokenAndIdsAreCheckedAgainstTheVocabulary) {
  server::ServingStack stack(config());
  stack.start();
  Client c(stack.port());
  const int vocab = stack.engine().vocab_size();
  Tokenizer tok = Tokenizer::load(model_dir());
  const int32_t forced = tok.encode("while", false).at(0);
  auto r = c.post("/v1/completions", json{{"prompt", "def add(a, b):"},
                                          {"max_tokens", 5},
                                          {"temperature", 0.9},
                                          {"seed", 7},
                                          {"logprobs", 1},
                                          {"logit_bias", {{std::to_string(forced), 100}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  const auto& toks = r.j["choices"][0]["logprobs"]["tokens"];
  ASSERT_EQ(toks.size(), 5u) << r.body;
  EXPECT_EQ(r.j["choices"][0]["text"], tok.decode(std::vector<int32_t>(5, forced)));
  // Log-probs stay those of the raw logits: the forced token is not certain under the model.
  for (const auto& lp : r.j["choices"][0]["logprobs"]["token_logprobs"])
    EXPECT_LT(lp.get<double>(), -0.01) << r.body;

  auto chat =
      c.post("/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                          {"max_tokens", 3},
                                          {"temperature", 0},
                                          {"logit_bias", {{std::to_string(forced), 100}}}});
  ASSERT_EQ(chat.status, 200) << chat.body;
  EXPECT_EQ(chat.j["choices"][0]["message"]["content"],
            tok.decode(std::vector<int32_t>(3, forced)));

  auto out = c.post(
      "/v1/completions",
      json{{"prompt", "x"}, {"max_tokens", 2}, {"logit_bias", {{std::to_string(vocab), 1}}}});
  EXPECT_EQ(out.status, 400) << out.body;
  EXPECT_NE(out.body.find("logit_bias"), std::string::npos) << out.body;
  // min_tokens above the default max_tokens (the room left in the context) is the engine's 400.
  auto mt = c.post("/v1/completions", json{{"prompt", "x"}, {"min_tokens", 1 << 19}});
  EXPECT_EQ(mt.status, 400) << mt.body;
  EXPECT_NE(mt.body.find("min_tokens"), std::string::npos) << mt.body;
}
