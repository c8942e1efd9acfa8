// `nestedfp serve MODEL`: the OpenAI-compatible server (cuda backend when a Hopper GPU is
// present, else the cpu backend).
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <thread>

#include "cli/command.hpp"
#include "cli/model_cli.hpp"
#include "server/serving.hpp"

namespace nestedfp::cli {
namespace {

struct ServeArgs {
  ModelArgs m;
  std::string host = "127.0.0.1", precision = "fp16", speculative = "off", api_key, admin_key,
              served_name;
  int port = 8000, http_threads = 0;  // 0: max_num_seqs + 64 (see below)
  int max_connections = 0;
  double header_timeout = 10, body_timeout = 30;
  size_t max_queue = 256;
  bool prefix_caching = true;
  double slo_ttft = 0, slo_tpot = 0;
  std::string latency_model;
};

Registration reg{
    "serve", "serve a model over an OpenAI-compatible HTTP API",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<ServeArgs>();
      add_model_options(sub, a->m, true);
      sub.add_option("--host", a->host, "address to listen on")->capture_default_str();
      sub.add_option("--port", a->port, "port to listen on (0: any free port, printed at start)")
          ->capture_default_str();
      sub.add_option("--precision", a->precision,
                     "fp16 | fp8 | dynamic[:threshold=N[,hysteresis=H]] | "
                     "slo[:ttft=MS,tpot=MS,hysteresis=F,gain=F,forecast=F,hold=F] "
                     "(changeable at run time: POST /admin/precision)")
          ->capture_default_str();
      sub.add_option("--slo-ttft", a->slo_ttft,
                     "TTFT target in ms of the slo policy when its spec gives none");
      sub.add_option("--slo-tpot", a->slo_tpot,
                     "TPOT target in ms of the slo policy when its spec gives none");
      sub.add_option("--latency-model", a->latency_model,
                     "step timings for the slo policy's latency model: a bench engine engine.json "
                     "or {\"steps\": [...]} (default: time synthetic steps at start when "
                     "--precision is slo)");
      add_speculative_option(sub, a->speculative);
      sub.add_option("--max-queue", a->max_queue,
                     "new requests waiting for admission before more get 429 (preempted requests "
                     "wait outside this bound)")
          ->capture_default_str();
      sub.add_flag("--enable-prefix-caching,!--no-enable-prefix-caching", a->prefix_caching,
                   "reuse the KV of full 16-token blocks of earlier prompts (on by default; "
                   "outputs are the same either way)")
          ->capture_default_str();
      sub.add_option("--api-key", a->api_key,
                     "require 'Authorization: Bearer KEY' on /v1/*, /tokenize, /detokenize (and "
                     "/admin/* without --admin-key)");
      sub.add_option("--admin-key", a->admin_key,
                     "require 'Authorization: Bearer KEY' on /admin/* (without it and --api-key, "
                     "/admin/* answers loopback clients only)");
      sub.add_option("--max-connections", a->max_connections,
                     "open HTTP connections, each a file descriptor (2..65536; 0: up to 4096 as "
                     "the open-file hard limit allows)")
          ->capture_default_str();
      sub.add_option("--header-timeout", a->header_timeout,
                     "seconds for a request's headers to arrive")
          ->capture_default_str();
      sub.add_option("--body-timeout", a->body_timeout,
                     "seconds for a request's body to arrive after its headers")
          ->capture_default_str();
      sub.add_option("--served-model-name", a->served_name,
                     "model id in the API (default: the directory name)");
      sub.add_option("--http-threads", a->http_threads,
                     "concurrent HTTP requests; a streaming request holds one (0: --max-num-seqs + "
                     "64, at most --max-connections)")
          ->capture_default_str();
      return [a] {
        server::ServeConfig cfg;
        cfg.model_dir = a->m.model;
        cfg.placeholder_tokenizer = a->m.load_format == "dummy";
        cfg.engine.max_num_batched_tokens = a->m.max_num_batched_tokens;
        cfg.engine.max_num_seqs = a->m.max_num_seqs;
        cfg.engine.max_model_len = a->m.max_model_len;
        cfg.engine.max_queue = a->max_queue;
        cfg.engine.precision = a->precision;
        cfg.engine.slo_ttft_ms = a->slo_ttft;
        cfg.engine.slo_tpot_ms = a->slo_tpot;
        cfg.engine.latency_model_file = a->latency_model;
        check_speculative(a->speculative, a->m);
        cfg.engine.speculative = a->speculative;
        cfg.engine.enable_prefix_caching = a->prefix_caching;
        cfg.server.host = a->host;
        cfg.server.port = a->port;
        cfg.server.api_key = a->api_key;
        cfg.server.admin_key = a->admin_key;
        cfg.server.max_connections = a->max_connections;
        cfg.server.header_timeout_s = a->header_timeout;
        cfg.server.body_timeout_s = a->body_timeout;
        cfg.server.model_name = a->served_name;
        // A streaming request holds an HTTP thread for its whole life: fewer threads than
        // --max-num-seqs would cap the running batch below the engine's and queue requests where
        // neither the scheduler nor the precision policy sees them (measured on the H200: with 64
        // threads, conv-trace requests arriving at 64 in flight waited 1.3 s for their first
        // token).
        cfg.server.http_threads =
            a->http_threads > 0
                ? a->http_threads
                : std::min(a->max_connections != 0 ? a->max_connections
                                                   : server::default_max_connections(),
                           a->m.max_num_seqs + 64);
        cfg.executor = [a](const EngineConfig&) -> std::unique_ptr<ModelExecutor> {
          return build_runner(a->m);
        };

        // SIGINT/SIGTERM are taken by a waiting thread (blocked everywhere else) for a clean stop.
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

        server::ServingStack stack(std::move(cfg));
        stack.server().bind();
        std::printf("nestedfp: serving on http://%s:%d (OpenAI API under /v1)\n", a->host.c_str(),
                    stack.port());
        std::fflush(stdout);
        std::thread waiter([&] {
          int sig = 0;
          sigwait(&sigs, &sig);
          spdlog::info("signal {}: shutting down", sig);
          stack.stop();
        });
        stack.run();
        pthread_kill(waiter.native_handle(),
                     SIGTERM);  // wake the waiter if the server ended by itself
        waiter.join();
        return 0;
      };
    },
    40};

}  // namespace
}  // namespace nestedfp::cli
