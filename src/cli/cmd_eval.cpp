// `nestedfp eval`: accuracy evaluations. `eval ppl` implements the perplexity protocol of
// models/pystd-16m/REFERENCE.json: chunks of 512 tokenizer ids (no special tokens), each fed
// alone, 511 scored targets per chunk; chunk i = ids[512 i, 512 i + 512). Besides fp16 and
// NestedFP8 (fp8) it runs the FP8 baselines of REFERENCE.json on the same engine: weights stored
// as E4M3 with their own max-abs scales (fp8-per-tensor, fp8-per-channel) and activations
// quantized per token exactly as in NestedFP8.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/eval_group.hpp"
#include "cli/model_cli.hpp"
#include "engine/offline.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::cli {

std::vector<Command>& eval_registry() {
  static std::vector<Command> commands;
  return commands;
}

namespace {

Registration reg{"eval", "accuracy evaluations (ppl: perplexity on a text file)",
                 [](CLI::App& sub) -> std::function<int()> {
                   sub.require_subcommand(1);
                   auto& cmds = eval_registry();
                   std::stable_sort(cmds.begin(), cmds.end(),
                                    [](auto& a, auto& b) { return a.order < b.order; });
                   auto chosen = std::make_shared<std::function<int()>>();
                   for (auto& c : cmds) {
                     CLI::App* s = sub.add_subcommand(c.name, c.description);
                     auto run = c.setup(*s);
                     s->callback([chosen, run] { *chosen = run; });
                   }
                   return [chosen] { return *chosen ? (*chosen)() : 0; };
                 },
                 40};

EvalRegistration ppl{
    "ppl", "perplexity of a model on a text file (.gz allowed), chunk by chunk",
    [](CLI::App& sub) -> std::function<int()> {
      auto m = std::make_shared<ModelArgs>();
      auto text = std::make_shared<std::string>();
      auto precision = std::make_shared<std::string>("fp16");
      auto chunks = std::make_shared<int>(0);
      auto chunk_len = std::make_shared<int>(512);
      auto as_json = std::make_shared<bool>(false);
      add_model_options(sub, *m, false);
      sub.add_option("--text", *text, "UTF-8 text file, gzip-compressed when it ends in .gz")
          ->required();
      sub.add_option("--chunks", *chunks, "evaluate only the first N chunks (default: all)")
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--chunk-len", *chunk_len, "tokens per chunk (the protocol uses 512)")
          ->check(CLI::Range(2, 1 << 20));
      sub.add_option("--precision", *precision,
                     "fp16|fp8 (NestedFP8)|fp8-per-tensor|fp8-per-channel (FP8 baselines: weights "
                     "quantized "
                     "to E4M3 with max-abs scales, activations per token)")
          ->check(CLI::IsMember({"fp16", "fp8", "fp8-per-tensor", "fp8-per-channel"}));
      sub.add_flag("--json", *as_json, "print one JSON object");
      return [=] {
        log_to_stderr();
        const bool baseline = precision->starts_with("fp8-per-");
        const auto storage = *precision == "fp8-per-tensor" ? engine::LinearStorage::Fp8PerTensor
                             : *precision == "fp8-per-channel"
                                 ? engine::LinearStorage::Fp8PerChannel
                                 : engine::LinearStorage::Nested;
        const Precision prec = baseline ? Precision::FP8 : parse_precision(*precision);
        const std::string content = engine::read_text_file(*text);
        const Tokenizer tok = Tokenizer::load(m->model);
        ModelArgs ma = *m;
        ma.max_num_seqs = 1;
        ma.max_num_batched_tokens = *chunk_len;  // a chunk is fed as one step
        auto runner = build_runner(ma, storage);
        if (*chunk_len > runner->max_model_len())
          fail("--chunk-len {} exceeds the model's max_position_embeddings {}", *chunk_len,
               runner->max_model_len());
        const std::vector<int32_t> ids = tok.encode(content, false);
        const int available = int(ids.size() / size_t(*chunk_len));
        const int n = *chunks > 0 ? std::min(*chunks, available) : available;
        if (*chunks > available)
          spdlog::warn("{} has {} tokens: {} chunks of {}, not {}", *text, ids.size(), available,
                       *chunk_len, *chunks);
        const bool tty = ::isatty(STDERR_FILENO) != 0;
        const auto r = engine::perplexity(*runner, ids, prec, n, *chunk_len, [&](int d, int total) {
          if (tty || d == total || d % 10 == 0)
            std::fprintf(stderr, "%seval ppl: chunk %d/%d%s", tty ? "\r" : "", d, total,
                         tty && d < total ? "" : "\n");
        });
        if (*as_json) {
          nlohmann::json j = {
              {"model", m->model},
              {"text", *text},
              {"precision", *precision},
              {"nested_scale", baseline ? nlohmann::json() : nlohmann::json(m->nested_scale)},
              {"weights", engine::to_string(storage)},
              {"ppl", r.ppl},
              {"mean_nll", r.mean_nll},
              {"tokens", r.tokens},
              {"chunks", r.chunks},
              {"chunk_len", *chunk_len},
              {"chunk_nll", r.chunk_nll},
              {"seconds", r.seconds},
              {"backend", runner_of(*runner).backend().name()}};
          std::printf("%s\n", j.dump().c_str());
        } else {
          const std::string what =
              baseline ? *precision
                       : fmt::format("{}, nested-scale {}", *precision, m->nested_scale);
          std::printf("ppl %.4f  (mean NLL %.5f over %lld tokens in %d chunks of %d; %s; %.1f s)\n",
                      r.ppl, r.mean_nll, static_cast<long long>(r.tokens), r.chunks, *chunk_len,
                      what.c_str(), r.seconds);
        }
        return 0;
      };
    },
    10};

}  // namespace
}  // namespace nestedfp::cli
