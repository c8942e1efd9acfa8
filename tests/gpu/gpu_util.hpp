#pragma once
// Helpers for the GPU tests: device buffers, fresh random data, poisoning, error norms.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "backend/cuda/kernels.hpp"
#include "nestedfp/half.hpp"

namespace nestedfp::gputest {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    NFP_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)));
  }
  explicit DeviceBuffer(const std::vector<T>& v) : DeviceBuffer(v.size()) { upload(v); }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& v) {
    NFP_CUDA_CHECK(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    NFP_CUDA_CHECK(cudaDeviceSynchronize());  // surfaces asynchronous kernel faults here
    NFP_CUDA_CHECK(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  // 0xFF bytes: NaN for fp16/fp32, 0xFF for bytes; an unwritten output cannot pass a check.
  void poison() { NFP_CUDA_CHECK(cudaMemset(p_, 0xFF, n_ * sizeof(T))); }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// A fresh seed per run (printed on failure through SCOPED_TRACE by the callers).
inline uint64_t fresh_seed() {
  static std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd();
}

// Random fp16 bits: N(0, 1) · 2^u with a per-row magnitude u in [lo, hi], never all zero.
inline std::vector<uint16_t> random_rows(std::mt19937_64& rng, int rows, int cols, float lo,
                                         float hi) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(lo, hi);
  std::vector<uint16_t> v(size_t(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    const float mag = std::exp2(ud(rng));
    for (int c = 0; c < cols; ++c) {
      float x = nd(rng) * mag;
      if (x == 0.f) x = mag;
      v[size_t(r) * cols + c] = float_to_fp16(x);
    }
  }
  return v;
}

inline float h2f(uint16_t h) { return fp16_to_float(h); }

// ‖out − ref‖ / ‖ref‖, NaN when any output is not finite.
inline double rel_error(const std::vector<uint16_t>& out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double o = h2f(out[i]);
    if (!std::isfinite(o)) return NAN;
    num += (o - ref[i]) * (o - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

// Largest |out − ref| relative to max|ref| (catches a wrong tile that the norm would dilute).
inline double max_error_over_max(const std::vector<uint16_t>& out, const std::vector<double>& ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e = std::max(e, std::fabs(double(h2f(out[i])) - ref[i]));
    m = std::max(m, std::fabs(ref[i]));
  }
  return e / m;
}

inline const __half* as_half(const uint16_t* p) { return reinterpret_cast<const __half*>(p); }
inline __half* as_half(uint16_t* p) { return reinterpret_cast<__half*>(p); }

}  // namespace nestedfp::gputest
