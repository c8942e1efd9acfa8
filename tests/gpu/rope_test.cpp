// rope_inplace against the cpu backend's RoPE, recomputed on the host step by step, for the
// default, llama3 and linear frequency scalings: bit for bit. Every step is an IEEE operation
// done identically on both sides (fp32 angle, fp16 roundings, exact fp32 products, one fp32 add)
// except cos/sin of the angle in double, where the device's result is within 2 ulp of double: it
// can change the float (hence fp16) rounding only with probability ~2^-28 per value.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "backend/cuda/ops.hpp"
#include "gpu_util.hpp"
#include "nestedfp/backend.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::gputest {
namespace {

// inv_freq as the cpu backend's create_rope computes it (kept separate from the library helper
// on purpose: the test checks rope_inv_freq against it).
std::vector<float> host_inv_freq(const backend::RopeSpec& s) {
  const int half = s.head_dim / 2;
  std::vector<float> f(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i)
    f[size_t(i)] = 1.f / std::pow(float(s.theta), float(2 * i) / float(s.head_dim));
  if (s.scaling == "linear") {
    for (auto& v : f) v = float(v / s.factor);
  } else if (s.scaling == "llama3") {
    const double old_len = s.original_max_position_embeddings;
    for (auto& v : f) {
      const double wl = 2 * std::numbers::pi / v;
      if (wl > old_len / s.low_freq_factor) {
        v = float(v / s.factor);
      } else if (wl >= old_len / s.high_freq_factor) {
        const double smooth =
            (old_len / wl - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        v = float((1 - smooth) * v / s.factor + smooth * v);
      }
    }
  }
  return f;
}

void host_rope(std::vector<uint16_t>& x, int M, int heads, int hd, const std::vector<int32_t>& pos,
               const std::vector<float>& inv) {
  const int half = hd / 2;
  const auto r16 = [](float v) { return h2f(float_to_fp16(v)); };
  for (int m = 0; m < M; ++m) {
    std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
    for (int i = 0; i < half; ++i) {
      const float f = inv[size_t(i)] * float(pos[size_t(m)]);
      c[size_t(i)] = r16(float(std::cos(double(f))));
      s[size_t(i)] = r16(float(std::sin(double(f))));
    }
    for (int h = 0; h < heads; ++h) {
      uint16_t* p = x.data() + (size_t(m) * heads + h) * hd;
      for (int i = 0; i < half; ++i) {
        const float x1 = h2f(p[i]), x2 = h2f(p[i + half]);
        p[i] = float_to_fp16(r16(x1 * c[size_t(i)]) + r16(-x2 * s[size_t(i)]));
        p[i + half] = float_to_fp16(r16(x2 * c[size_t(i)]) + r16(x1 * s[size_t(i)]));
      }
    }
  }
}

backend::RopeSpec spec_of(const std::string& scaling, int hd) {
  backend::RopeSpec s;
  s.head_dim = hd;
  s.scaling = scaling;
  if (scaling == "llama3") {
    s.theta = 500000.0, s.factor = 8.0, s.low_freq_factor = 1.0, s.high_freq_factor = 4.0;
    s.original_max_position_embeddings = 8192;
  } else if (scaling == "linear") {
    s.theta = 10000.0, s.factor = 4.0;
  } else {
    s.theta = 1000000.0;
  }
  return s;
}

TEST(Rope, InvFreqHelperMatchesCpuFormula) {
  for (const char* sc : {"default", "llama3", "linear"})
    for (int hd : {64, 128, 36}) {
      const auto s = spec_of(sc, hd);
      EXPECT_EQ(backend::rope_inv_freq(s), host_inv_freq(s)) << sc << " head_dim " << hd;
    }
  // llama3 really rescales: the lowest frequency is divided by the factor, the highest kept.
  const auto l3 = backend::rope_inv_freq(spec_of("llama3", 128)), d = host_inv_freq([] {
                                                                    auto s = spec_of("llama3", 128);
                                                                    s.scaling = "default";
                                                                    return s;
                                                                  }());
  EXPECT_EQ(l3.front(), d.front());
  EXPECT_EQ(l3.back(), float(d.back() / 8.0));
  EXPECT_THROW(backend::rope_inv_freq(spec_of("yarn", 128)), Error);
  EXPECT_THROW(backend::rope_inv_freq(spec_of("default", 63)), Error);
}

TEST(Rope, MatchesCpuBackendBitForBit) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  struct Case {
    const char* scaling;
    int hd, nq, nkv, M, off;
  };
  // off = 1: q and k start one element in, so the 16-byte path is off; hd 36 (half 18) and 20
  // never take it.
  const Case cases[] = {{"default", 128, 32, 8, 67, 0}, {"llama3", 128, 32, 8, 19, 0},
                        {"linear", 64, 12, 4, 33, 0},   {"default", 64, 8, 8, 5, 1},
                        {"llama3", 36, 6, 2, 9, 0},     {"default", 256, 4, 1, 3, 0},
                        {"linear", 20, 3, 1, 7, 0}};
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << c.scaling << " hd " << c.hd << " nq " << c.nq << " nkv "
                                    << c.nkv << " M " << c.M << " offset " << c.off);
    const auto inv = host_inv_freq(spec_of(c.scaling, c.hd));
    std::vector<int32_t> pos(size_t(c.M));
    for (auto& p : pos) p = int32_t(rng() % 131072);
    pos[0] = 0;
    if (c.M > 1) pos[1] = 131071;
    auto q = random_rows(rng, c.M * c.nq, c.hd, -2.f, 3.f),
         k = random_rows(rng, c.M * c.nkv, c.hd, -2.f, 3.f);
    std::vector<uint16_t> qpad(q.size() + 8), kpad(k.size() + 8);
    std::copy(q.begin(), q.end(), qpad.begin() + c.off);
    std::copy(k.begin(), k.end(), kpad.begin() + c.off);
    DeviceBuffer<uint16_t> dq(qpad), dk(kpad);
    DeviceBuffer<int32_t> dp(pos);
    DeviceBuffer<float> di(inv);
    cuda::rope_inplace(as_half(dq.get() + c.off), as_half(dk.get() + c.off), dp.get(), di.get(),
                       c.M, c.nq, c.nkv, c.hd, nullptr);
    const auto gq = dq.download(), gk = dk.download();
    host_rope(q, c.M, c.nq, c.hd, pos, inv);
    host_rope(k, c.M, c.nkv, c.hd, pos, inv);
    std::vector<uint16_t> wq(qpad.size()), wk(kpad.size());
    std::copy(q.begin(), q.end(), wq.begin() + c.off);
    std::copy(k.begin(), k.end(), wk.begin() + c.off);
    size_t diff_q = 0, diff_k = 0;
    for (size_t i = 0; i < wq.size(); ++i) diff_q += gq[i] != wq[i];
    for (size_t i = 0; i < wk.size(); ++i) diff_k += gk[i] != wk[i];
    EXPECT_EQ(diff_q, 0u);
    EXPECT_EQ(diff_k, 0u);
  }
}

TEST(Rope, BadArgumentsThrow) {
  DeviceBuffer<uint16_t> q(64);
  DeviceBuffer<int32_t> p(1);
  DeviceBuffer<float> f(32);
  EXPECT_THROW(cuda::rope_inplace(as_half(q.get()), as_half(q.get()), p.get(), f.get(), 1, 1, 1, 63,
                                  nullptr),
               Error);
  EXPECT_THROW(
      cuda::rope_inplace(as_half(q.get()), nullptr, p.get(), f.get(), 1, 1, 1, 64, nullptr), Error);
}

}  // namespace
}  // namespace nestedfp::gputest
