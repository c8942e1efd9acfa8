#include "server/http_front.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "nestedfp/error.hpp"
#include "server/http_head.hpp"

namespace nestedfp::server {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

thread_local int tl_client_fd = -1;

struct Conn {
  int fd = -1;
  std::string buf;  // received, not yet consumed
  // Idle: between requests; Head/Body: receiving a request; Linger: refused, draining before close.
  enum class Phase { Idle, Head, Body, Linger } phase = Phase::Idle;
  Clock::time_point since, deadline;
  HeadScan head;
  bool busy = false;  // handed to a worker; the poll thread does not touch it
};

// Raises the soft open-file limit to `need` descriptors (never lowers it); Error when the hard
// limit is lower.
void raise_fd_limit(int need) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0)
    fail("cannot read the open-file limit: {}", std::strerror(errno));
  if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur >= rlim_t(need)) return;
  if (r.rlim_max != RLIM_INFINITY && r.rlim_max < rlim_t(need))
    fail(
        "--max-connections {} needs {} open files but the hard limit is {}: raise it (ulimit -Hn, "
        "or LimitNOFILE= in a systemd unit) or lower --max-connections",
        need - kFdReserve, need, (long long)r.rlim_max);
  r.rlim_cur = rlim_t(need);
  if (::setrlimit(RLIMIT_NOFILE, &r) != 0)
    fail("cannot raise the open-file limit to {}: {}", need, std::strerror(errno));
}

bool peer_gone(int fd) {
  pollfd p{fd, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) return true;
  char b;
  const ssize_t n = ::recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

// Sends all of `data` within `timeout`; false when the peer is gone or too slow.
bool send_all(int fd, const char* data, size_t n, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (n > 0) {
    const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      data += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLOUT, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (r > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL))) return false;
  }
  return true;
}

