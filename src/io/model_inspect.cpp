// inspect_model: eligibility of every linear layer for the nested format, checked in parallel
// over tensors (the checks read every weight once; for an 8B model that is 16 GB).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"
#include "nestedfp/inspect.hpp"

namespace nestedfp::io {

const char* to_string(TensorKind k) {
  switch (k) {
    case TensorKind::Linear: return "linear";
    case TensorKind::Embedding: return "embedding";
    case TensorKind::LmHead: return "lm_head";
    case TensorKind::Other: return "other";
  }
  return "?";
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_float(DType d) { return d == DType::F16 || d == DType::BF16 || d == DType::F32; }

void inspect_one(const TensorView& t, format::ScaleMode mode, TensorInspection& out) {
  out.name = t.name;
  out.file = t.file;
  out.kind = classify_tensor(t.name, t.shape.size());
  out.dtype = t.dtype;
  out.shape = t.shape;
  out.numel = t.numel();
  out.bytes = t.nbytes;
  if (out.kind == TensorKind::Other) {
    out.reason = out.shape.size() == 2 ? "not a *_proj linear weight" : "not a linear weight";
    return;
  }
  if (!is_float(t.dtype)) {
    out.reason = std::string("dtype ") + dtype_name(t.dtype) + " is not FP16/BF16/F32";
    return;
  }
  // FP16 data that is 2-byte aligned in the map is read in place (no copy of large tensors).
  std::vector<uint16_t> converted;
  const uint16_t* w = nullptr;
  if (t.dtype == DType::F16 && reinterpret_cast<uintptr_t>(t.data) % alignof(uint16_t) == 0) {
    w = reinterpret_cast<const uint16_t*>(t.data);
  } else {
    converted = to_fp16(t, &out.conversion);
    w = converted.data();
  }
  float m = 0.f;
  for (int64_t i = 0; i < out.numel; ++i) {
    const uint16_t h = w[i];
    const float a = std::fabs(fp16_to_float(h));
    if (a > m) m = a;  // NaN compares false and is skipped; check() reports it
  }
  out.max_abs = m;
  if (out.kind != TensorKind::Linear) {
    out.reason = "lm_head and embeddings are never nested";
    return;
  }
  const int64_t rows = t.shape[0], cols = t.shape[1];
  auto run = [&](format::ScaleMode md, std::string& reason) {
    try {
      format::Eligibility e = format::check(w, rows, cols, md);
      if (!e.ok) reason = e.reason.empty() ? "not representable" : e.reason;
      if (e.ok && md == format::ScaleMode::Channel) {
        out.k_min = e.k_min;
        out.k_max = e.k_max;
      }
      return e.ok;
    } catch (const Error& err) {
      reason = err.what();
      return false;
    }
  };
  out.nestable_none = run(format::ScaleMode::None, out.reason_none);
  out.nestable_channel = run(format::ScaleMode::Channel, out.reason_channel);
  if (out.conversion.overflow) {  // an infinity cannot be nested; say where it came from
    out.nestable_none = out.nestable_channel = false;
    const std::string why = std::to_string(out.conversion.overflow) +
                            " values overflow FP16 when converted from " + dtype_name(t.dtype);
    out.reason_none = out.reason_channel = why;
  }
  out.nested = mode == format::ScaleMode::Channel ? out.nestable_channel : out.nestable_none;
  if (!out.nested)
    out.reason = mode == format::ScaleMode::Channel ? out.reason_channel : out.reason_none;
}

}  // namespace

TensorKind classify_tensor(const std::string& name, size_t rank) {
  if (rank != 2) return TensorKind::Other;
  if (name.find("lm_head") != std::string::npos) return TensorKind::LmHead;
  if (name.find("embed") != std::string::npos || ends_with(name, "wte.weight"))
    return TensorKind::Embedding;
  if (ends_with(name, "_proj.weight")) return TensorKind::Linear;
  return TensorKind::Other;
}

ModelInspection inspect_model(const std::string& dir, format::ScaleMode mode,
                              const std::function<void(uint64_t, uint64_t)>& progress) {
  const WeightStore ws = WeightStore::open_dir(dir);
  const std::vector<std::string> names = ws.names();
  ModelInspection mi;
  mi.dir = dir;
  mi.mode = mode;
  mi.tensors.resize(names.size());

  // Largest tensors first so one big tensor does not finish last on a single thread.
  std::vector<size_t> order(names.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return ws.get(names[a]).nbytes > ws.get(names[b]).nbytes;
  });
  const uint64_t total = ws.total_bytes();
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> done_bytes{0};
  std::mutex mu;
  std::condition_variable cv;
  size_t finished = 0;
  std::exception_ptr first_error;
  auto worker = [&] {
    for (size_t j; (j = next.fetch_add(1)) < order.size();) {
      const size_t i = order[j];
      const TensorView& t = ws.get(names[i]);
      std::exception_ptr err;
      try {
        inspect_one(t, mode, mi.tensors[i]);
      } catch (...) {
        err = std::current_exception();
      }
      done_bytes += t.nbytes;
      std::lock_guard lk(mu);
      if (err && !first_error) first_error = err;
      ++finished;
      cv.notify_one();
    }
  };
  const unsigned nthreads =
      std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(), 16));
  std::vector<std::thread> pool;
  for (unsigned i = 0; i < std::min<size_t>(nthreads, names.size()); ++i) pool.emplace_back(worker);
  {
    std::unique_lock lk(mu);
    while (finished < names.size()) {
      cv.wait_for(lk, std::chrono::milliseconds(200));
      if (progress) {
        lk.unlock();
        progress(done_bytes.load(), total);
        lk.lock();
      }
    }
  }
  for (auto& th : pool) th.join();
  if (first_error) std::rethrow_exception(first_error);

  for (const TensorInspection& t : mi.tensors) {
    mi.fp16_bytes += is_float(t.dtype) ? uint64_t(t.numel) * 2 : t.bytes;
    mi.conversion_overflow += t.conversion.overflow;
    mi.conversion_inexact += t.conversion.inexact;
    if (t.kind != TensorKind::Linear) continue;
    ++mi.linear_layers;
    if (!t.nested) continue;
    ++mi.layers_nested;
    mi.nested_params += t.numel;
    mi.nested_rows += t.shape[0];
  }
  mi.fp16_plus_fp8_bytes = mi.fp16_bytes + uint64_t(mi.nested_params);
  mi.nested_bytes =
      mi.fp16_bytes + (mode == format::ScaleMode::Channel ? uint64_t(mi.nested_rows) : 0);
  return mi;
}

}  // namespace nestedfp::io
