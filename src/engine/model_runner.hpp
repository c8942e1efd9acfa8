#pragma once
// The Llama-family graph over a Backend, as a ModelExecutor (step.hpp): one execute() runs any
// mix of prefill chunks and decode tokens of many sequences, in the step's precision. The runner
// owns the paged KV cache (through the backend); the engine owns the block ids.
#include <functional>
#include <memory>

#include "engine/model_weights.hpp"
#include "nestedfp/backend.hpp"
#include "nestedfp/step.hpp"

namespace nestedfp::engine {

struct RunnerOptions {
  int num_kv_blocks = 0;      // > 0: exactly this many blocks
  size_t kv_cache_bytes = 0;  // else: as many blocks as fit (default 256 MiB)
  int max_model_len = 0;      // 0: config max_position_embeddings
  // FP8 steps quantize activations per token (NestedFP8). false: weights-only FP8 with fp16
  // activations, the "nested_fp8_weights_only" mode of REFERENCE.json (accuracy studies).
  bool fp8_activations = true;
};

// Called before each decoder linear with its input (accuracy tools capture activations).
// `linear` is one of q, k, v, o, gate, up, down; x.f16 is set in FP16 steps.
using LinearTap = std::function<void(int layer, const char* linear, const backend::Activation& x, int64_t M)>;

class ModelRunner final : public ModelExecutor {
 public:
  // Uploads the weights (the host copy may be dropped afterwards).
  ModelRunner(std::unique_ptr<backend::Backend> backend, const ModelWeights& weights,
              RunnerOptions options = {});
  ~ModelRunner() override;

  StepOutput execute(const StepInput& in) override;
  int num_kv_blocks() const override { return num_blocks_; }
  int vocab_size() const override { return config_.vocab_size; }
  int max_model_len() const override { return max_len_; }

  const io::ModelConfig& config() const { return config_; }
  backend::Backend& backend() { return *be_; }
  static size_t kv_bytes_per_block(const io::ModelConfig& c);
  void set_linear_tap(LinearTap tap) { tap_ = std::move(tap); }

 private:
  struct Layer;
  struct Scratch;
  void validate(const StepInput& in) const;
  void ensure_scratch(int64_t tokens);

  std::unique_ptr<backend::Backend> be_;
  io::ModelConfig config_;
  int num_blocks_ = 0, max_len_ = 0;
  bool fp8_acts_ = true;
  std::vector<Layer> layers_;
  backend::BufferPtr embed_, final_norm_;
  std::unique_ptr<backend::LinearWeight> lm_head_;
  std::unique_ptr<backend::Rope> rope_;
  std::unique_ptr<backend::KvCache> kv_;
  std::unique_ptr<Scratch> s_;
  LinearTap tap_;
};

// Hands a host linear weight (nested, fp8 or plain) to the backend.
std::unique_ptr<backend::LinearWeight> upload_linear(backend::Backend& be, const HostLinear& l);

}  // namespace nestedfp::engine
