#pragma once
// Everything `nestedfp serve` runs, in one object (the CLI and the HTTP tests share it):
// tokenizer + weights -> cpu ModelRunner -> Engine (step thread) -> OpenAIServer.
#include <memory>
#include <string>

#include "nestedfp/engine.hpp"
#include "nestedfp/format.hpp"
#include "server/openai_server.hpp"

namespace nestedfp::server {

struct ServeConfig {
  std::string model_dir;
  format::ScaleMode nested_scale = format::ScaleMode::None;
  EngineConfig engine;  // text_decoder and eos ids are filled from the tokenizer
  ServerOptions server; // model_name defaults to the model directory's name
  int cpu_threads = 0;  // 0: all cores
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
