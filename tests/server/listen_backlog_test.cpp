// The listening socket's backlog (http_front.hpp, FrontLimits::listen_backlog). httplib listens
// with a backlog of 5; connects past the backlog lose their handshake and the client's kernel
// retries after 1 s, so bursts of new requests saw 1 s TTFTs (H200 trace replays, 2026-12-02).
// The backlog is read back through TCP_INFO; one behavioural test checks that a burst of connects
// completes with no accept loop running (Linux queues up to backlog + 1 handshakes).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <thread>
#include <vector>

#include "nestedfp/error.hpp"
#include "server/http_front.hpp"

namespace nestedfp::server {
namespace {

// Starts n non-blocking connects to 127.0.0.1:port and returns how many completed within wait.
int completed_connects(int port, int n, std::chrono::milliseconds wait) {
  std::vector<int> fds;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < n; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    EXPECT_GE(fd, 0);
    ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);  // EINPROGRESS
    fds.push_back(fd);
  }
  std::this_thread::sleep_for(wait);
  int done = 0;
  for (int fd : fds) {
    pollfd p{fd, POLLOUT, 0};
    int err = -1;
    socklen_t len = sizeof err;
    if (::poll(&p, 1, 0) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
        err == 0)
      ++done;
    ::close(fd);
  }
  return done;
}

int bound_front(HttpFront& f) {
  const int port = f.bind_to_any_port("127.0.0.1");
  EXPECT_GT(port, 0);
  return port;
}

int somaxconn() {
  std::ifstream f("/proc/sys/net/core/somaxconn");
  int v = 4096;
  f >> v;
  return v;
}

TEST(ListenBacklog, WideningLetsABurstOfConnectsCompleteWithoutAccept) {
  HttpFront f(FrontLimits{});
  const int port = bound_front(f);
  f.widen_listen_backlog();
  EXPECT_EQ(completed_connects(port, 64, std::chrono::milliseconds(200)), 64);
}

TEST(ListenBacklog, TheKernelHoldsTheConfiguredBacklog) {
  // Read back through TCP_INFO (no timing): httplib's own 5 until widened, then the limit.
  HttpFront f(FrontLimits{});
  EXPECT_EQ(f.listen_backlog(), -1);  // nothing bound yet
  bound_front(f);
  EXPECT_EQ(f.listen_backlog(), 5);
  f.widen_listen_backlog();
  EXPECT_EQ(f.listen_backlog(), std::min(4096, somaxconn()));

  FrontLimits lim;
  lim.listen_backlog = 16;
  HttpFront g(lim);
  bound_front(g);
  g.widen_listen_backlog();
  EXPECT_EQ(g.listen_backlog(), 16);
}

TEST(ListenBacklog, WideningBeforeBindOrANonPositiveBacklogIsAnError) {
  HttpFront f(FrontLimits{});
  EXPECT_THROW(f.widen_listen_backlog(), Error);
  FrontLimits lim;
  lim.listen_backlog = 0;
  EXPECT_THROW(HttpFront{lim}, Error);
}

TEST(ListenBacklog, ASecondServerCannotBindAPortInUse) {
  // SO_REUSEADDR instead of httplib's SO_REUSEPORT: the second bind fails, so `serve` reports the
  // port as taken instead of splitting connections between two processes.
  HttpFront a(FrontLimits{});
  const int port = bound_front(a);
  HttpFront b(FrontLimits{});
  EXPECT_FALSE(b.bind_to_port("127.0.0.1", port));
  EXPECT_EQ(b.listen_backlog(), -1);
}

}  // namespace
}  // namespace nestedfp::server
