// More connections than select() could watch: every path of the front end polls, and Debian's
// httplib 0.11 is built with poll, so descriptors past 1024 are served (http_front.hpp). The
// front end raises the soft open-file limit it needs and says so when the hard limit is too low.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "nestedfp/error.hpp"
#include "server/http_front.hpp"

namespace nestedfp::server {
namespace {

int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends one GET on fd and returns what arrives within 5 s (until the body "pong" is seen).
std::string get_ping(int fd) {
  const std::string req = "GET /ping HTTP/1.1\r\nHost: t\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != ssize_t(req.size())) return "";
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (got.find("pong") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, size_t(n));
  }
  return got;
}

TEST(ManyConnections, ConnectionsPastDescriptor1024AreAcceptedAndServed) {
  // Both ends live in this process: 1200 client sockets and 1200 accepted ones.
  constexpr int kConns = 1200;
  rlimit r{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &r), 0);
  const rlim_t need = 3000;
  if (r.rlim_max != RLIM_INFINITY && r.rlim_max < need)
    GTEST_SKIP() << "the open-file hard limit " << r.rlim_max << " is below " << need;
  if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < need) {
    r.rlim_cur = need;
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &r), 0);
  }
  FrontLimits lim;
  lim.max_connections = 1500;
  lim.worker_threads = 4;
  lim.probe_threads = 1;
  HttpFront f(lim);
  f.Get("/ping", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("pong", "text/plain");
  });
  const int port = f.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  f.widen_listen_backlog();
  std::thread loop([&] { f.listen_after_bind(); });

  std::vector<int> fds;
  for (int i = 0; i < kConns; ++i) {
    const int fd = connect_to(port);
    ASSERT_GE(fd, 0) << "connect " << i << " failed";
    fds.push_back(fd);
  }
  EXPECT_GT(fds.back(), 1024);  // and the server's accepted descriptors lie beyond them
  for (int i = 0; i < 100 && f.counters().connections_accepted < uint64_t(kConns); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const FrontCounters c = f.counters();
  EXPECT_EQ(c.connections_accepted, uint64_t(kConns));
  EXPECT_EQ(c.connections_refused, 0u);
  EXPECT_EQ(c.connections_evicted, 0u);
  // The newest connections carry the highest descriptors on both ends.
  for (int k = 1; k <= 3; ++k) {
    const std::string got = get_ping(fds[fds.size() - size_t(k)]);
    EXPECT_NE(got.find("200 OK"), std::string::npos) << got;
    EXPECT_NE(got.find("pong"), std::string::npos) << got;
  }
  for (int fd : fds) ::close(fd);
  f.stop();
  loop.join();
  f.shutdown_front();
}

TEST(ManyConnections, TheDefaultFollowsTheHardOpenFileLimit) {
  EXPECT_EQ(connections_for_fd_limit(-1), 4096);  // unlimited
  EXPECT_EQ(connections_for_fd_limit(1 << 20), 4096);
  EXPECT_EQ(connections_for_fd_limit(1024), 1024 - kFdReserve);
  EXPECT_EQ(connections_for_fd_limit(100), 64);  // a floor; the front end then says what is wrong
}

TEST(ManyConnections, TheFrontEndRaisesTheSoftLimitItNeeds) {
  rlimit r{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &r), 0);
  const rlimit saved = r;
  if (r.rlim_max != RLIM_INFINITY && r.rlim_max < rlim_t(1000 + kFdReserve))
    GTEST_SKIP() << "the open-file hard limit " << r.rlim_max << " is too low";
  r.rlim_cur = 512;  // as a shell with `ulimit -Sn 512` would start it
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &r), 0);
  FrontLimits lim;
  lim.max_connections = 1000;
  { HttpFront f(lim); }
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &r), 0);
  EXPECT_GE(r.rlim_cur, rlim_t(1000 + kFdReserve));
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
}

TEST(ManyConnections, ImpossibleLimitsAreRefusedWithAReason) {
  FrontLimits lim;
  lim.max_connections = kMaxConnectionsCap + 1;
  EXPECT_THROW(HttpFront{lim}, Error);
  lim.max_connections = 1;
  EXPECT_THROW(HttpFront{lim}, Error);
  rlimit r{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &r), 0);
  if (r.rlim_max != RLIM_INFINITY && r.rlim_max + 1 <= rlim_t(kMaxConnectionsCap)) {
    lim.max_connections = int(r.rlim_max);  // + kFdReserve is past the hard limit
    try {
      HttpFront f(lim);
      ADD_FAILURE() << "a limit past the hard open-file limit was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("hard limit"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace nestedfp::server
