#include "engine/layer_error.hpp"

#include <cmath>
#include <map>
#include <utility>

#include "engine/model_runner.hpp"
#include "engine/offline.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/half.hpp"

namespace nestedfp::engine {

const std::vector<Fp8Mode>& fp8_modes() {
  static const std::vector<Fp8Mode> modes = {
      {"nested-none", LinearStorage::Nested, format::ScaleMode::None},
      {"nested-channel", LinearStorage::Nested, format::ScaleMode::Channel},
      {"fp8-per-tensor", LinearStorage::Fp8PerTensor, format::ScaleMode::None},
      {"fp8-per-channel", LinearStorage::Fp8PerChannel, format::ScaleMode::None},
  };
  return modes;
}

namespace {

constexpr const char* kLinears[] = {"q", "k", "v", "o", "gate", "up", "down"};

const HostLinear& host_linear(const HostLayer& L, const std::string& name) {
  if (name == "q") return L.q;
  if (name == "k") return L.k;
  if (name == "v") return L.v;
  if (name == "o") return L.o;
  if (name == "gate") return L.gate;
  if (name == "up") return L.up;
  return L.down;
}

std::vector<uint16_t> fp16_of(const HostLinear& l) {
  if (l.nested) return format::unscale_merge_tensor(*l.nested);
  if (l.fp8) fail("eval layers: {} is stored as FP8; load the model in the nested format", l.name);
  return l.fp16;
}

double rel_error(const std::vector<uint16_t>& y, const std::vector<uint16_t>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double r = fp16_to_float(ref[i]), d = double(fp16_to_float(y[i])) - r;
    num += d * d, den += r * r;
  }
  return den > 0 ? std::sqrt(num / den) : 0.0;
}

}  // namespace

LayerErrorReport layer_errors(const ModelWeights& weights, std::span<const int32_t> ids, int chunks,
                              int chunk_len, const backend::BackendOptions& device) {
  if (weights.storage != LinearStorage::Nested)
    fail("eval layers needs the model loaded in the nested format");
  const int available = int(ids.size() / size_t(chunk_len));
  if (chunks <= 0 || available == 0)
    fail("eval layers: the text has {} tokens, fewer than one chunk of {}", ids.size(), chunk_len);
  chunks = std::min(chunks, available);

  RunnerOptions opt;
  opt.num_kv_blocks = (chunk_len + kKvBlockSize - 1) / kKvBlockSize;
  opt.max_model_len = std::max(chunk_len, weights.config.max_position_embeddings);
  opt.max_num_batched_tokens = chunk_len;
  opt.max_num_seqs = 1;
  ModelRunner runner(backend::make_backend(device), weights, opt);
  backend::Backend& be = runner.backend();

  // Capture: (layer, linear) -> fp16 inputs of all chunks, [tokens, in_features].
  std::map<std::pair<int, std::string>, std::vector<uint16_t>> inputs;
  runner.set_linear_tap([&](int layer, const char* name, const backend::Activation& x, int64_t M) {
    if (!x.f16) fail("eval layers: linear input without fp16 activations");
    const int64_t K = host_linear(weights.layers[size_t(layer)], name).cols;
    auto& dst = inputs[{layer, name}];
    const size_t old = dst.size();
    dst.resize(old + size_t(M * K));
    be.download(dst.data() + old, *x.f16, size_t(M * K) * 2);
  });
  for (int c = 0; c < chunks; ++c) {
    SingleSequence seq(runner);
    seq.feed(ids.subspan(size_t(c) * chunk_len, size_t(chunk_len)), Precision::FP16);
  }
  runner.set_linear_tap({});

  LayerErrorReport rep;
  rep.chunks = chunks;
  rep.tokens = int64_t(chunks) * chunk_len;
  const auto& modes = fp8_modes();
  rep.mean_rel_error.assign(modes.size(), 0.0);
  const int64_t M = rep.tokens;
  for (size_t li = 0; li < weights.layers.size(); ++li) {
    for (const char* name : kLinears) {
      const HostLinear& hl = host_linear(weights.layers[li], name);
      const int64_t N = hl.rows, K = hl.cols;
      const std::vector<uint16_t>& x = inputs.at({int(li), name});
      auto x16 = be.alloc(x.size() * 2), q8 = be.alloc(x.size()), scale = be.alloc(size_t(M) * 4);
      auto y = be.alloc(size_t(M * N) * 2);
      be.upload(*x16, x.data(), x.size() * 2);
      be.quantize(*x16, M, K, *q8, *scale);
      const backend::Activation act{x16.get(), q8.get(), scale.get()};
      const std::vector<uint16_t> w16 = fp16_of(hl);
      auto run = [&](const HostLinear& l, Precision p) {
        HostLinear copy = l;
        copy.bias = hl.bias;
        auto lw = upload_linear(be, copy);
        be.linear(p, *lw, act, M, *y);
        be.synchronize();
        std::vector<uint16_t> out(size_t(M * N));
        be.download(out.data(), *y, out.size() * 2);
        return out;
      };
      const auto ref =
          run(make_linear(hl.name, w16, N, K, format::ScaleMode::None, false), Precision::FP16);
      LinearError e{int(li), name, N, K, {}, {}};
      for (size_t m = 0; m < modes.size(); ++m) {
        const HostLinear v =
            make_linear(hl.name, w16, N, K, modes[m].scale, true, modes[m].storage);
        e.fp8.push_back(v.nested.has_value() || v.fp8.has_value());
        e.rel_error.push_back(rel_error(run(v, Precision::FP8), ref));
        rep.mean_rel_error[m] += e.rel_error.back();
      }
      rep.linears.push_back(std::move(e));
    }
  }
  for (double& m : rep.mean_rel_error) m /= double(rep.linears.size());
  return rep;
}

}  // namespace nestedfp::engine