// httplib reads one request from the bytes the poll thread buffered (then sees end of stream) and
// writes the response straight to the socket.
class BufferedStream final : public httplib::Stream {
 public:
  BufferedStream(int fd, const char* data, size_t len, std::chrono::milliseconds write_timeout)
      : fd_(fd), data_(data), len_(len), write_timeout_(write_timeout) {}
  bool is_readable() const override { return pos_ < len_; }
  bool is_writable() const override {
    pollfd p{fd_, static_cast<short>(POLLOUT | POLLRDHUP), 0};
    const int r = ::poll(&p, 1, static_cast<int>(write_timeout_.count()));
    return r > 0 && !(p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) &&
           (p.revents & POLLOUT);
  }
  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, len_ - pos_);
    std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    return send_all(fd_, ptr, size, write_timeout_) ? static_cast<ssize_t>(size) : -1;
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    address(::getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    address(::getsockname, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  template <typename F>
  void address(F f, std::string& ip, int& port) const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    ip.clear();
    port = 0;
    if (f(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return;
    char host[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET) {
      auto* v4 = reinterpret_cast<sockaddr_in*>(&a);
      ::inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
      port = ntohs(v4->sin_port);
    } else if (a.ss_family == AF_INET6) {
      auto* v6 = reinterpret_cast<sockaddr_in6*>(&a);
      ::inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
      port = ntohs(v6->sin6_port);
    }
    ip = host;
  }
  int fd_;
  const char* data_;
  size_t len_, pos_ = 0;
  std::chrono::milliseconds write_timeout_;
};

// httplib's accept loop hands each socket to its task queue; this one runs the handoff inline
// (process_and_close_socket only passes the socket to the poll thread).
class InlineQueue final : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

class WorkQueue {
 public:
  void push(Conn* c) {
    {
      std::lock_guard lk(mu_);
      q_.push_back(c);
    }
    cv_.notify_one();
  }
  Conn* pop() {  // nullptr: shut down and empty
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
    if (q_.empty()) return nullptr;
    Conn* c = q_.front();
    q_.pop_front();
    return c;
  }
  void stop() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Conn*> q_;
  bool stop_ = false;
};

}  // namespace

struct HttpFront::Impl {
  FrontLimits lim;
  int wake_fd = -1;
  std::thread poller;
  std::vector<std::thread> workers, probes;
  WorkQueue work, probe;

  std::mutex mu;  // guards incoming, returned, poller_gone
  std::vector<int> incoming;
  std::vector<Conn*> returned;
  bool poller_gone = false;
  std::atomic<bool> stopping{false};

  std::atomic<uint64_t> accepted{0}, refused{0}, evicted{0}, timeouts{0}, rejected{0};
  std::atomic<int> open{0};
  std::vector<Conn*> conns;  // poll thread only: every open connection, busy ones included

  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(wake_fd, &one, sizeof one);
  }
  void close_conn(Conn* c) {
    if (c->fd >= 0) ::close(c->fd);
    c->fd = -1;
  }
  void start_idle(Conn* c, Clock::time_point now) {
    c->phase = Conn::Phase::Idle;
    c->since = now;
    c->deadline = now + lim.idle_timeout;
  }
  void refuse(Conn* c, int status, std::string_view msg, Clock::time_point now) {
    const std::string r = error_response(status, msg);
    send_all(c->fd, r.data(), r.size(), 100ms);
    // Lingering close: stop sending, drain what the client still sends for a moment, so the
    // kernel does not reset the connection before the client has read the answer.
    ::shutdown(c->fd, SHUT_WR);
    c->phase = Conn::Phase::Linger;
    c->buf.clear();
    c->deadline = now + 1s;
  }
  // Moves a connection on after new bytes: starts a request, checks its head, dispatches it once
  // its body is complete.
  void advance(Conn* c, Clock::time_point now) {
    if (c->phase == Conn::Phase::Linger) {
      c->buf.clear();
      return;
    }
    if (c->phase == Conn::Phase::Idle) {
      size_t skip = 0;  // stray CRLFs between requests are allowed (RFC 9112 §2.2)
      while (skip < c->buf.size() && (c->buf[skip] == '\r' || c->buf[skip] == '\n')) ++skip;
      c->buf.erase(0, skip);
      if (c->buf.empty()) return;
      c->phase = Conn::Phase::Head;
      c->since = now;
      c->deadline = now + lim.header_timeout;
    }
    if (c->phase == Conn::Phase::Head) {
      HeadScan h = scan_request_head(c->buf, lim.max_head_bytes, lim.max_body_bytes);
      if (h.state == HeadScan::State::Incomplete) return;
      if (h.state == HeadScan::State::Reject) {
        ++rejected;
        return refuse(c, h.status, h.message, now);
      }
      c->head = std::move(h);
      c->phase = Conn::Phase::Body;
      c->deadline = now + lim.body_timeout;
    }
    if (c->phase == Conn::Phase::Body && c->buf.size() >= c->head.head_bytes + c->head.body_bytes) {
      c->busy = true;
      const bool is_probe = lim.is_probe && lim.is_probe(c->head.method, c->head.path);
      (is_probe ? probe : work).push(c);
    }
  }
  // Room for a new connection: evict the one that has waited longest for request bytes.
  bool make_room(Clock::time_point now) {
    Conn* victim = nullptr;
    for (Conn* c : conns)
      if (!c->busy && c->fd >= 0 && (!victim || c->since < victim->since)) victim = c;
    if (!victim) return false;
    ++evicted;
    close_conn(victim);
    return true;
  }
  void poll_loop(HttpFront* self);
};

