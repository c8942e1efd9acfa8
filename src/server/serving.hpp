#pragma once
// Everything `nestedfp serve` runs, in one object (the CLI and the HTTP tests share it):
// a model executor built by the caller (the CLI picks the backend and loads the weights) ->
// Engine (step thread) -> OpenAIServer.
#include <functional>
#include <memory>
#include <string>

#include "nestedfp/engine.hpp"
#include "nestedfp/format.hpp"
#include "server/openai_server.hpp"

namespace nestedfp::server {

using ExecutorFactory = std::function<std::unique_ptr<ModelExecutor>(const EngineConfig&)>;

struct ServeConfig {
  std::string model_dir;     // the tokenizer's directory, and the default model name
  EngineConfig engine;       // text_decoder and eos ids are filled from the tokenizer
  ServerOptions server;      // model_name defaults to the model directory's name
  ExecutorFactory executor;  // builds the model executor (backend + weights); required
  // No tokenizer.json in model_dir: use Tokenizer::placeholder for the model's vocabulary instead
  // of failing (serve with --load-format dummy on a bare config).
  bool placeholder_tokenizer = false;
};

class ServingStack {
 public:
  explicit ServingStack(ServeConfig cfg);  // loads the model; throws Error
  ~ServingStack();                         // stops the server, then the engine
  void start();                            // engine step thread + HTTP on a background thread
  void run();                              // engine step thread + HTTP on this thread until stop()
  void stop();
  int port() const;
  Engine& engine();
  OpenAIServer& server();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace nestedfp::server
