#pragma once
// OpenAI request bodies -> validated requests, as pure functions (no engine, no tokenizer), so the
// fuzz target tests/fuzz/fuzz_request_parser.cpp can drive them. Checks here are the ones that need
// only the JSON: types, ranges, unsupported options. What needs the model (prompt length against
// the context, token ids against the vocabulary, the model name) is checked by the server.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nestedfp/penalties.hpp"
#include "nestedfp/sampler.hpp"

namespace nestedfp::server {

// {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty: null
  std::string code;   // empty: null
  nlohmann::json to_json() const;
};

inline constexpr int64_t kMaxTokensLimit = 1 << 20;  // larger max_tokens is rejected outright
inline constexpr size_t kMaxPrompts = 64;            // prompts in one /v1/completions request
inline constexpr size_t kMaxStops = 16;
// Deepest array/object nesting a request body may have. Checked on the raw bytes before the JSON
// is built, so nothing downstream (copies, dumps, template values: all recursive) sees deeper data.
inline constexpr int kMaxJsonDepth = 64;
// Chat roles the server accepts; anything else is a 400 naming the message.
inline constexpr const char* kChatRoles[] = {"system", "developer", "user", "assistant", "tool"};

// The byte offset where `body` first nests deeper than max_depth (strings are skipped), or nullopt.
// Linear, no recursion, no allocation.
std::optional<size_t> json_nesting_over(std::string_view body, int max_depth);

struct PromptInput {
  bool is_text = true;
  std::string text;
  std::vector<int32_t> ids;
};

// Fields shared by both endpoints.
struct CommonParams {
  std::string model;                  // empty when not given
  std::optional<int64_t> max_tokens;  // absent: the endpoint's default
  SamplingParams sampling;
  PenaltyParams penalties;  // token ids of logit_bias are checked against the vocabulary later
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  int n = 1;                   // choices per prompt (1..kMaxSamples)
  int best_of = 1;  // samples per prompt, the n with the highest cumulative logprob returned
  // Extensions (as vLLM names them).
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  bool include_stop_str_in_output = false;
};

struct CompletionRequest : CommonParams {
  std::vector<PromptInput> prompts;  // string, list of strings, token ids, list of token-id lists
  int logprobs = -1;                 // -1: none
  bool echo = false;
};

struct ChatRequest : CommonParams {
  nlohmann::json messages;  // normalized: objects with "role" and string "content"
  bool logprobs = false;
  int top_logprobs = 0;
  bool add_generation_prompt = true;
};

template <typename T>
struct Parsed {
  std::optional<T> request;
  ApiError error;  // meaningful when !request
  bool ok() const { return request.has_value(); }
};

// Every top-level field is either honoured or refused with a 400 naming it: a field the server
// does not act on (JSON modes, tools, unknown names) is never silently dropped. The
// one field accepted without effect is "user" (an end-user id for the provider's logs).
Parsed<CompletionRequest> parse_completion_request(std::string_view body);
Parsed<ChatRequest> parse_chat_request(std::string_view body);

// POST /tokenize: {"prompt": str, "add_special_tokens": bool} or {"messages": [...],
// "add_generation_prompt": bool}; "model" optional.
struct TokenizeRequest {
  std::string model;
  bool chat = false;
  std::string prompt;
  nlohmann::json messages;
  bool add_special_tokens = true;
  bool add_generation_prompt = true;
};
Parsed<TokenizeRequest> parse_tokenize_request(std::string_view body);

// POST /detokenize: {"tokens": [ids]}; "model" optional.
struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;
};
Parsed<DetokenizeRequest> parse_detokenize_request(std::string_view body);

// Any JSON object body (admin endpoints): depth-checked like the others.
Parsed<nlohmann::json> parse_json_object(std::string_view body);

}  // namespace nestedfp::server