void HttpFront::Impl::poll_loop(HttpFront*) {
  std::vector<pollfd> pfds;
  std::vector<Conn*> polled;
  std::vector<char> chunk(64u << 10);
  while (true) {
    auto now = Clock::now();
    std::vector<int> in;
    std::vector<Conn*> back;
    {
      std::lock_guard lk(mu);
      in.swap(incoming);
      back.swap(returned);
      if (stopping) {
        poller_gone = true;  // from now on workers close and delete what they hold
        for (int fd : in) ::close(fd);
        for (Conn* c : back) c->busy = false;  // returned before: closed below
        break;
      }
    }
    for (Conn* c : back) {
      c->busy = false;
      if (c->fd < 0) continue;  // closed by the worker; removed below
      start_idle(c, now);
      advance(c, now);  // a pipelined request may already be buffered
    }
    for (int fd : in) {
      ++accepted;
      ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      size_t live = 0;
      for (Conn* c : conns) live += c->fd >= 0;
      if (live >= static_cast<size_t>(lim.max_connections) && !make_room(now)) {
        ++refused;
        const std::string r =
            error_response(503, "too many connections: every connection is busy, retry later");
        send_all(fd, r.data(), r.size(), 50ms);
        ::close(fd);
        continue;
      }
      auto* c = new Conn;
      c->fd = fd;
      start_idle(c, now);
      conns.push_back(c);
    }
    // Expired deadlines (idle, slow head or body, lingering), then closed connections.
    for (Conn* c : conns) {
      if (c->busy || c->fd < 0 || now < c->deadline) continue;
      if (c->phase == Conn::Phase::Head || c->phase == Conn::Phase::Body) {
        ++timeouts;
        refuse(c, 408,
               c->phase == Conn::Phase::Head ? "the request headers took too long to arrive"
                                             : "the request body took too long to arrive",
               now);
      } else {
        close_conn(c);
      }
    }
    std::erase_if(conns, [](Conn* c) {
      if (c->busy || c->fd >= 0) return false;
      delete c;
      return true;
    });
    open = static_cast<int>(conns.size());

    pfds.assign(1, pollfd{wake_fd, POLLIN, 0});
    polled.assign(1, nullptr);
    auto next = now + 1s;
    for (Conn* c : conns) {
      if (c->busy || c->fd < 0) continue;
      const bool want =
          c->phase != Conn::Phase::Body || c->buf.size() < c->head.head_bytes + c->head.body_bytes;
      if (want) {
        pfds.push_back(pollfd{c->fd, POLLIN, 0});
        polled.push_back(c);
      }
      next = std::min(next, c->deadline);
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1;
    if (::poll(pfds.data(), pfds.size(), static_cast<int>(std::clamp<int64_t>(wait, 0, 1000))) <
            0 &&
        errno != EINTR)
      std::this_thread::sleep_for(10ms);
    if (pfds[0].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] auto r = ::read(wake_fd, &v, sizeof v);
    }
    now = Clock::now();
    for (size_t i = 1; i < pfds.size(); ++i) {
      Conn* c = polled[i];
      if (!(pfds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
      // Never buffer more than the request being received plus one further head.
      const size_t cap =
          (c->phase == Conn::Phase::Body ? c->head.head_bytes + c->head.body_bytes : 0) +
          lim.max_head_bytes + 1;
      const size_t room = c->buf.size() < cap ? cap - c->buf.size() : 0;
      const ssize_t n =
          room == 0 ? 0 : ::recv(c->fd, chunk.data(), std::min(room, chunk.size()), 0);
      if (room == 0) continue;
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close_conn(c);  // the client closed (or reset) its side
        continue;
      }
      if (n < 0) continue;
      c->buf.append(chunk.data(), static_cast<size_t>(n));
      advance(c, now);
    }
  }
  for (Conn* c : conns) {
    if (c->busy) continue;  // its worker closes and deletes it
    close_conn(c);
    delete c;
  }
  conns.clear();
  open = 0;
}

HttpFront::HttpFront(FrontLimits limits) : impl_(std::make_unique<Impl>()) {
  auto& I = *impl_;
  I.lim = std::move(limits);
  if (I.lim.worker_threads < 1 || I.lim.probe_threads < 1)
    fail("the HTTP server needs at least one worker and one probe thread (got {} and {})",
         I.lim.worker_threads, I.lim.probe_threads);
  if (I.lim.listen_backlog < 1)
    fail("the listen backlog must be at least 1 (got {})", I.lim.listen_backlog);
  if (I.lim.max_connections < 2 || I.lim.max_connections > kMaxConnectionsCap)
    fail("--max-connections must be between 2 and {} (got {})", kMaxConnectionsCap,
         I.lim.max_connections);
  raise_fd_limit(I.lim.max_connections + kFdReserve);
  if (I.lim.header_timeout.count() <= 0 || I.lim.body_timeout.count() <= 0 ||
      I.lim.idle_timeout.count() <= 0 || I.lim.write_timeout.count() <= 0)
    fail("HTTP timeouts must be positive (header {} ms, body {} ms)", I.lim.header_timeout.count(),
         I.lim.body_timeout.count());
  I.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (I.wake_fd < 0)
    fail("cannot create an eventfd for the HTTP front end: {}", std::strerror(errno));
  new_task_queue = [] { return new InlineQueue; };
  // Replaces httplib's default (SO_REUSEPORT), which would let a second server bind the same port
  // silently; SO_REUSEADDR still allows a restart while old connections sit in TIME_WAIT.
  set_socket_options([](socket_t s) {
    int yes = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  I.poller = std::thread([this] { impl_->poll_loop(this); });
  auto worker = [this](WorkQueue& q) {
    while (Conn* c = q.pop()) serve(c);
  };
  for (int i = 0; i < I.lim.worker_threads; ++i) I.workers.emplace_back(worker, std::ref(I.work));
  for (int i = 0; i < I.lim.probe_threads; ++i) I.probes.emplace_back(worker, std::ref(I.probe));
}

HttpFront::~HttpFront() {
  shutdown_front();
  // Bound but never served (or a start that failed after bind): httplib closes its listening
  // socket only in stop() while running.
  if (!is_running()) {
    const socket_t fd = svr_sock_.exchange(INVALID_SOCKET);
    if (fd != INVALID_SOCKET) ::close(fd);
  }
  if (impl_->wake_fd >= 0) ::close(impl_->wake_fd);
}

void HttpFront::shutdown_front() {
  auto& I = *impl_;
  if (I.stopping.exchange(true)) return;
  I.wake();
  if (I.poller.joinable()) I.poller.join();
  I.work.stop();
  I.probe.stop();
  for (auto& t : I.workers) t.join();
  for (auto& t : I.probes) t.join();
}

void HttpFront::widen_listen_backlog() {
  // httplib's own listening socket: INVALID_SOCKET until a bind succeeds and after stop().
  const socket_t fd = svr_sock_;
  if (fd == INVALID_SOCKET) fail("widen_listen_backlog: the HTTP server has no bound socket");
  if (::listen(fd, impl_->lim.listen_backlog) != 0)
    fail("cannot set the listen backlog to {}: {}", impl_->lim.listen_backlog,
         std::strerror(errno));
}

int HttpFront::listen_backlog() const {
  const socket_t fd = svr_sock_;
  if (fd == INVALID_SOCKET) return -1;
  // For a listening socket Linux reports the accept queue's limit in tcpi_sacked.
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return -1;
  return int(info.tcpi_sacked);
}

bool HttpFront::process_and_close_socket(socket_t sock) {
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->poller_gone) {
      ::close(sock);
      return false;
    }
    impl_->incoming.push_back(sock);
  }
  impl_->wake();
  return true;
}

void HttpFront::serve(void* p) {
  auto& I = *impl_;
  Conn* c = static_cast<Conn*>(p);
  const size_t len = c->head.head_bytes + c->head.body_bytes;
  bool closed = false, ok = false;
  {
    BufferedStream s(c->fd, c->buf.data(), len, I.lim.write_timeout);
    tl_client_fd = c->fd;
    ok = process_request(s, /*close_connection=*/I.stopping.load() || c->head.close, closed,
                         nullptr);
    tl_client_fd = -1;
  }
  c->buf.erase(0, len);
  if (!ok || closed || c->head.close || I.stopping) I.close_conn(c);
  std::lock_guard lk(I.mu);
  if (I.poller_gone) {
    I.close_conn(c);
    delete c;
    return;
  }
  I.returned.push_back(c);
  I.wake();
}

FrontCounters HttpFront::counters() const {
  const auto& I = *impl_;
  return {I.accepted.load(), I.refused.load(),  I.evicted.load(),
          I.timeouts.load(), I.rejected.load(), I.open.load()};
}

int connections_for_fd_limit(long long hard_limit) {
  if (hard_limit < 0) return 4096;  // RLIM_INFINITY
  return int(std::clamp<long long>(hard_limit - kFdReserve, 64, 4096));
}

bool current_client_gone() { return tl_client_fd >= 0 && peer_gone(tl_client_fd); }

}  // namespace nestedfp::server
