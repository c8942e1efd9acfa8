// `nestedfp generate MODEL --prompt TEXT`: one request through the serving engine's step loop
// (same scheduler, sampling and stop handling as `serve`), streamed to stdout.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>

#include "cli/command.hpp"
#include "cli/model_cli.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/sampler.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::cli {
namespace {

struct GenerateArgs {
  ModelArgs m;
  std::string prompt, precision = "fp16", speculative = "off";
  int max_tokens = 128;
  SamplingParams sp;
  int64_t seed = -1;
  bool ignore_eos = false;
};

Registration reg{
    "generate", "generate text from a prompt, streamed to stdout",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<GenerateArgs>();
      a->sp.temperature = 0.f;
      add_model_options(sub, a->m, false);
      sub.add_option("--prompt", a->prompt,
                     "prompt text (the tokenizer adds BOS where the model wants it)")
          ->required();
      sub.add_option("--precision", a->precision, "fp16|fp8")
          ->check(CLI::IsMember({"fp16", "fp8"}));
      add_speculative_option(sub, a->speculative);
      sub.add_option("--max-tokens", a->max_tokens, "tokens to generate at most")
          ->check(CLI::Range(1, 1 << 20));
      sub.add_option("--temperature", a->sp.temperature, "0 = greedy (default)")
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--top-p", a->sp.top_p, "nucleus sampling mass in (0, 1]");
      sub.add_option("--top-k", a->sp.top_k, "sample among the k most likely tokens (0 = all)");
      sub.add_option("--seed", a->seed, "RNG seed (same seed, same text)")
          ->check(CLI::NonNegativeNumber);
      sub.add_flag("--ignore-eos", a->ignore_eos, "keep generating after an end-of-sequence token");
      return [a] {
        GenerationRequest req;
        req.sampling = a->sp;
        if (a->seed >= 0) req.sampling.seed = uint64_t(a->seed);
        req.sampling.validate();
        check_speculative(a->speculative, a->m);
        req.max_tokens = a->max_tokens;
        req.ignore_eos = a->ignore_eos;
        log_to_stderr();
        const Tokenizer tok = Tokenizer::load(a->m.model);
        req.prompt = tok.encode(a->prompt, true);
        if (req.prompt.empty()) fail("the prompt encodes to no tokens");
        ModelArgs m = a->m;
        m.max_num_seqs = 1;
        m.max_num_batched_tokens =
            std::max(512, int(req.prompt.size()) > 8192 ? 8192 : int(req.prompt.size()));
        auto runner = build_runner(m);
        if (int(req.prompt.size()) >= runner->max_model_len())
          fail("the prompt has {} tokens; the model takes at most {}", req.prompt.size(),
               runner->max_model_len());
        EngineConfig ec;
        ec.max_num_batched_tokens = m.max_num_batched_tokens;
        ec.max_num_seqs = 1;
        ec.precision = a->precision;
        ec.speculative = a->speculative;
        ec.text_decoder = text_decoder_factory(tok);
        ec.eos_token_ids = tok.eos_ids();
        for (int32_t e : runner_of(*runner).config().eos_token_ids)
          if (std::find(ec.eos_token_ids.begin(), ec.eos_token_ids.end(), e) ==
              ec.eos_token_ids.end())
            ec.eos_token_ids.push_back(e);
        Engine eng(*runner, ec);

        const auto t0 = std::chrono::steady_clock::now();
        auto stream = eng.add_request(std::move(req));
        std::chrono::steady_clock::time_point t1{};
        FinishReason why = FinishReason::None;
        int generated = 0;
        while (why == FinishReason::None) {
          const bool ran =
              eng.step();  // on this thread: no step loop thread needed for one request
          bool any = false;
          while (auto ev = stream->next(std::chrono::milliseconds(0))) {
            any = true;
            if (!ev->token_ids.empty() && t1 == std::chrono::steady_clock::time_point{})
              t1 = std::chrono::steady_clock::now();
            std::fwrite(ev->text.data(), 1, ev->text.size(), stdout);
            std::fflush(stdout);
            generated = ev->completion_tokens;
            if (ev->finish != FinishReason::None) {
              why = ev->finish;
              if (why == FinishReason::Error) fail("generation failed: {}", ev->error);
            }
          }
          if (!ran && !any && why == FinishReason::None)
            fail("internal: the engine stopped before the request finished");
        }
        std::fputc('\n', stdout);
        const auto t2 = std::chrono::steady_clock::now();
        if (t1 == std::chrono::steady_clock::time_point{}) t1 = t2;
        const double prefill = std::chrono::duration<double>(t1 - t0).count();
        const double decode = std::chrono::duration<double>(t2 - t1).count();
        std::fprintf(
            stderr, "[%s: %d generated; first token after %.2f s, then %.1f tok/s; %s, stop: %s]\n",
            runner_of(*runner).backend().name().c_str(), generated, prefill,
            generated > 1 ? (generated - 1) / std::max(decode, 1e-9) : 0.0, a->precision.c_str(),
            to_string(why));
        if (const EngineStats st = eng.stats(); st.spec_cycles > 0)
          std::fprintf(
              stderr,
              "[speculative %s: %llu drafted, %llu accepted (%.1f%%), %.2f tokens per "
              "verify step]\n",
              ec.speculative.c_str(), (unsigned long long)st.spec_drafted,
              (unsigned long long)st.spec_accepted,
              100.0 * double(st.spec_accepted) / double(std::max<uint64_t>(st.spec_drafted, 1)),
              double(st.spec_committed) / double(st.spec_cycles));
        return 0;
      };
    },
    30};

}  // namespace
}  // namespace nestedfp::cli
