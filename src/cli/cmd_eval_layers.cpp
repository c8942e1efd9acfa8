// `nestedfp eval layers`: each decoder linear's relative output error in the FP8 weight formats
// (NestedFP8 none/channel, FP8 per-tensor/per-channel) against FP16, on real activations.
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/eval_group.hpp"
#include "cli/model_cli.hpp"
#include "engine/layer_error.hpp"
#include "engine/offline.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::cli {
namespace {

EvalRegistration layers{
    "layers",
    "per-linear-layer relative output error of the FP8 formats against FP16 on real activations",
    [](CLI::App& sub) -> std::function<int()> {
      auto model = std::make_shared<std::string>();
      auto text = std::make_shared<std::string>();
      auto chunks = std::make_shared<int>(1);
      auto chunk_len = std::make_shared<int>(512);
      auto as_json = std::make_shared<bool>(false);
      auto device = std::make_shared<std::string>("auto");
      auto kernel_table = std::make_shared<std::string>("auto");
      sub.add_option("MODEL", *model, "Hugging Face model directory")->required();
      sub.add_option("--device", *device,
                     "where the FP16 activations are computed: auto | cpu | cuda")
          ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
      sub.add_option("--text", *text,
                     "UTF-8 text file (.gz allowed); its first chunks are the activations")
          ->required();
      sub.add_option("--chunks", *chunks, "chunks of the text to run (default 1)")
          ->check(CLI::PositiveNumber);
      sub.add_option("--chunk-len", *chunk_len, "tokens per chunk")->check(CLI::Range(2, 1 << 20));
      sub.add_flag("--json", *as_json, "print one JSON object");
      add_kernel_table_option(sub, *kernel_table);
      return [=] {
        log_to_stderr();
        const std::string content = engine::read_text_file(*text);
        const Tokenizer tok = Tokenizer::load(*model);
        const auto weights = engine::ModelWeights::load(*model, format::ScaleMode::None);
        const std::vector<int32_t> ids = tok.encode(content, false);
        backend::BackendOptions bo;
        bo.device = *device;
        bo.kernel_table = *kernel_table;
        const auto rep = engine::layer_errors(weights, ids, *chunks, *chunk_len, bo);
        const auto& modes = engine::fp8_modes();
        if (*as_json) {
          nlohmann::json j = {{"model", *model},
                              {"text", *text},
                              {"chunks", rep.chunks},
                              {"tokens", rep.tokens},
                              {"metric", "||Y_mode - Y_fp16|| / ||Y_fp16|| over all input tokens"}};
          for (const auto& m : modes) j["modes"].push_back(m.name);
          for (const auto& e : rep.linears)
            j["linears"].push_back({{"layer", e.layer},
                                    {"linear", e.linear},
                                    {"out_features", e.out_features},
                                    {"in_features", e.in_features},
                                    {"rel_error", e.rel_error},
                                    {"fp8", e.fp8}});
          j["mean_rel_error"] = rep.mean_rel_error;
          std::printf("%s\n", j.dump().c_str());
          return 0;
        }
        std::printf(
            "relative output error ||Y - Y_fp16|| / ||Y_fp16|| on %lld tokens (%d chunk%s of %s)\n",
            static_cast<long long>(rep.tokens), rep.chunks, rep.chunks == 1 ? "" : "s",
            text->c_str());
        std::string head = fmt::format("{:>5} {:<6} {:>11}", "layer", "linear", "shape");
        for (const auto& m : modes) head += fmt::format(" {:>15}", m.name);
        std::printf("%s\n", head.c_str());
        for (const auto& e : rep.linears) {
          std::string row = fmt::format("{:>5} {:<6} {:>11}", e.layer, e.linear,
                                        fmt::format("{}x{}", e.out_features, e.in_features));
          for (size_t m = 0; m < modes.size(); ++m)
            row += e.fp8[m] ? fmt::format(" {:>15.6f}", e.rel_error[m])
                            : fmt::format(" {:>15}", "fp16 (plain)");
          std::printf("%s\n", row.c_str());
        }
        std::string mean = fmt::format("{:>5} {:<6} {:>11}", "mean", "", "");
        for (double v : rep.mean_rel_error) mean += fmt::format(" {:>15.6f}", v);
        std::printf("%s\n", mean.c_str());
        return 0;
      };
    },
    20};

}  // namespace
}  // namespace nestedfp::cli
