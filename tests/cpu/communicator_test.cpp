// The in-process communicator group (docs/DESIGN.md §3.14): exact sums in rank order whatever the
// thread timing, and failures that reach every rank instead of leaving it blocked.
#include "nestedfp/communicator.hpp"

#include <gtest/gtest.h>

#include <future>
#include <random>
#include <thread>

#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"

using namespace nestedfp;
using namespace std::chrono_literals;

namespace {

// Runs fn(rank) on one thread per rank; fails the test (instead of hanging) after 20 s.
template <typename F>
std::vector<std::string> on_ranks(int n, F fn) {
  std::vector<std::string> errors(static_cast<size_t>(n));
  auto all = std::async(std::launch::async, [&] {
    std::vector<std::thread> ts;
    for (int r = 0; r < n; ++r)
      ts.emplace_back([&, r] {
        try {
          fn(r);
        } catch (const std::exception& e) {
          errors[size_t(r)] = e.what();
        }
      });
    for (auto& t : ts) t.join();
  });
  if (all.wait_for(20s) != std::future_status::ready) {
    ADD_FAILURE() << "ranks still blocked after 20 s";
    std::abort();  // the threads reference this frame: no clean way out
  }
  return errors;
}

}  // namespace

TEST(InProcessCommunicator, Fp32SumsInRankOrder) {
  // Rank order matters in fp32: ((1e8 + 1) - 1e8) + 1 = 1, while (1e8 - 1e8) + 1 + 1 = 2.
  const std::vector<float> vals = {1e8f, 1.f, -1e8f, 1.f};
  auto comms = backend::make_inprocess_group(4);
  std::vector<float> got(4, -1.f);
  std::mt19937 rng(3);
  std::vector<int> delay_us(4);
  for (int round = 0; round < 20; ++round) {
    for (auto& d : delay_us) d = int(rng() % 500);  // a different arrival order each round
    const auto errs = on_ranks(4, [&](int r) {
      auto be = backend::make_cpu_backend(1);
      auto buf = be->alloc(8);
      const float x[2] = {vals[size_t(r)], float(r)};
      be->upload(*buf, x, 8);
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us[size_t(r)]));
      comms[size_t(r)]->all_reduce_sum(*be, *buf, 2, backend::ElemType::F32);
      float y[2];
      be->download(y, *buf, 8);
      got[size_t(r)] = y[0];
      if (y[1] != 6.f) throw std::runtime_error("second element wrong");
    });
    for (const auto& e : errs) ASSERT_EQ(e, "");
    for (float g : got) ASSERT_EQ(g, 1.f) << "round " << round;
  }
}

TEST(InProcessCommunicator, MaxIsTheSameOnEveryRank) {
  const int n = 3, len = 5;
  auto comms = backend::make_inprocess_group(n);
  std::vector<std::vector<float>> got(n);
  const auto errs = on_ranks(n, [&](int r) {
    auto be = backend::make_cpu_backend(1);
    auto buf = be->alloc(len * 4);
    const float x[len] = {float(r), -float(r), r == 1 ? 7.f : 0.f, 0.5f, r == 2 ? 1e-30f : 0.f};
    be->upload(*buf, x, sizeof x);
    comms[size_t(r)]->all_reduce_max(*be, *buf, len);
    got[size_t(r)].resize(len);
    be->download(got[size_t(r)].data(), *buf, len * 4);
  });
  for (const auto& e : errs) ASSERT_EQ(e, "");
  for (const auto& g : got) EXPECT_EQ(g, (std::vector<float>{2.f, 0.f, 7.f, 0.5f, 1e-30f}));
}

