#pragma once
// The HTTP/1.1 request head as the connection front end (http_front.hpp) sees it before any
// handler runs: where the head ends, how long the body is, and whether to refuse the request
// outright. Pure functions over the bytes received so far, so the limits are unit-tested without
// sockets. httplib parses the head again when the request is dispatched; this scan only decides
// how many bytes belong to the request and rejects what must not reach a worker thread.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace nestedfp::server {

struct HeadScan {
  enum class State { Incomplete, Complete, Reject } state = State::Incomplete;
  size_t head_bytes = 0;     // request line + headers + blank line (Complete)
  uint64_t body_bytes = 0;   // Content-Length, 0 when absent (Complete)
  std::string method, path;  // path without the query string
  bool close = false;        // "Connection: close", or HTTP/1.0 without keep-alive
  int status = 0;            // Reject: the HTTP status to answer with before closing
  std::string message;       // Reject: what is wrong and what to do
};

inline constexpr size_t kMaxHeaderLines = 100;

// Scans `buf` (the bytes of one connection from the start of a request). Rejects: a head over
// `max_head_bytes` (431), more than kMaxHeaderLines headers (431), a malformed request line or
// header (400), a Content-Length that is not a plain decimal number or is given twice with
// different values (400), a body over `max_body_bytes` (413, decided from Content-Length alone,
// before reading any of it), Transfer-Encoding (411: bodies need a Content-Length).
HeadScan scan_request_head(std::string_view buf, size_t max_head_bytes, uint64_t max_body_bytes);

// A minimal complete response (JSON error body in the OpenAI format, "Connection: close"), for
// requests the front end refuses without a handler.
std::string error_response(int status, std::string_view message);

const char* reason_phrase(int status);

}  // namespace nestedfp::server
