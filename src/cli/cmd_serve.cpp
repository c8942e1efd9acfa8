// `nestedfp serve MODEL`: the OpenAI-compatible server on the cpu backend.
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <thread>

#include "cli/command.hpp"
#include "server/serving.hpp"

namespace nestedfp::cli {
namespace {

struct ServeArgs {
  std::string model, host = "127.0.0.1", precision = "fp16", nested_scale = "none", api_key, admin_key, served_name;
  int port = 8000, max_batched = 512, max_seqs = 32, max_model_len = 0, kv_blocks = 0, threads = 0, http_threads = 64;
  int max_connections = 512;
  double header_timeout = 10, body_timeout = 30;
  size_t max_queue = 256;
};

Registration reg{
    "serve", "serve a model over an OpenAI-compatible HTTP API",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<ServeArgs>();
      sub.add_option("MODEL", a->model, "Hugging Face model directory")->required();
      sub.add_option("--host", a->host, "address to listen on")->capture_default_str();
      sub.add_option("--port", a->port, "port to listen on (0: any free port, printed at start)")->capture_default_str();
      sub.add_option("--precision", a->precision, "fp16 | fp8 | dynamic[:threshold=N[,hysteresis=H]] (changeable at run time: POST /admin/precision)")
          ->capture_default_str();
      sub.add_option("--nested-scale", a->nested_scale, "per-row power-of-two scales: none|channel")
          ->check(CLI::IsMember({"none", "channel"}))
          ->capture_default_str();
      sub.add_option("--max-num-batched-tokens", a->max_batched, "tokens per engine step")->capture_default_str();
      sub.add_option("--max-num-seqs", a->max_seqs, "sequences per step and running at once")->capture_default_str();
      sub.add_option("--max-model-len", a->max_model_len, "context length (0: the model's, capped by the KV cache)");
      sub.add_option("--kv-blocks", a->kv_blocks, "KV cache blocks of 16 tokens (0: as many as fit in 256 MiB)");
      sub.add_option("--max-queue", a->max_queue,
                     "new requests waiting for admission before more get 429 (preempted requests wait outside this bound)")
          ->capture_default_str();
      sub.add_option("--api-key", a->api_key, "require 'Authorization: Bearer KEY' on /v1/*, /tokenize, /detokenize (and /admin/* without --admin-key)");
      sub.add_option("--admin-key", a->admin_key,
                     "require 'Authorization: Bearer KEY' on /admin/* (without it and --api-key, /admin/* answers loopback clients only)");
      sub.add_option("--max-connections", a->max_connections, "open HTTP connections (2..900)")->capture_default_str();
      sub.add_option("--header-timeout", a->header_timeout, "seconds for a request's headers to arrive")->capture_default_str();
      sub.add_option("--body-timeout", a->body_timeout, "seconds for a request's body to arrive after its headers")->capture_default_str();
      sub.add_option("--served-model-name", a->served_name, "model id in the API (default: the directory name)");
      sub.add_option("--threads", a->threads, "cpu backend threads (0: all cores)");
      sub.add_option("--http-threads", a->http_threads, "concurrent HTTP requests")->capture_default_str();
      return [a] {
        server::ServeConfig cfg;
        cfg.model_dir = a->model;
        cfg.nested_scale = format::parse_scale_mode(a->nested_scale);
        cfg.engine.max_num_batched_tokens = a->max_batched;
        cfg.engine.max_num_seqs = a->max_seqs;
        cfg.engine.max_model_len = a->max_model_len;
        cfg.engine.num_kv_blocks = a->kv_blocks;
        cfg.engine.max_queue = a->max_queue;
        cfg.engine.precision = a->precision;
        cfg.server.host = a->host;
        cfg.server.port = a->port;
        cfg.server.api_key = a->api_key;
        cfg.server.admin_key = a->admin_key;
        cfg.server.max_connections = a->max_connections;
        cfg.server.header_timeout_s = a->header_timeout;
        cfg.server.body_timeout_s = a->body_timeout;
        cfg.server.model_name = a->served_name;
        cfg.server.http_threads = a->http_threads;
        cfg.cpu_threads = a->threads;

        // SIGINT/SIGTERM are taken by a waiting thread (blocked everywhere else) for a clean stop.
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

        server::ServingStack stack(std::move(cfg));
        stack.server().bind();
        std::printf("nestedfp: serving on http://%s:%d (OpenAI API under /v1)\n", a->host.c_str(), stack.port());
        std::fflush(stdout);
        std::thread waiter([&] {
          int sig = 0;
          sigwait(&sigs, &sig);
          spdlog::info("signal {}: shutting down", sig);
          stack.stop();
        });
        stack.run();
        pthread_kill(waiter.native_handle(), SIGTERM);  // wake the waiter if the server ended by itself
        waiter.join();
        return 0;
      };
    },
    40};

}  // namespace
}  // namespace nestedfp::cli