// Ranks that call different collectives (a sum and a max, fp16 and fp32) fail, naming both,
// instead of mixing their data.
TEST(InProcessCommunicator, RanksMustCallTheSameCollective) {
  auto comms = backend::make_inprocess_group(2);
  const auto errs = on_ranks(2, [&](int r) {
    auto be = backend::make_cpu_backend(1);
    auto buf = be->alloc(16);
    const float x[4] = {1, 2, 3, 4};
    be->upload(*buf, x, sizeof x);
    if (r == 0)
      comms[0]->all_reduce_max(*be, *buf, 4);
    else
      comms[1]->all_reduce_sum(*be, *buf, 4, backend::ElemType::F32);
  });
  for (const auto& e : errs) {
    EXPECT_NE(e.find("all_reduce_max"), std::string::npos) << e;
    EXPECT_NE(e.find("all_reduce_sum (fp32)"), std::string::npos) << e;
  }
}

TEST(InProcessCommunicator, Fp16SumsRoundOnce) {
  // Each rank holds 64 fp16 values; the result is fp16 of the fp32 rank-order sum.
  const int n = 4, len = 64;
  std::vector<std::vector<uint16_t>> in(n, std::vector<uint16_t>(len));
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (auto& v : in)
    for (auto& h : v) h = float_to_fp16(nd(rng));
  std::vector<uint16_t> want(len);
  for (int i = 0; i < len; ++i) {
    float s = 0.f;
    for (int r = 0; r < n; ++r) s += fp16_to_float(in[size_t(r)][size_t(i)]);
    want[size_t(i)] = float_to_fp16(s);
  }
  auto comms = backend::make_inprocess_group(n);
  std::vector<std::vector<uint16_t>> out(n, std::vector<uint16_t>(len));
  const auto errs = on_ranks(n, [&](int r) {
    auto be = backend::make_cpu_backend(1);
    auto buf = be->alloc(len * 2);
    be->upload(*buf, in[size_t(r)].data(), len * 2);
    comms[size_t(r)]->all_reduce_sum(*be, *buf, len, backend::ElemType::F16);
    be->download(out[size_t(r)].data(), *buf, len * 2);
  });
  for (const auto& e : errs) ASSERT_EQ(e, "");
  for (int r = 0; r < n; ++r) EXPECT_EQ(out[size_t(r)], want) << "rank " << r;
  // Not just rank 0's values passed through.
  EXPECT_NE(want, in[0]);
}

TEST(InProcessCommunicator, AbortReachesEveryRank) {
  auto comms = backend::make_inprocess_group(3, 60s);
  const auto errs = on_ranks(3, [&](int r) {
    if (r == 1) {  // fails before its collective, as a rank that throws mid-step does
      std::this_thread::sleep_for(50ms);
      comms[1]->abort("rank 1 failed: out of memory");
      throw std::runtime_error("out of memory");
    }
    comms[size_t(r)]->barrier();
  });
  for (int r : {0, 2}) {
    EXPECT_NE(errs[size_t(r)].find("rank 1 failed: out of memory"), std::string::npos)
        << errs[size_t(r)];
  }
  // Later collectives fail at once too.
  EXPECT_THROW(comms[0]->barrier(), Error);
}

TEST(InProcessCommunicator, MissingRankTimesOutWithAClearError) {
  auto comms = backend::make_inprocess_group(2, 200ms);
  const auto t0 = std::chrono::steady_clock::now();
  const auto errs = on_ranks(2, [&](int r) {
    if (r == 0) comms[0]->barrier();  // rank 1 never comes
  });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_NE(errs[0].find("waited 200 ms"), std::string::npos) << errs[0];
}

TEST(InProcessCommunicator, RanksMustAgreeOnTheLength) {
  auto comms = backend::make_inprocess_group(2);
  const auto errs = on_ranks(2, [&](int r) {
    auto be = backend::make_cpu_backend(1);
    auto buf = be->alloc(64);
    comms[size_t(r)]->all_reduce_sum(*be, *buf, r == 0 ? 4 : 8, backend::ElemType::F32);
  });
  for (const auto& e : errs)
    EXPECT_NE(e.find("rank 0 reduces 4 elements but rank 1 reduces 8"), std::string::npos) << e;
}
