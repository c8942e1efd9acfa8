#include "server/http_head.hpp"

#include <fmt/format.h>

#include <cctype>
#include <nlohmann/json.hpp>

namespace nestedfp::server {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

HeadScan reject(int status, std::string message) {
  HeadScan h;
  h.state = HeadScan::State::Reject;
  h.status = status;
  h.message = std::move(message);
  return h;
}

}  // namespace

HeadScan scan_request_head(std::string_view buf, size_t max_head_bytes, uint64_t max_body_bytes) {
  const size_t end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (buf.size() > max_head_bytes)
      return reject(431,
                    fmt::format("the request line and headers exceed {} bytes", max_head_bytes));
    return {};
  }
  if (end + 4 > max_head_bytes)
    return reject(431, fmt::format("the request line and headers exceed {} bytes", max_head_bytes));

  HeadScan h;
  h.head_bytes = end + 4;
  std::string_view head = buf.substr(0, end);
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  // METHOD SP TARGET SP HTTP/1.x
  const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp2 == sp1 || sp1 == 0)
    return reject(400, "malformed request line: expected 'METHOD /path HTTP/1.1'");
  std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                   version = line.substr(sp2 + 1);
  for (char c : method)
    if (!is_token_char(c)) return reject(400, "malformed request line: the method is not a token");
  if (version != "HTTP/1.1" && version != "HTTP/1.0")
    return reject(400, "unsupported HTTP version: send HTTP/1.1 or HTTP/1.0");
  if (target.empty() || target.front() != '/' || target.find(' ') != std::string_view::npos)
    return reject(400, "malformed request target: it must be a path starting with '/'");
  h.method = std::string(method);
  h.path = std::string(target.substr(0, target.find('?')));
  bool keep_alive = version == "HTTP/1.1";

  bool have_length = false;
  size_t lines = 0;
  while (eol != std::string_view::npos) {
    const size_t start = eol + 2;
    eol = head.find("\r\n", start);
    line = head.substr(start, eol == std::string_view::npos ? std::string_view::npos : eol - start);
    if (++lines > kMaxHeaderLines)
      return reject(431, fmt::format("more than {} header lines", kMaxHeaderLines));
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return reject(400, "malformed header line: expected 'Name: value'");
    std::string_view name = line.substr(0, colon), value = trim(line.substr(colon + 1));
    for (char c : name)
      if (!is_token_char(c))
        return reject(400, "malformed header name (obsolete line folding is not accepted)");
    if (iequals(name, "Content-Length")) {
      // Digits only: "-1", "+5", "1e3" and empty values are errors. 20 or more digits exceed any
      // limit (and uint64), so they are too large without being converted.
      if (value.empty()) return reject(400, "Content-Length is empty: send the body size in bytes");
      for (char c : value)
        if (c < '0' || c > '9')
          return reject(400, "Content-Length must be a non-negative decimal integer");
      std::string_view digits = value;
      while (digits.size() > 1 && digits.front() == '0') digits.remove_prefix(1);
      uint64_t n = 0;
      if (digits.size() > 19) {
        n = UINT64_MAX;
      } else {
        for (char c : digits) n = n * 10 + static_cast<uint64_t>(c - '0');
      }
      if (have_length && n != h.body_bytes)
        return reject(400, "conflicting Content-Length headers");
      have_length = true;
      h.body_bytes = n;
    } else if (iequals(name, "Transfer-Encoding")) {
      return reject(411,
                    "Transfer-Encoding is not accepted for request bodies: send the body with a "
                    "Content-Length");
    } else if (iequals(name, "Connection")) {
      if (iequals(value, "close"))
        keep_alive = false;
      else if (iequals(value, "keep-alive"))
        keep_alive = true;
    }
  }
  if (h.body_bytes > max_body_bytes)
    return reject(413, h.body_bytes == UINT64_MAX
                           ? fmt::format("the request body is too large (the limit is {} bytes)",
                                         max_body_bytes)
                           : fmt::format("the request body is {} bytes, over the limit of {} bytes",
                                         h.body_bytes, max_body_bytes));
  h.close = !keep_alive;
  h.state = HeadScan::State::Complete;
  return h;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

std::string error_response(int status, std::string_view message) {
  nlohmann::json body = {{"error",
                          {{"message", std::string(message)},
                           {"type", status >= 500 ? "server_error" : "invalid_request_error"},
                           {"param", nullptr},
                           {"code", nullptr}}}};
  std::string b = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: "
      "close\r\n{}\r\n{}",
      status, reason_phrase(status), b.size(), status == 503 ? "Retry-After: 1\r\n" : "", b);
}

}  // namespace nestedfp::server
