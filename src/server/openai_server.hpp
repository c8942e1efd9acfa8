#pragma once
// OpenAI-compatible HTTP server over the engine (cpp-httplib).
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health,
// GET /metrics (Prometheus text), GET /version, POST /tokenize, POST /detokenize,
// GET|POST /admin/precision ({"precision": "fp8"} etc.).
// Auth: with an API key, /v1/*, /tokenize and /detokenize need "Authorization: Bearer KEY" (else
// 401); /health, /metrics and /version stay open for probes and scrapers.
// Admin rule: /admin/* takes the --admin-key when one is set, else the --api-key; a server with
// neither answers /admin/* only to loopback clients (others get 403).
// Status codes: 400 for anything the client must fix (the message says what, including every
// field the server does not honour), 401 bad or missing key, 403 admin from a remote client
// without a key, 404 unknown route or model name, 405 known route with another method (with
// Allow), 408 request head or body too slow, 411 chunked request body, 413 body over the size
// limit (decided from Content-Length, before reading the body), 429 when the engine's waiting
// queue is full (retry later; Retry-After: 1), 431 head too large, 500 when the model step fails,
// 503 while shutting down or when every connection is busy.
// A client that goes away has its requests aborted (KV blocks freed), streaming or not.
// Connections, timeouts and limits: http_front.hpp. Request JSON deeper than kMaxJsonDepth is
// refused when parsed; a text prompt too long to fit the context is refused before tokenizing.
#include <memory>
#include <string>
#include <string_view>

#include "nestedfp/engine.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;          // 0: any free port (see port())
  std::string model_name;   // the id in /v1/models; requests naming another model get 404
  std::string api_key;      // empty: no auth
  std::string admin_key;    // empty: /admin/* takes api_key, or loopback only without one
  int http_threads = 64;    // concurrent HTTP requests (a streaming request holds one)
  int max_connections = 0;  // open connections (idle and slow ones are evicted first); 0: up to
                            // 4096 as the open-file hard limit allows (default_max_connections)
  double header_timeout_s = 10;  // a request head must arrive within this of its first byte
  double body_timeout_s = 30;    // and its body within this after the head
  size_t max_body_bytes = 16u << 20;
};

// ServerOptions::max_connections 0 resolves to this: up to 4096 connections, fewer when this
// process's open-file hard limit is lower (each connection is a descriptor).
int default_max_connections();

// 127.0.0.0/8, ::1 and IPv4-mapped 127.x (the admin rule without a key).
bool is_loopback_address(std::string_view ip);

class OpenAIServer {
 public:
  // `engine` must be started (or stepped) by the caller and outlive the server.
  OpenAIServer(Engine& engine, Tokenizer tokenizer, ServerOptions options);
  ~OpenAIServer();
  OpenAIServer(const OpenAIServer&) = delete;
  OpenAIServer& operator=(const OpenAIServer&) = delete;

  int bind();    // binds host:port and returns the port; throws Error when it cannot
  void run();    // serves until stop(); binds first if needed
  void start();  // run() on a background thread, after binding
  // Aborts the requests in flight, stops listening and joins the background thread.
  void stop();
  int port() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace nestedfp::server
