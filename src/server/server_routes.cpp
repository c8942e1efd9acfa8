// Routing and everything around the generation endpoints: the connection front end's limits,
// 404/405, the API key and admin rule, /health, /metrics, /version, /tokenize, /detokenize and
// /admin/precision.
#include <arpa/inet.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>

#include "nestedfp/error.hpp"
#include "server/openai_server_impl.hpp"

#ifndef NESTEDFP_VERSION
#define NESTEDFP_VERSION "unknown"
#endif

namespace nestedfp::server {

namespace {

bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

// Every route and the methods it takes: a known path with another method is a 405 with Allow.
struct Route {
  const char* path;
  const char* allow;
};
constexpr Route kRoutes[] = {
    {"/v1/completions", "POST"},
    {"/v1/chat/completions", "POST"},
    {"/v1/models", "GET"},
    {"/health", "GET"},
    {"/metrics", "GET"},
    {"/version", "GET"},
    {"/tokenize", "POST"},
    {"/detokenize", "POST"},
    {"/admin/precision", "GET, POST"},
};

// Cheap GET endpoints that must answer while every worker is busy (probes, scrapers).
bool is_probe(std::string_view method, std::string_view path) {
  return (method == "GET" || method == "HEAD") &&
         (path == "/health" || path == "/metrics" || path == "/version");
}

FrontLimits front_limits(const ServerOptions& o) {
  FrontLimits l;
  l.worker_threads = std::max(1, o.http_threads);
  // 0 is the default; a negative value reaches HttpFront, which refuses it with the range.
  l.max_connections = o.max_connections != 0 ? o.max_connections : default_max_connections();
  l.header_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.header_timeout_s * 1000));
  l.body_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.body_timeout_s * 1000));
  l.max_body_bytes = o.max_body_bytes;
  l.is_probe = is_probe;
  return l;
}

// The longest byte string one token decodes to: no text longer than max_len times that (with
// margin) can tokenize to max_len tokens or fewer.
size_t longest_token_bytes(const Tokenizer& tok) {
  size_t longest = 1;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    try {
      longest = std::max(longest, tok.decode_bytes(std::span<const int32_t>(&id, 1), false).size());
    } catch (const std::exception&) {  // ids without a piece
    }
  }
  return longest;
}

}  // namespace

