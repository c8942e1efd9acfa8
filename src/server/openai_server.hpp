#pragma once
// OpenAI-compatible HTTP server over the engine (cpp-httplib).
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health,
// GET /metrics (Prometheus text), GET|POST /admin/precision ({"precision": "fp8"} etc.).
// Auth: with an API key, /v1/* and /admin/* need "Authorization: Bearer KEY" (else 401);
// /health and /metrics stay open for probes and scrapers.
// Status codes: 400 for anything the client must fix (the message says what), 401 bad or missing
// key, 404 unknown route or model name, 413 body over the size limit, 429 when the engine's
// waiting queue is full (retry later; Retry-After: 1), 500 when the model step fails, 503 while
// shutting down. A streaming client that disconnects has its requests aborted (KV blocks freed);
// a non-streaming request runs to completion even if its client goes away (bounded by max_tokens).
#include <memory>
#include <string>

#include "nestedfp/engine.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                 // 0: any free port (see port())
  std::string model_name;          // the id in /v1/models; requests naming another model get 404
  std::string api_key;             // empty: no auth
  int http_threads = 64;           // concurrent HTTP requests (a streaming request holds one)
  size_t max_body_bytes = 16u << 20;
};

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
