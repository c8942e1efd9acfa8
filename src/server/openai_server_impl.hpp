#pragma once
// Internals of OpenAIServer shared by its translation units: openai_server.cpp (generation
// endpoints and responses) and server_routes.cpp (routing, limits, auth, admin and token
// endpoints).
#include <atomic>
#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nestedfp/engine.hpp"
#include "nestedfp/tokenizer.hpp"
#include "server/http_front.hpp"
#include "server/openai_request.hpp"
#include "server/openai_server.hpp"

namespace nestedfp::server {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

inline void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

inline void send_error(httplib::Response& res, const ApiError& e) {
  send_json(res, e.status, e.to_json());
  if (e.status == 429) res.set_header("Retry-After", "1");
}

inline ApiError error(int status, std::string message, std::string type, std::string param = "",
                      std::string code = "") {
  return ApiError{status, std::move(message), std::move(type), std::move(param), std::move(code)};
}

// One sample of one prompt inside an HTTP request (n × prompts of them, or best_of × prompts).
struct Choice {
  int index = 0;           // in the response (reassigned after ranking when best_of > n)
  int prompt_index = 0;    // which prompt of the request
  int sample = 0;          // 0..best_of-1 within its prompt (seed + sample)
  double cum_logprob = 0;  // sum of the chosen tokens' logprobs (best_of ranking)
  std::shared_ptr<RequestStream> stream;
  std::vector<int32_t> prompt_ids;
  std::string echo_text;
  bool started = false, done = false;
  FinishReason finish = FinishReason::None;
  std::string error;
  int prompt_tokens = 0, completion_tokens = 0;
  std::unique_ptr<IncrementalDecoder> offsets;  // positions of generated tokens in the text
  size_t chars = 0;                             // code points of the choice's text so far
};

struct Job {
  enum class Kind { Completion, Chat } kind = Kind::Completion;
  Engine* engine = nullptr;
  std::string id, model;
  int64_t created = 0;
  bool stream = false, include_usage = false, echo = false;
  int logprobs = -1;  // alternatives per token; -1: no logprobs
  int n = 1, best_of = 1;
  std::vector<Choice> choices;
  Clock::time_point last_write =
      Clock::now();  // streaming: last write; else: last disconnect check
  ~Job() {
    for (auto& c : choices)
      if (c.stream && !c.done) engine->abort(c.stream->id());  // client gone or handler bailed out
  }
};

// What one event adds to a choice: its text and its logprobs (in the endpoint's format).
struct Piece {
  std::string text;
  json logprobs;  // completions: {tokens, token_logprobs, top_logprobs, text_offset}; chat: [..]
};

struct OpenAIServer::Impl {
  Impl(Engine& e, Tokenizer t, ServerOptions o);

  Engine& engine;
  Tokenizer tok;
  ServerOptions opts;
  std::unique_ptr<HttpFront> front;  // httplib::Server with the hardened connection handling
  httplib::Server& http;
  // A text prompt longer than this many bytes cannot fit the context whatever it tokenizes to
  // (see prompt_too_long): it is refused before the tokenizer spends time and memory on it.
  size_t max_prompt_bytes = 0;
  std::thread thread;
  int bound_port = -1;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> next_id{1}, disconnects{0}, rejected_queue_full{0};
  std::mutex stats_mu;
  std::map<int, uint64_t> responses;  // by status
  int64_t started_at = static_cast<int64_t>(std::time(nullptr));

  void routes();
  std::string token_str(int32_t id) const;
  json chat_token(int32_t id, float lp) const;
  json top_dict(const LogprobInfo& l) const;
  Piece absorb(Job& job, Choice& c, RequestEvent& ev) const;
  json chunk(const Job& job, const Choice& c, const Piece& p, bool first) const;
  json usage(const Job& job) const;
  std::optional<ApiError> check_model(const std::string& model) const;
  std::optional<ApiError> submit(Job& job, std::vector<std::vector<int32_t>> prompts,
                                 const CommonParams& p, std::optional<int64_t> default_max,
                                 bool prompt_logprobs);
  void respond(std::shared_ptr<Job> job, httplib::Response& res);
  void completions(const httplib::Request& req, httplib::Response& res);
  void chat(const httplib::Request& req, httplib::Response& res);
  void admin_precision(const httplib::Request& req, httplib::Response& res);
  void tokenize(const httplib::Request& req, httplib::Response& res);
  void detokenize(const httplib::Request& req, httplib::Response& res);
  std::string render_chat_prompt(const json& messages,
                                 bool add_generation_prompt) const;  // throws Error
  std::optional<ApiError> prompt_too_long(size_t bytes, const char* param) const;
  // Pre-routing: shutdown, 404/405, API key, admin rule. Set when the request may proceed.
  std::optional<ApiError> gate(const httplib::Request& req, std::string& allow) const;
};

}  // namespace nestedfp::server
