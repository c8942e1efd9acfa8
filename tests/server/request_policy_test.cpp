// The pure request checks behind the hostile-request findings: JSON depth, the field policy,
// chat roles, the request-head scan of the connection front end, the admin loopback rule.
#include <gtest/gtest.h>

#include <string>

#include "server/http_head.hpp"
#include "server/openai_request.hpp"
#include "server/openai_server.hpp"

using namespace nestedfp::server;

namespace {

std::string nested(int depth, const std::string& inner = "1") {
  return std::string(static_cast<size_t>(depth), '[') + inner +
         std::string(static_cast<size_t>(depth), ']');
}

template <typename P>
std::string error_of(const P& p) {
  return p.ok() ? std::string("(accepted)") : p.error.message;
}

}  // namespace

TEST(JsonDepth, CountsBracketsOutsideStringsOnly) {
  EXPECT_FALSE(json_nesting_over(nested(64), 64));
  EXPECT_EQ(json_nesting_over(nested(65), 64), size_t{64});  // the 65th '[' is at offset 64
  EXPECT_EQ(json_nesting_over("{\"a\":{\"b\":[1]}}", 2), size_t{10});
  // Brackets inside strings (and escaped quotes) do not count.
  EXPECT_FALSE(json_nesting_over("{\"s\": \"[[[[[[\\\"[[[[\"}", 1));
}

TEST(JsonDepth, DeepBodiesAreRefusedOnEveryParser) {
  // 150,000 levels crashed the server (recursion while normalizing chat messages).
  const std::string deep = nested(150000);
  const std::string bodies[] = {
      "{\"messages\": " + deep + "}",
      "{\"messages\": [{\"role\": \"user\", \"content\": " + deep + "}]}",
      "{\"prompt\": " + deep + "}",
      "{\"tokens\": " + deep + "}",
      "{\"prompt\": \"x\", \"stop\": " + deep + "}",
  };
  for (const auto& b : bodies) {
    for (const std::string& msg :
         {error_of(parse_chat_request(b)), error_of(parse_completion_request(b)),
          error_of(parse_tokenize_request(b)), error_of(parse_detokenize_request(b)),
          error_of(parse_json_object(b))})
      EXPECT_NE(msg.find("deeper than 64 levels"), std::string::npos) << msg;
  }
  // 64 levels are still parsed (and then judged on their content).
  auto ok = parse_completion_request("{\"prompt\": \"x\", \"metadata\": " + nested(63) + "}");
  EXPECT_EQ(ok.error.message.find("deeper"), std::string::npos);
}

TEST(FieldPolicy, FieldsTheServerDoesNotHonourAreRefusedByName) {
  struct Case {
    const char* body;
    const char* param;
    const char* says;
  } cases[] = {
      {R"({"messages": [{"role": "hacker", "content": "x"}]})", "messages",
       "messages[0].role 'hacker'"},
      {R"({"messages": [{"role": "user", "content": "a"}, {"role": "", "content": "x"}]})",
       "messages", "messages[1].role ''"},
      {R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})",
       "response_format", "json_object"},
      {R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {}}})",
       "response_format", "json_schema"},
      {R"({"messages": [{"role": "user", "content": "x"}], "response_format": "json"})",
       "response_format", "must be an object"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"})", "tool_choice",
       "only allowed with 'tools'"},
      {R"({"messages": [{"role": "user", "content": "x"}], "tool_choice": "none", "tools": []})",
       "tool_choice", "tools"},
      {R"({"messages": [{"role": "user", "content": "x"}], "guided_json": {}})", "guided_json",
       "not a field"},
      {R"({"messages": [{"role": "user", "content": "x"}], "functions": [{"name": "f"}]})",
       "functions", "not a field"},
      {R"({"messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": {"continuous_usage_stats": true}})",
       "stream_options", "continuous_usage_stats"},
      {R"({"messages": [{"role": "user", "content": "x"}], "user": 5})", "user",
       "must be a string"},
  };
  for (const auto& c : cases) {
    auto p = parse_chat_request(c.body);
    ASSERT_FALSE(p.ok()) << c.body;
    EXPECT_EQ(p.error.status, 400);
    EXPECT_EQ(p.error.param, c.param) << c.body;
    EXPECT_NE(p.error.message.find(c.says), std::string::npos)
        << c.body << " -> " << p.error.message;
  }
  auto cp = parse_completion_request(R"({"prompt": "x", "guided_regex": "a+"})");
  ASSERT_FALSE(cp.ok());
  EXPECT_EQ(cp.error.param, "guided_regex");
  EXPECT_NE(cp.error.message.find("/v1/completions"), std::string::npos);
  // Accepted: every OpenAI role, "user", text response_format, and nulls for absent fields.
  for (const char* role : {"system", "developer", "user", "assistant", "tool"}) {
    auto ok = parse_chat_request(std::string(R"({"messages": [{"role": ")") + role +
                                 R"(", "content": "x"}]})");
    EXPECT_TRUE(ok.ok()) << role << ": " << ok.error.message;
  }
  auto ok = parse_chat_request(
      R"({"messages": [{"role": "user", "content": "x"}], "user": "u1", "response_format": {"type": "text"}, "tools": null, "tool_choice": null, "functions": null})");
  EXPECT_TRUE(ok.ok()) << ok.error.message;
}

