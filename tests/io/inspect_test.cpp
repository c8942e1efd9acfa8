// inspect_model on the bundled tiny model and on a crafted directory with awkward tensors.
#include "nestedfp/inspect.hpp"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "io_test_util.hpp"
#include "nestedfp/config.hpp"
#include "nestedfp/half.hpp"

namespace nestedfp::io {
namespace {

const std::string kTiny = std::string(NESTEDFP_SOURCE_DIR) + "/models/pystd-16m";

std::map<std::string, const TensorInspection*> by_name(const ModelInspection& mi) {
  std::map<std::string, const TensorInspection*> m;
  for (auto& t : mi.tensors) m[t.name] = &t;
  return m;
}

TEST(Inspect, Classify) {
  EXPECT_EQ(classify_tensor("model.layers.3.self_attn.qkv_proj.weight", 2), TensorKind::Linear);
  EXPECT_EQ(classify_tensor("model.layers.3.mlp.gate_up_proj.weight", 2), TensorKind::Linear);
  EXPECT_EQ(classify_tensor("model.layers.3.self_attn.q_proj.bias", 1), TensorKind::Other);
  EXPECT_EQ(classify_tensor("model.layers.3.self_attn.q_proj.weight", 1), TensorKind::Other);
  EXPECT_EQ(classify_tensor("lm_head.weight", 2), TensorKind::LmHead);
  EXPECT_EQ(classify_tensor("model.embed_tokens.weight", 2), TensorKind::Embedding);
  EXPECT_EQ(classify_tensor("model.norm.weight", 1), TensorKind::Other);
}

TEST(Inspect, TinyModelNestsAll42LinearLayers) {
  const ModelConfig cfg = load_config(kTiny);
  for (auto mode : {format::ScaleMode::None, format::ScaleMode::Channel}) {
    SCOPED_TRACE(format::to_string(mode));
    uint64_t last_done = 0, last_total = 0;
    const ModelInspection mi =
        inspect_model(kTiny, mode, [&](uint64_t d, uint64_t t) { last_done = d, last_total = t; });
    EXPECT_EQ(last_done, last_total);
    EXPECT_GT(last_total, 0u);
    auto m = by_name(mi);

    std::set<std::string> expected;
    int64_t params = 0, rows = 0;
    const int64_t h = cfg.hidden_size, q = cfg.num_heads * cfg.head_dim,
                  kv = cfg.num_kv_heads * cfg.head_dim, f = cfg.intermediate_size;
    const std::pair<const char*, std::pair<int64_t, int64_t>> shapes[] = {
        {"self_attn.q_proj", {q, h}}, {"self_attn.k_proj", {kv, h}}, {"self_attn.v_proj", {kv, h}},
        {"self_attn.o_proj", {h, q}}, {"mlp.gate_proj", {f, h}},     {"mlp.up_proj", {f, h}},
        {"mlp.down_proj", {h, f}}};
    for (int l = 0; l < cfg.num_layers; ++l)
      for (auto& [suffix, shape] : shapes) {
        const std::string name = "model.layers." + std::to_string(l) + "." + suffix + ".weight";
        expected.insert(name);
        params += shape.first * shape.second;
        rows += shape.first;
        ASSERT_TRUE(m.count(name)) << name;
        const TensorInspection& t = *m[name];
        EXPECT_EQ(t.kind, TensorKind::Linear) << name;
        EXPECT_EQ(t.shape, (std::vector<int64_t>{shape.first, shape.second})) << name;
        EXPECT_TRUE(t.nested) << name << ": " << t.reason;
        EXPECT_TRUE(t.nestable_none && t.nestable_channel) << name;
        EXPECT_GT(t.max_abs, 0.f);
        EXPECT_LT(t.max_abs, 1.875f);
        EXPECT_LE(t.k_min, t.k_max);
        EXPECT_EQ(t.bytes, size_t(shape.first * shape.second * 2));
      }
    ASSERT_EQ(expected.size(), 42u);
    std::set<std::string> nested;
    for (auto& t : mi.tensors)
      if (t.nested) nested.insert(t.name);
    EXPECT_EQ(nested, expected);
    EXPECT_EQ(mi.linear_layers, 42);
    EXPECT_EQ(mi.layers_nested, 42);
    EXPECT_EQ(mi.nested_params, params);
    EXPECT_EQ(mi.nested_rows, rows);

    for (const char* name : {"lm_head.weight", "model.embed_tokens.weight"}) {
      ASSERT_TRUE(m.count(name)) << name;
      EXPECT_FALSE(m[name]->nested);
      EXPECT_EQ(m[name]->reason, "lm_head and embeddings are never nested");
    }
    EXPECT_EQ(m["lm_head.weight"]->kind, TensorKind::LmHead);
    EXPECT_EQ(m["model.embed_tokens.weight"]->kind, TensorKind::Embedding);

    // Every tensor is F16 on disk: 31,467,264 bytes (the index's total_size).
    EXPECT_EQ(mi.fp16_bytes, 31467264u);
    EXPECT_EQ(mi.fp16_plus_fp8_bytes, mi.fp16_bytes + uint64_t(params));
    EXPECT_EQ(mi.nested_bytes,
              mi.fp16_bytes + (mode == format::ScaleMode::Channel ? uint64_t(rows) : 0u));
  }
}

TEST(Inspect, CraftedModelReportsWhyLayersStayFp16) {
  test::TempDir d;
  auto f16 = [](float x) { return float_to_fp16(x); };
  auto bf16 = [](float x) { return float_to_bf16(x); };
  // q_proj: row 1 holds 2.5, nestable only with a per-row scale (k = -1); row 0 max 0.1 -> k = 4.
  const uint16_t q[8] = {f16(0.1f), f16(-0.05f), 0,         f16(0.01f),
                         f16(2.5f), f16(-1.0f),  f16(0.5f), f16(0.25f)};
  const uint16_t up[4] = {bf16(1.0f), bf16(-0.5f), bf16(0.25f), bf16(0.125f)};
  const uint16_t down[4] = {bf16(1.0f), bf16(65536.0f), bf16(0.5f), bf16(0.5f)};  // overflows FP16
  const uint16_t emb[6] = {f16(3.0f), 0, 0, 0, 0, 0};
  const uint16_t norm[2] = {f16(1.0f), f16(1.0f)};
  write_safetensors(d.file("model.safetensors"),
                    {{"model.layers.0.self_attn.q_proj.weight", DType::F16, {2, 4}, q, 16},
                     {"model.layers.0.mlp.up_proj.weight", DType::BF16, {2, 2}, up, 8},
                     {"model.layers.0.mlp.down_proj.weight", DType::BF16, {2, 2}, down, 8},
                     {"model.embed_tokens.weight", DType::F16, {3, 2}, emb, 12},
                     {"model.norm.weight", DType::F16, {2}, norm, 4}});

  const ModelInspection none = inspect_model(d.path.string(), format::ScaleMode::None);
  auto m = by_name(none);
  ASSERT_EQ(m.size(), 5u);
  const TensorInspection& tq = *m["model.layers.0.self_attn.q_proj.weight"];
  EXPECT_FALSE(tq.nestable_none);
  EXPECT_TRUE(tq.nestable_channel) << tq.reason_channel;
  EXPECT_FALSE(tq.nested);
  EXPECT_FALSE(tq.reason.empty());
  EXPECT_EQ(tq.max_abs, 2.5f);
  EXPECT_EQ(tq.k_min, -1);
  EXPECT_EQ(tq.k_max, 4);
  const TensorInspection& tu = *m["model.layers.0.mlp.up_proj.weight"];
  EXPECT_TRUE(tu.nested);
  EXPECT_EQ(tu.conversion.inexact + tu.conversion.overflow, 0);
  const TensorInspection& td = *m["model.layers.0.mlp.down_proj.weight"];
  EXPECT_FALSE(td.nestable_none || td.nestable_channel);
  EXPECT_EQ(td.conversion.overflow, 1);
  EXPECT_NE(td.reason.find("overflow"), std::string::npos) << td.reason;
  EXPECT_EQ(m["model.embed_tokens.weight"]->max_abs, 3.0f);
  EXPECT_FALSE(m["model.embed_tokens.weight"]->nested);
  EXPECT_EQ(m["model.norm.weight"]->kind, TensorKind::Other);

  EXPECT_EQ(none.linear_layers, 3);
  EXPECT_EQ(none.layers_nested, 1);
  EXPECT_EQ(none.nested_params, 4);
  EXPECT_EQ(none.fp16_bytes, 48u);  // BF16 counts at 2 bytes too
  EXPECT_EQ(none.fp16_plus_fp8_bytes, 52u);
  EXPECT_EQ(none.nested_bytes, 48u);
  EXPECT_EQ(none.conversion_overflow, 1);

  const ModelInspection ch = inspect_model(d.path.string(), format::ScaleMode::Channel);
  EXPECT_EQ(ch.layers_nested, 2);
  EXPECT_EQ(ch.nested_params, 12);
  EXPECT_EQ(ch.nested_rows, 4);
  EXPECT_EQ(ch.fp16_plus_fp8_bytes, 60u);
  EXPECT_EQ(ch.nested_bytes, 52u);  // planes + one int8 k per nested row
  EXPECT_TRUE(by_name(ch)["model.layers.0.self_attn.q_proj.weight"]->nested);
}

}  // namespace
}  // namespace nestedfp::io
