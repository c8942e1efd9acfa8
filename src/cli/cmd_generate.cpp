// `nestedfp generate MODEL --prompt TEXT`: one sequence on the cpu backend, streamed to stdout.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>

#include "cli/command.hpp"
#include "cli/model_cli.hpp"
#include "engine/offline.hpp"
#include "nestedfp/sampler.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::cli {
namespace {

Registration reg{
    "generate", "generate text from a prompt (cpu backend), streamed to stdout",
    [](CLI::App& sub) -> std::function<int()> {
      auto model = std::make_shared<std::string>();
      auto prompt = std::make_shared<std::string>();
      auto precision = std::make_shared<std::string>("fp16");
      auto scale = std::make_shared<std::string>("none");
      auto max_tokens = std::make_shared<int>(128);
      auto sp = std::make_shared<SamplingParams>();
      auto seed = std::make_shared<int64_t>(-1);
      sp->temperature = 0.f;
      sub.add_option("MODEL", *model, "Hugging Face model directory")->required();
      sub.add_option("--prompt", *prompt, "prompt text (the tokenizer adds BOS where the model wants it)")->required();
      sub.add_option("--precision", *precision, "fp16|fp8")->check(CLI::IsMember({"fp16", "fp8"}));
      sub.add_option("--nested-scale", *scale, "per-row power-of-two scales: none|channel")
          ->check(CLI::IsMember({"none", "channel"}));
      sub.add_option("--max-tokens", *max_tokens, "tokens to generate at most")->check(CLI::Range(1, 1 << 20));
      sub.add_option("--temperature", sp->temperature, "0 = greedy (default)")->check(CLI::NonNegativeNumber);
      sub.add_option("--top-p", sp->top_p, "nucleus sampling mass in (0, 1]");
      sub.add_option("--top-k", sp->top_k, "sample among the k most likely tokens (0 = all)");
      sub.add_option("--seed", *seed, "RNG seed (same seed, same text)")->check(CLI::NonNegativeNumber);
      return [=] {
        SamplingParams params = *sp;
        if (*seed >= 0) params.seed = uint64_t(*seed);
        params.validate();
        log_to_stderr();
        const Precision prec = parse_precision(*precision);
        const Tokenizer tok = Tokenizer::load(*model);
        const std::vector<int32_t> ids = tok.encode(*prompt, true);
        if (ids.empty()) fail("the prompt encodes to no tokens");
        auto runner = load_cpu_runner(*model, *scale, int(ids.size()) + *max_tokens);
        if (int(ids.size()) >= runner->max_model_len())
          fail("the prompt has {} tokens; the model takes at most {}", ids.size(), runner->max_model_len());
        std::vector<int32_t> eos = tok.eos_ids();
        for (int32_t e : runner->config().eos_token_ids)
          if (std::find(eos.begin(), eos.end(), e) == eos.end()) eos.push_back(e);

        RequestSampler sampler(params, uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()));
        IncrementalDecoder dec(tok);
        engine::SingleSequence seq(*runner);
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<float> logits = seq.feed(ids, prec);
        const auto t1 = std::chrono::steady_clock::now();
        int generated = 0;
        bool stopped_eos = false;
        while (generated < *max_tokens) {
          const int32_t next = sampler.sample(logits);
          ++generated;
          if (std::find(eos.begin(), eos.end(), next) != eos.end()) {
            stopped_eos = true;
            break;
          }
          const std::string piece = dec.push(next);
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
          if (generated == *max_tokens || seq.length() + 1 > runner->max_model_len()) break;
          logits = seq.feed(std::span(&next, 1), prec);
        }
        const std::string rest = dec.finish();
        std::fwrite(rest.data(), 1, rest.size(), stdout);
        std::fputc('\n', stdout);
        const auto t2 = std::chrono::steady_clock::now();
        const double prefill = std::chrono::duration<double>(t1 - t0).count();
        const double decode = std::chrono::duration<double>(t2 - t1).count();
        std::fprintf(stderr, "[%zu prompt tokens in %.2f s, %d generated in %.2f s (%.1f tok/s), %s, stop: %s]\n",
                     ids.size(), prefill, generated, decode, generated / std::max(decode, 1e-9), precision->c_str(),
                     stopped_eos ? "eos" : "length");
        return 0;
      };
    },
    30};

}  // namespace
}  // namespace nestedfp::cli
