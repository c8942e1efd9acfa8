#include "server/serving.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <optional>

#include "nestedfp/error.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::server {

struct ServingStack::Impl {
  std::unique_ptr<ModelExecutor> runner;
  std::unique_ptr<Engine> eng;
  std::unique_ptr<OpenAIServer> http;
};

ServingStack::ServingStack(ServeConfig cfg) : impl_(std::make_unique<Impl>()) {
  if (!cfg.executor) fail("serving: no model executor factory given");
  const bool have_tokenizer =
      !std::filesystem::is_directory(cfg.model_dir) ||
      std::filesystem::exists(std::filesystem::path(cfg.model_dir) / "tokenizer.json");
  std::optional<Tokenizer> loaded;
  if (have_tokenizer || !cfg.placeholder_tokenizer) loaded = Tokenizer::load(cfg.model_dir);
  impl_->runner = cfg.executor(cfg.engine);
  if (!loaded) {
    spdlog::warn(
        "{}: no tokenizer.json; with dummy weights a placeholder tokenizer stands in "
        "(ids 0..255 are bytes, id N reads \" tN\", no EOS): send token ids",
        cfg.model_dir);
    loaded = Tokenizer::placeholder(impl_->runner->vocab_size());
  }
  Tokenizer tok = std::move(*loaded);
  if (tok.vocab_size() > impl_->runner->vocab_size())
    spdlog::warn("the tokenizer has {} ids but the model only {}", tok.vocab_size(),
                 impl_->runner->vocab_size());
  cfg.engine.text_decoder = text_decoder_factory(tok);
  if (cfg.engine.eos_token_ids.empty()) cfg.engine.eos_token_ids = tok.eos_ids();
  impl_->eng = std::make_unique<Engine>(*impl_->runner, cfg.engine);
  if (cfg.server.model_name.empty())
    cfg.server.model_name =
        std::filesystem::path(cfg.model_dir).lexically_normal().filename().string();
  if (cfg.server.model_name.empty())  // "models/pystd-16m/" has an empty filename after normalizing
    cfg.server.model_name =
        std::filesystem::path(cfg.model_dir).lexically_normal().parent_path().filename().string();
  impl_->http = std::make_unique<OpenAIServer>(*impl_->eng, tok, cfg.server);
  spdlog::info("model {} ({} KV blocks of {} tokens, max model length {}, precision {})",
               cfg.server.model_name, impl_->eng->stats().kv_blocks_total, kKvBlockSize,
               impl_->eng->max_model_len(), impl_->eng->precision_policy());
}

ServingStack::~ServingStack() { stop(); }

void ServingStack::start() {
  impl_->eng->start();
  impl_->http->start();
}

void ServingStack::run() {
  impl_->eng->start();
  impl_->http->run();
}

void ServingStack::stop() {
  impl_->http->stop();
  impl_->eng->stop();
}

int ServingStack::port() const { return impl_->http->port(); }
Engine& ServingStack::engine() { return *impl_->eng; }
OpenAIServer& ServingStack::server() { return *impl_->http; }

}  // namespace nestedfp::server