TEST(FieldPolicy, TokenizeAndDetokenizeBodies) {
  auto t = parse_tokenize_request(R"({"prompt": "abc", "add_special_tokens": false})");
  ASSERT_TRUE(t.ok()) << t.error.message;
  EXPECT_FALSE(t.request->chat);
  EXPECT_FALSE(t.request->add_special_tokens);
  auto m = parse_tokenize_request(
      R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]})");
  ASSERT_TRUE(m.ok()) << m.error.message;
  EXPECT_EQ(m.request->messages[0]["content"], "a");
  EXPECT_FALSE(parse_tokenize_request(R"({"prompt": "a", "messages": []})").ok());
  EXPECT_FALSE(parse_tokenize_request(R"({})").ok());
  auto d = parse_detokenize_request(R"({"tokens": [1, 2, 3]})");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.request->tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(parse_detokenize_request(R"({"tokens": [-1]})").error.param, "tokens");
  EXPECT_EQ(parse_detokenize_request(R"({"tokens": "abc"})").error.param, "tokens");
}

TEST(RequestHead, LengthsAreJudgedBeforeTheBody) {
  const size_t kHead = 1024;
  const uint64_t kBody = 1000;
  auto scan = [&](const std::string& s) { return scan_request_head(s, kHead, kBody); };
  auto h =
      scan("POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n{\"prompt\"");
  ASSERT_EQ(h.state, HeadScan::State::Complete);
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.path, "/v1/completions");
  EXPECT_EQ(h.body_bytes, 12u);
  EXPECT_EQ(
      h.head_bytes,
      std::string("POST /v1/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n")
          .size());
  EXPECT_FALSE(h.close);
  EXPECT_EQ(scan("GET /health HTTP/1.1\r\nHost: a\r\n").state, HeadScan::State::Incomplete);

  struct Bad {
    std::string head;
    int status;
  } bad[] = {
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411},
      {"GARBAGE\r\n\r\n", 400},
      {"GET health HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n" + std::string(2000, 'a') + ": b\r\n\r\n", 431},
      {"GET / HTTP/1.1\r\nX: " + std::string(2000, 'a'), 431},  // no end of head within the limit
  };
  for (const auto& b : bad) {
    auto r = scan(b.head);
    EXPECT_EQ(r.state, HeadScan::State::Reject) << b.head.substr(0, 80);
    EXPECT_EQ(r.status, b.status) << b.head.substr(0, 80) << " -> " << r.message;
    EXPECT_FALSE(r.message.empty());
  }
  std::string many = "GET / HTTP/1.1\r\n";
  for (size_t i = 0; i <= kMaxHeaderLines; ++i) many += "X: y\r\n";
  EXPECT_EQ(scan_request_head(many + "\r\n", 1 << 20, kBody).status, 431);
  EXPECT_TRUE(scan("GET / HTTP/1.0\r\n\r\n").close);
  EXPECT_FALSE(scan("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").close);
  EXPECT_TRUE(scan("GET / HTTP/1.1\r\nconnection: Close\r\n\r\n").close);
  const std::string resp = error_response(413, "too big");
  EXPECT_EQ(resp.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0), 0u) << resp;
  EXPECT_NE(resp.find("Connection: close"), std::string::npos);
}

TEST(AdminRule, LoopbackAddresses) {
  for (const char* ip : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"})
    EXPECT_TRUE(is_loopback_address(ip)) << ip;
  for (const char* ip :
       {"10.0.0.1", "192.168.1.5", "::ffff:10.0.0.1", "fe80::1", "", "localhost", "128.0.0.1"})
    EXPECT_FALSE(is_loopback_address(ip)) << ip;
}