bool is_loopback_address(std::string_view ip) {
  in_addr v4{};
  in6_addr v6{};
  const std::string s(ip);
  if (::inet_pton(AF_INET, s.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  if (::inet_pton(AF_INET6, s.c_str(), &v6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

OpenAIServer::Impl::Impl(Engine& e, Tokenizer t, ServerOptions o)
    : engine(e),
      tok(std::move(t)),
      opts(std::move(o)),
      front(std::make_unique<HttpFront>(front_limits(opts))),
      http(*front) {
  // Margin: normalizers (NFKC, accent stripping) may shrink text up to ~3x before it is cut into
  // tokens, and a decoder may drop one leading byte per token.
  max_prompt_bytes =
      static_cast<size_t>(engine.max_model_len()) * (longest_token_bytes(tok) + 1) * 4 + 4096;
}

std::optional<ApiError> OpenAIServer::Impl::prompt_too_long(size_t bytes, const char* param) const {
  if (bytes <= max_prompt_bytes) return std::nullopt;
  return error(
      400,
      fmt::format("the prompt is {} bytes: no text that long fits this model's maximum context "
                  "length of {} tokens "
                  "(anything over {} bytes is refused before tokenizing): shorten the prompt",
                  bytes, engine.max_model_len(), max_prompt_bytes),
      "invalid_request_error", param, "context_length_exceeded");
}

std::optional<ApiError> OpenAIServer::Impl::gate(const httplib::Request& req,
                                                 std::string& allow) const {
  if (stopping) return error(503, "the server is shutting down", "server_error");
  const Route* route = nullptr;
  for (const Route& r : kRoutes)
    if (req.path == r.path) route = &r;
  if (!route) return std::nullopt;  // httplib answers 404 through the error handler
  const bool admin = req.path.rfind("/admin/", 0) == 0;
  const bool guarded = admin || req.path.rfind("/v1/", 0) == 0 || req.path == "/tokenize" ||
                       req.path == "/detokenize";
  // The admin endpoints change what every client gets: with --admin-key they take that key; else
  // with --api-key that key; with neither, only clients on the loopback interface.
  const std::string& key = admin && !opts.admin_key.empty() ? opts.admin_key : opts.api_key;
  if (guarded && !key.empty()) {
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (!(auth.rfind(prefix, 0) == 0 &&
          same_secret(std::string_view(auth).substr(prefix.size()), key)))
      return error(
          401,
          auth.empty()
              ? fmt::format("missing {} key: send the header 'Authorization: Bearer <key>'",
                            admin && !opts.admin_key.empty() ? "admin" : "API")
              : (admin && !opts.admin_key.empty() ? "invalid admin key" : "invalid API key"),
          "invalid_request_error", "", "invalid_api_key");
  } else if (admin && !is_loopback_address(req.remote_addr)) {
    return error(403,
                 "the admin endpoints answer only loopback clients when the server has no key: "
                 "start it with "
                 "--admin-key KEY (or --api-key KEY) to allow remote administration",
                 "permission_error");
  }
  const std::string_view method = req.method == "HEAD" ? "GET" : std::string_view(req.method);
  std::string_view allowed = route->allow;
  bool ok = false;
  for (size_t pos = 0; pos < allowed.size();) {
    size_t end = allowed.find(", ", pos);
    if (end == std::string_view::npos) end = allowed.size();
    ok = ok || allowed.substr(pos, end - pos) == method;
    pos = end + 2;
  }
  if (!ok) {
    allow = route->allow;
    return error(405,
                 fmt::format("{} does not take {}: use {}", req.path, req.method, route->allow),
                 "invalid_request_error");
  }
  return std::nullopt;
}

void OpenAIServer::Impl::admin_precision(const httplib::Request& req, httplib::Response& res) {
  if (req.method == "POST") {
    auto parsed = parse_json_object(req.body);
    if (!parsed.ok()) return send_error(res, parsed.error);
    const json& j = *parsed.request;
    if (!j.contains("precision") || !j["precision"].is_string() || j.size() != 1)
      return send_error(
          res,
          error(
              400,
              "send {\"precision\": \"fp16\" | \"fp8\" | \"dynamic[:threshold=N[,hysteresis=H]]\"}",
              "invalid_request_error", "precision"));
    try {
      engine.set_precision_policy(j["precision"].get<std::string>());
    } catch (const Error& e) {
      return send_error(res, error(400, e.what(), "invalid_request_error", "precision"));
    }
    spdlog::info("precision policy set to {} by {}", engine.precision_policy(), req.remote_addr);
  }
  send_json(res, 200, {{"precision", engine.precision_policy()}});
}

void OpenAIServer::Impl::tokenize(const httplib::Request& req, httplib::Response& res) {
  auto parsed = parse_tokenize_request(req.body);
  if (!parsed.ok()) return send_error(res, parsed.error);
  TokenizeRequest& r = *parsed.request;
  if (auto e = check_model(r.model)) return send_error(res, *e);
  std::vector<int32_t> ids;
  try {
    std::string text =
        r.chat ? render_chat_prompt(r.messages, r.add_generation_prompt) : std::move(r.prompt);
    if (auto e = prompt_too_long(text.size(), r.chat ? "messages" : "prompt"))
      return send_error(res, *e);
    ids = tok.encode(text, r.chat ? tok.chat_template().empty() : r.add_special_tokens);
  } catch (const Error& e) {
    return send_error(
        res, error(400, e.what(), "invalid_request_error", r.chat ? "messages" : "prompt"));
  }
  send_json(res, 200,
            {{"count", ids.size()}, {"max_model_len", engine.max_model_len()}, {"tokens", ids}});
}

void OpenAIServer::Impl::detokenize(const httplib::Request& req, httplib::Response& res) {
  auto parsed = parse_detokenize_request(req.body);
  if (!parsed.ok()) return send_error(res, parsed.error);
  const DetokenizeRequest& r = *parsed.request;
  if (auto e = check_model(r.model)) return send_error(res, *e);
  for (int32_t id : r.tokens)
    if (id >= tok.vocab_size())
      return send_error(res, error(400,
                                   fmt::format("token id {} is outside the vocabulary [0, {})", id,
                                               tok.vocab_size()),
                                   "invalid_request_error", "tokens"));
  std::string text;
  try {
    text = tok.decode(r.tokens, /*skip_special_tokens=*/false);
  } catch (const Error& e) {
    return send_error(res, error(400, e.what(), "invalid_request_error", "tokens"));
  }
  send_json(res, 200, {{"prompt", text}});
}

void OpenAIServer::Impl::routes() {
  http.set_tcp_nodelay(true);
  http.set_payload_max_length(opts.max_body_bytes);  // the front end already refused larger ones
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    std::string allow;
    if (auto e = gate(req, allow)) {
      send_error(res, *e);
      if (!allow.empty()) res.set_header("Allow", allow);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                                 httplib::Response& res) {
    if (!res.body.empty() || res.is_chunked_content_provider_)
      return httplib::Server::HandlerResponse::Unhandled;
    std::string msg = res.status == 404   ? fmt::format("no route for {} {}", req.method, req.path)
                      : res.status == 413 ? "the request body is too large"
                                          : fmt::format("HTTP error {}", res.status);
    send_json(res, res.status, error(res.status, msg, "invalid_request_error").to_json());
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        spdlog::error("request handler failed: {}", what);
        send_error(res, error(500, "internal error: " + what, "server_error"));
      });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    std::lock_guard lk(stats_mu);
    ++responses[res.status];
    spdlog::debug("{} {} -> {}", req.method, req.path, res.status);
  });

  http.Post("/v1/completions",
            [this](const httplib::Request& q, httplib::Response& r) { completions(q, r); });
  http.Post("/v1/chat/completions",
            [this](const httplib::Request& q, httplib::Response& r) { chat(q, r); });
  http.Post("/tokenize",
            [this](const httplib::Request& q, httplib::Response& r) { tokenize(q, r); });
  http.Post("/detokenize",
            [this](const httplib::Request& q, httplib::Response& r) { detokenize(q, r); });
  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& r) {
    json m = {{"id", opts.model_name},
              {"object", "model"},
              {"created", started_at},
              {"owned_by", "nestedfp"},
              {"max_model_len", engine.max_model_len()}};
    send_json(r, 200, {{"object", "list"}, {"data", {m}}});
  });
  http.Get("/health", [](const httplib::Request&, httplib::Response& r) {
    send_json(r, 200, {{"status", "ok"}});
  });
  http.Get("/version", [](const httplib::Request&, httplib::Response& r) {
    send_json(r, 200, {{"version", NESTEDFP_VERSION}});
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
    std::string text = engine.metrics_text();
    text +=
        "# HELP nestedfp_http_responses_total HTTP responses, by status.\n# TYPE "
        "nestedfp_http_responses_total counter\n";
    {
      std::lock_guard lk(stats_mu);
      for (auto& [code, n] : responses)
        text += fmt::format("nestedfp_http_responses_total{{code=\"{}\"}} {}\n", code, n);
    }
    const FrontCounters fc = front->counters();
    auto counter = [&](const char* name, const char* help, uint64_t v) {
      text += fmt::format("# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, v);
    };
    counter("nestedfp_client_disconnects_total", "Requests aborted because the client went away.",
            disconnects.load());
    counter("nestedfp_requests_rejected_total", "Requests refused with 429 (queue full).",
            rejected_queue_full.load());
    counter("nestedfp_http_connections_total", "Connections accepted.", fc.connections_accepted);
    counter("nestedfp_http_connections_refused_total",
            "Connections refused with 503 (every connection busy).", fc.connections_refused);
    counter("nestedfp_http_connections_evicted_total",
            "Waiting connections closed to make room for new ones.", fc.connections_evicted);
    counter("nestedfp_http_timeouts_total", "Requests whose head or body arrived too slowly (408).",
            fc.timeouts);
    counter("nestedfp_http_rejected_heads_total",
            "Requests refused from their head alone (400/411/413/431).", fc.rejected_heads);
    text += fmt::format(
        "# HELP nestedfp_http_open_connections Open client connections.\n"
        "# TYPE nestedfp_http_open_connections gauge\nnestedfp_http_open_connections {}\n",
        fc.open_connections);
    r.set_content(text, "text/plain; version=0.0.4");
  });
  http.Get("/admin/precision",
           [this](const httplib::Request& q, httplib::Response& r) { admin_precision(q, r); });
  http.Post("/admin/precision",
            [this](const httplib::Request& q, httplib::Response& r) { admin_precision(q, r); });
}

int default_max_connections() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 512;
  return connections_for_fd_limit(r.rlim_max == RLIM_INFINITY ? -1 : (long long)r.rlim_max);
}

}  // namespace nestedfp::server
