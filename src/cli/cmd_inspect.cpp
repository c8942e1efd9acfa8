// `nestedfp inspect MODEL_DIR`: which weights the nested format can hold, and what it saves.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/command.hpp"
#include "cli/progress.hpp"
#include "nestedfp/config.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/inspect.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::cli {
namespace {

using io::TensorKind;

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

std::string shape_str(const std::vector<int64_t>& s) {
  return s.empty() ? std::string("scalar") : fmt::format("{}", fmt::join(s, "x"));
}

struct ConfigInfo {
  std::optional<io::ModelConfig> config;
  std::string error;  // why config.json could not be read (inspect needs only the weights)
  std::string line() const {
    if (!config) return fmt::format(" (config: {})", error);
    const io::ModelConfig& c = *config;
    return fmt::format(" ({} {}, {} layers, hidden {}, {} heads / {} kv)", c.model_type,
                       c.architecture, c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads);
  }
};

nlohmann::ordered_json to_json(const io::ModelInspection& mi, const ConfigInfo& ci) {
  nlohmann::ordered_json j;
  j["model_dir"] = mi.dir;
  if (ci.config) {
    const io::ModelConfig& c = *ci.config;
    j["config"] = {{"model_type", c.model_type}, {"architecture", c.architecture},
                   {"num_layers", c.num_layers}, {"hidden_size", c.hidden_size},
                   {"num_heads", c.num_heads},   {"num_kv_heads", c.num_kv_heads},
                   {"head_dim", c.head_dim},     {"vocab_size", c.vocab_size}};
  } else {
    j["config_error"] = ci.error;
  }
  j["nested_scale"] = format::to_string(mi.mode);
  auto& ts = j["tensors"] = nlohmann::ordered_json::array();
  for (auto& t : mi.tensors) {
    nlohmann::ordered_json e;
    e["name"] = t.name;
    e["kind"] = io::to_string(t.kind);
    e["shape"] = t.shape;
    e["dtype"] = io::dtype_name(t.dtype);
    e["bytes"] = t.bytes;
    if (t.kind != TensorKind::Other) e["max_abs"] = t.max_abs;
    if (t.kind == TensorKind::Linear) {
      e["nestable_none"] = t.nestable_none;
      e["nestable_channel"] = t.nestable_channel;
      if (!t.nestable_none) e["reason_none"] = t.reason_none;
      if (!t.nestable_channel) e["reason_channel"] = t.reason_channel;
      if (t.nestable_channel) e["k_range"] = {t.k_min, t.k_max};
    }
    if (t.conversion.inexact || t.conversion.overflow)
      e["conversion"] = {{"overflow", t.conversion.overflow},
                         {"inexact", t.conversion.inexact},
                         {"underflow", t.conversion.underflow}};
    e["nested"] = t.nested;
    if (!t.nested) e["reason"] = t.reason;
    ts.push_back(std::move(e));
  }
  const int64_t saved = int64_t(mi.fp16_plus_fp8_bytes) - int64_t(mi.nested_bytes);
  j["summary"] = {{"linear_layers", mi.linear_layers},
                  {"layers_nested", mi.layers_nested},
                  {"nested_params", mi.nested_params},
                  {"fp16_bytes", mi.fp16_bytes},
                  {"fp16_plus_fp8_bytes", mi.fp16_plus_fp8_bytes},
                  {"nested_bytes", mi.nested_bytes},
                  {"saved_bytes", saved},
                  {"conversion_overflow", mi.conversion_overflow},
                  {"conversion_inexact", mi.conversion_inexact}};
  return j;
}

void print_text(const io::ModelInspection& mi, const ConfigInfo& ci) {
  std::printf("model: %s%s\nnested scale: %s\n\n", mi.dir.c_str(), ci.line().c_str(),
              format::to_string(mi.mode));
  std::printf("%-44s %-12s %-5s %9s %-6s %-8s %-9s %10s\n", "tensor", "shape", "dtype", "max|w|",
              "none", "channel", "k range", "bytes");
  int others = 0;
  uint64_t other_bytes = 0;
  for (auto& t : mi.tensors) {
    if (t.kind == TensorKind::Other) {
      ++others, other_bytes += t.bytes;
      continue;
    }
    const bool lin = t.kind == TensorKind::Linear;
    const std::string krange =
        lin && t.nestable_channel ? fmt::format("[{}, {}]", t.k_min, t.k_max) : "-";
    std::printf("%-44s %-12s %-5s %9.4g %-6s %-8s %-9s %10s%s\n", t.name.c_str(),
                shape_str(t.shape).c_str(), io::dtype_name(t.dtype), double(t.max_abs),
                lin ? (t.nestable_none ? "yes" : "no") : "-",
                lin ? (t.nestable_channel ? "yes" : "no") : "-", krange.c_str(),
                human_bytes(t.bytes).c_str(), t.nested ? "" : "  (stays FP16)");
  }
  const int64_t saved = int64_t(mi.fp16_plus_fp8_bytes) - int64_t(mi.nested_bytes);
  std::printf("\nsummary (--nested-scale %s)\n", format::to_string(mi.mode));
  std::printf("  linear layers nested:   %d of %d (%.2f M weights)\n", mi.layers_nested,
              mi.linear_layers, double(mi.nested_params) / 1e6);
  std::printf("  FP16 model:             %s\n", human_bytes(mi.fp16_bytes).c_str());
  std::printf("  FP16 + separate FP8:    %s (FP8 copy of the nested layers at 1 byte/weight)\n",
              human_bytes(mi.fp16_plus_fp8_bytes).c_str());
  std::printf("  nested format:          %s%s\n", human_bytes(mi.nested_bytes).c_str(),
              mi.mode == format::ScaleMode::Channel ? " (incl. one int8 k per row)" : "");
  std::printf(
      "  saved by nesting:       %s (%.1f%% of FP16 + FP8)\n",
      human_bytes(uint64_t(std::max<int64_t>(saved, 0))).c_str(),
      mi.fp16_plus_fp8_bytes ? 100.0 * double(saved) / double(mi.fp16_plus_fp8_bytes) : 0.0);
  if (mi.conversion_overflow || mi.conversion_inexact)
    std::printf("  to FP16: %lld values inexact, %lld overflow\n", (long long)mi.conversion_inexact,
                (long long)mi.conversion_overflow);
  std::printf("  stay FP16:\n");
  int listed = 0;
  for (auto& t : mi.tensors)
    if (t.kind != TensorKind::Other && !t.nested)
      std::printf("    %s: %s\n", t.name.c_str(), t.reason.c_str()), ++listed;
  if (!listed && !others) std::printf("    (none)\n");
  if (others)
    std::printf("    %d other tensors (%s): norms, biases and other non-linear weights\n", others,
                human_bytes(other_bytes).c_str());
}

Registration reg{
    "inspect", "report which weights of a model can be nested and what it saves",
    [](CLI::App& sub) -> std::function<int()> {
      auto dir = std::make_shared<std::string>();
      auto scale = std::make_shared<std::string>("none");
      auto as_json = std::make_shared<bool>(false);
      sub.add_option("MODEL_DIR", *dir, "Hugging Face model directory")->required();
      sub.add_option("--nested-scale", *scale, "per-row power-of-two scales: none|channel")
          ->check(CLI::IsMember({"none", "channel"}));
      sub.add_flag("--json", *as_json, "print one JSON object instead of a table");
      return [=] {
        const format::ScaleMode mode = format::parse_scale_mode(*scale);
        // The weights are inspected without the other files; a config.json or tokenizer.json
        // that exists but cannot be loaded is still an error (exit 1 after the report), since
        // the model would not serve.
        ConfigInfo ci;
        std::vector<std::string> broken;
        try {
          ci.config = io::load_config(*dir);
        } catch (const Error& e) {
          ci.error = e.what();
          if (std::filesystem::exists(std::filesystem::path(*dir) / "config.json"))
            broken.push_back(e.what());
        }
        if (std::filesystem::exists(std::filesystem::path(*dir) / "tokenizer.json")) {
          try {
            (void)Tokenizer::load(*dir);
          } catch (const Error& e) {
            broken.push_back(e.what());
          }
        }
        ProgressBar progress("inspect");
        const io::ModelInspection mi = io::inspect_model(*dir, mode, [&](uint64_t d, uint64_t t) {
          // Only for models large enough that the wait is noticeable.
          if (t >= (uint64_t(256) << 20))
            progress.update(double(d) / double(t), human_bytes(d) + " of " + human_bytes(t));
        });
        progress.finish();
        if (*as_json)
          std::printf("%s\n", to_json(mi, ci).dump(2).c_str());
        else
          print_text(mi, ci);
        for (const auto& b : broken) std::fprintf(stderr, "inspect: error: %s\n", b.c_str());
        if (!broken.empty())
          std::fprintf(stderr,
                       "inspect: the weights were inspected, but the model files above are broken: "
                       "fix or replace them\n");
        return broken.empty() ? 0 : 1;
      };
    },
    20};

}  // namespace
}  // namespace nestedfp::cli
