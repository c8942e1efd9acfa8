#pragma once
// The connection front end under the OpenAI server: an httplib::Server whose connections are
// owned by one poll() thread until a whole request (head and body) has arrived, and only then
// handed to a worker thread that runs httplib's request processing on the buffered bytes.
//
// Why not httplib's own loop: it gives each connection a pool thread from accept on, so slow
// clients (a header line every few seconds) hold every thread while the per-read timeout never
// fires, and /health stops answering; it reads a fresh stream per request, so pipelined requests
// are lost; and it discards an over-limit body by reading it until the read timeout.
//
// Rules (all limits in FrontLimits):
// - A request's head must arrive within header_timeout of its first byte, its body within
//   body_timeout after the head; otherwise 408 and the connection is closed. A connection idle
//   between requests is closed after idle_timeout.
// - Content-Length is checked when the head is complete: bad or over max_body_bytes is answered at
//   once (http_head.hpp), without reading the body. Chunked request bodies are refused (411).
// - At most max_connections are open. A new one past the limit evicts the connection that has
//   been waiting longest for its request bytes (a slow or idle client); when every connection is
//   busy in a handler, the new one gets 503 and is closed.
// - Requests for which is_probe(method, path) is true (health, metrics) run on their own small
//   pool, so they are answered while every worker is busy generating.
// - Pipelined requests on one connection are answered in order.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

namespace nestedfp::server {

struct FrontLimits {
  int worker_threads = 64;
  int probe_threads = 2;
  // Each is a file descriptor: the constructor raises the soft open-file limit to
  // max_connections + kFdReserve and fails when the hard limit is lower. Every path polls (this
  // front end, and Debian's httplib 0.11 is built with poll), so descriptors past 1024 are fine.
  int max_connections = 4096;
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{30'000};
  std::chrono::milliseconds idle_timeout{5'000};
  std::chrono::milliseconds write_timeout{30'000};
  size_t max_head_bytes = 64u << 10;
  size_t max_body_bytes = 16u << 20;
  std::function<bool(std::string_view method, std::string_view path)> is_probe;
  // Pending connects the kernel queues before accept(). httplib listens with a backlog of 5
  // (compiled into the Debian library): connects past it lose their handshake and the client's
  // kernel retries after 1 s, which reads as 1 s TTFTs in any burst of new requests.
  int listen_backlog = 4096;  // the kernel caps it at net.core.somaxconn
};

// Descriptors kept for everything else (model files, logs, NCCL, the engine's threads).
inline constexpr int kFdReserve = 256;
inline constexpr int kMaxConnectionsCap = 65536;
// The default --max-connections for an open-file hard limit: up to 4096, fewer when the limit is
// lower (at least 64), leaving kFdReserve descriptors.
int connections_for_fd_limit(long long hard_limit);

struct FrontCounters {
  uint64_t connections_accepted = 0, connections_refused = 0, connections_evicted = 0;
  uint64_t timeouts = 0;        // heads or bodies too slow, answered 408
  uint64_t rejected_heads = 0;  // answered by the front end (400/411/413/431)
  int open_connections = 0;
};

class HttpFront : public httplib::Server {
 public:
  explicit HttpFront(FrontLimits limits);  // throws Error for invalid limits
  ~HttpFront() override;
  // Closes every connection and joins the threads; call after httplib's stop() (no more accepts).
  // Workers finish the request they are running first.
  void shutdown_front();
  FrontCounters counters() const;
  // Call after bind_to_port / bind_to_any_port succeeded: re-listens the bound socket with
  // limits.listen_backlog (Linux applies a second listen() to a listening socket). Throws Error
  // when nothing is bound or the kernel refuses.
  void widen_listen_backlog();
  // The bound socket's accept-queue limit as the kernel holds it (min(backlog, somaxconn));
  // -1 when nothing is bound.
  int listen_backlog() const;

  struct Impl;

 private:
  // httplib calls this from its accept loop for each new socket (private virtual in httplib).
  bool process_and_close_socket(socket_t sock) override;
  void serve(void* conn);  // worker side: runs httplib on one buffered request
  std::unique_ptr<Impl> impl_;
};

// For code running inside a request handler on an HttpFront worker: true when the client of that
// request has closed or reset its connection (so its work can be abandoned). False elsewhere.
bool current_client_gone();

}  // namespace nestedfp::server
