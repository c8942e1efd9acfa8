// `nestedfp tune`'s shapes and argument checks (tune_shapes.hpp).
#include "bench/tune_shapes.hpp"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "engine/tensor_parallel.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::bench {

std::vector<GemmShape> model_gemm_shapes(const io::ModelConfig& full, int tp) {
  if (tp < 1) fail("--tp {}: must be >= 1", tp);
  const io::ModelConfig c = engine::shard_config(full, engine::TpShard{0, tp});
  const int H = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int q = c.num_heads * hd, kv = c.num_kv_heads * hd;
  const std::vector<GemmShape> all = {{q, H, "q_proj"},
                                      {kv, H, "k_proj"},
                                      {kv, H, "v_proj"},
                                      {H, q, "o_proj"},
                                      {I, H, "gate_proj"},
                                      {I, H, "up_proj"},
                                      {H, I, "down_proj"},
                                      {q + 2 * kv, H, "qkv_proj (fused)"},
                                      {2 * I, H, "gate_up_proj (fused)"}};
  std::vector<GemmShape> out;
  for (const auto& s : all) {
    if (s.N % 8 || s.K % 16) {
      spdlog::warn(
          "tune: {} {}x{} is not a nested GEMM shape (N % 8, K % 16); the engine keeps it "
          "FP16, not tuned",
          s.label, s.N, s.K);
      continue;
    }
    bool merged = false;
    for (auto& o : out)
      if (o.N == s.N && o.K == s.K) o.label += ", " + s.label, merged = true;
    if (!merged) out.push_back(s);
  }
  return out;
}

std::vector<GemmShape> parse_gemm_shapes(const std::string& s) {
  // Items are "N,K" separated by ';', or "NxK" separated by ',' or ';'.
  const bool x_form = s.find('x') != std::string::npos;
  std::vector<std::string> items;
  for (size_t p = 0;;) {
    const size_t e = s.find_first_of(x_form ? ",;" : ";", p);
    items.push_back(s.substr(p, e == std::string::npos ? std::string::npos : e - p));
    if (e == std::string::npos) break;
    p = e + 1;
  }
  if (!items.empty() && items.back().empty() && items.size() > 1) items.pop_back();  // "a;b;"
  std::vector<GemmShape> out;
  for (const auto& item : items) {
    const size_t sep = item.find(x_form ? 'x' : ',');
    int v[2] = {0, 0};
    try {
      if (sep == std::string::npos) throw std::invalid_argument(item);
      const std::string parts[2] = {item.substr(0, sep), item.substr(sep + 1)};
      for (int i = 0; i < 2; ++i) {
        size_t used = 0;
        v[i] = std::stoi(parts[i], &used);
        if (used != parts[i].size() || v[i] <= 0) throw std::invalid_argument(item);
      }
    } catch (const std::exception&) {
      fail(
          "--shapes '{}': bad item '{}' (want N,K;N,K;... with positive integers, e.g. "
          "4096,4096;4096,14336)",
          s, item);
    }
    if (v[0] % 8 || v[1] % 16)
      fail("--shapes: {}x{}: the nested GEMMs need N % 8 == 0 and K % 16 == 0", v[0], v[1]);
    bool dup = false;
    for (const auto& o : out) dup |= o.N == v[0] && o.K == v[1];
    if (!dup) out.push_back({v[0], v[1], std::to_string(v[0]) + "x" + std::to_string(v[1])});
  }
  return out;
}

std::vector<GemmShape> tune_shapes(const TuneShapeArgs& a) {
  if (a.model.empty() == a.shapes.empty())
    fail("tune: give exactly one of --model DIR (its linear layers) or --shapes N,K;...");
  if (!a.shapes.empty()) {
    if (a.tp != 1)
      fail(
          "tune: --tp {} applies to --model (it shards the model's layers); --shapes are taken "
          "as they are",
          a.tp);
    return parse_gemm_shapes(a.shapes);
  }
  return model_gemm_shapes(io::load_config(a.model), a.tp);
}

}  // namespace nestedfp::bench
