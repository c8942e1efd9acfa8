#pragma once
// The Llama-family graph over a Backend, as a ModelExecutor (step.hpp): one execute() runs any
// mix of prefill chunks and decode tokens of many sequences, in the step's precision, and
// samples each sequence's next token on the backend's device. The runner owns the paged KV cache
// (through the backend); the engine owns the block ids. docs/DESIGN.md §3.3.
//
// Per step the runner builds one StepLayout (ids, positions, KV slots, the attention CSR arrays,
// logits rows, sampling parameters) and hands it to the backend once; scratch buffers are
// allocated once, for the largest step (max_num_batched_tokens), so device pointers never move.
#include <functional>
#include <memory>
#include <string>

#include "engine/fusion.hpp"
#include "engine/model_weights.hpp"
#include "engine/tensor_parallel.hpp"
#include "nestedfp/backend.hpp"
#include "nestedfp/step.hpp"

namespace nestedfp::engine {

struct TensorItem;

struct RunnerOptions {
  int num_kv_blocks = 0;      // > 0: exactly this many blocks
  size_t kv_cache_bytes = 0;  // else, on the cpu backend: as many blocks as fit (default 256 MiB)
  // else, on a GPU: this share of the device's memory holds weights + scratch + KV blocks.
  double gpu_memory_utilization = 0.90;
  int max_model_len = 0;              // 0: config max_position_embeddings
  int max_num_batched_tokens = 2048;  // most tokens per step (scratch is sized for it)
  int max_num_seqs = 256;             // most sequences per step
  // FP8 steps quantize activations per token (NestedFP8). false: weights-only FP8 with fp16
  // activations, the "nested_fp8_weights_only" mode of REFERENCE.json (accuracy studies).
  bool fp8_activations = true;
  // Tensor parallelism, FP8 steps (docs/DESIGN.md §3.14). true (--tp-fp8-numerics one-gpu):
  // o's and down's split inputs are quantized with the whole row's per-token scale (the max of
  // the ranks', one small all-reduce), and their partial outputs are summed in fp32 and rounded
  // to fp16 once, so the ranks compute what one GPU does up to the accumulation order. false
  // (per-rank, as vLLM): each slice its own scale, partial sums rounded to fp16 before the sum:
  // half the collectives' bytes and two fewer per layer, at ~0.1% perplexity on pystd-16m (FP8
  // amplifies the extra fp16 rounding).
  bool tp_fp8_one_gpu_numerics = true;
  // Decode steps replay a CUDA graph per (batch bucket, precision) on device backends
  // (--enforce-eager: false).
  bool cuda_graphs = true;
  // q, k, v run as one GEMM, and gate, up as one, where their weights agree (engine/fusion.hpp,
  // docs/DESIGN.md §3.4). false, or NESTEDFP_NO_FUSE=1 in the environment: separate GEMMs
  // (comparisons).
  bool fuse_projections = true;
};

// Where the weights come from when the runner loads them itself (streaming: each tensor goes to
// the backend as it is read, so no host copy of the model is ever whole).
struct LoadOptions {
  std::string model_dir;  // config.json (+ safetensors unless dummy)
  bool dummy = false;     // --load-format dummy: random weights for the config
  uint64_t seed = 0;      // of the dummy weights
  format::ScaleMode scale_mode = format::ScaleMode::None;
  bool nested = true;  // --weights nested|fp16 (fp16: a plain FP16 engine, no planes)
  LinearStorage storage = LinearStorage::Nested;  // FP8 baselines (accuracy studies)
  // Tensor parallelism: load only this rank's shard (docs/DESIGN.md §3.14; TpExecutor runs the
  // ranks). size 1: the whole model.
  TpShard shard;
};

// Called before each decoder linear with its input (accuracy tools capture activations).
// `linear` is one of q, k, v, o, gate, up, down; x.f16 is set in FP16 steps. A fused qkv
// (gate_up) reports its one input once per part, q, k, v (gate, up), before its GEMM.
using LinearTap =
    std::function<void(int layer, const char* linear, const backend::Activation& x, int64_t M)>;

// Memory the runner holds on its backend, in bytes (`bench engine`'s memory report).
struct RunnerMemory {
  size_t nested_linears = 0;  // decoder linears held nested: both planes, row exponents, biases
  size_t plain_linears = 0;   // decoder linears held plain FP16 (--weights fp16, or not nestable)
  size_t lm_head = 0, embedding = 0, norms = 0;
  size_t kv_cache = 0;
  int kv_blocks = 0;                         // allocated, the CUDA-graph pad block included
  size_t scratch = 0;                        // activations and logits for the largest step
  std::vector<backend::MemoryItem> backend;  // the backend's own workspaces
  size_t weights() const { return nested_linears + plain_linears + lm_head + embedding + norms; }
};

class ModelRunner final : public ModelExecutor {
 public:
  // Uploads host weights that are already split (the host copy may be dropped afterwards).
  ModelRunner(std::unique_ptr<backend::Backend> backend, const ModelWeights& weights,
              RunnerOptions options = {});
  // Streams the weights of `load` to the backend tensor by tensor (nesting them there).
  static std::unique_ptr<ModelRunner> load(std::unique_ptr<backend::Backend> backend,
                                           const LoadOptions& load, RunnerOptions options = {});
  ~ModelRunner() override;

  StepOutput execute(const StepInput& in) override;
  void launch(const StepInput& in) override;
  StepOutput collect() override;
  bool overlaps_host() const override { return be_->is_gpu(); }
  int num_kv_blocks() const override { return num_blocks_; }
  int vocab_size() const override { return config_.vocab_size; }
  int max_model_len() const override { return max_len_; }
  int max_step_tokens() const override { return opt_.max_num_batched_tokens; }

  const io::ModelConfig& config() const { return config_; }  // this rank's shard under TP
  const io::ModelConfig& full_config() const { return tp_ ? tp_->full : config_; }
  const LoadReport& load_report() const { return report_; }
  backend::Backend& backend() { return *be_; }
  static size_t kv_bytes_per_block(const io::ModelConfig& c);
  void set_linear_tap(LinearTap tap) { tap_ = std::move(tap); }
  // The communicator of a sharded runner (LoadOptions::shard), set before its first step.
  void set_communicator(backend::Communicator* comm);
  const TpShard* shard() const { return tp_ ? &tp_->shard : nullptr; }
  // Decode steps that replayed a captured CUDA graph (0 on the cpu backend or with eager steps).
  uint64_t graph_replays() const { return graph_replays_; }
  // true: decode steps run eagerly until set back (bench engine's eager timings); captured
  // graphs are kept.
  void pause_graphs(bool paused) { graphs_paused_ = paused; }
  RunnerMemory memory() const;
  // Layers whose q, k, v (gate, up) run as one GEMM (engine/fusion.hpp).
  struct FusedLayers {
    int qkv = 0, gate_up = 0;
  };
  FusedLayers fused_layers() const;

 private:
  struct Layer;
  struct Scratch;
  ModelRunner(std::unique_ptr<backend::Backend> backend, io::ModelConfig config,
              RunnerOptions options);
  void take(TensorItem&& t, const LoadOptions& load);  // one streamed tensor
  void place(Slot slot, int layer, std::unique_ptr<backend::LinearWeight> w);
  void count(const backend::LinearWeight& w, const std::string& name, bool nested_load);
  // A layer's fused group whose parts are all in (take); its weights fused or one per part.
  void take_fused(FuseCollector& g, Fusion f, int layer, const backend::LinearSpec& spec,
                  bool nested_load);
  void finish_setup();  // rope, scratch, KV cache
  void validate(const StepInput& in) const;
  void build_layout(const StepInput& in);
  void forward(Precision precision);
  // Logits and samples of the step; with may_defer, the last group's samples may be left queued
  // for collect() (returns true then).
  bool logits_and_samples(const StepInput& in, StepOutput& out, bool may_defer);
  int graph_batch(const StepInput& in) const;
  void pad_layout(int B);
  // Replays (or captures) the decode graph of batch B; true when its samples are left queued.
  bool run_graph(const StepInput& in, int B, StepOutput& out);
  struct SampleOwner {
    int32_t seq = 0, row = 0;  // sequence index in the step, row within its chunk
  };
  void store_sample(const StepInput& in, SampleOwner o, SampledToken&& t, StepOutput& out) const;

  std::unique_ptr<backend::Backend> be_;
  io::ModelConfig config_;
  RunnerOptions opt_;
  int num_blocks_ = 0, max_len_ = 0, max_logit_rows_ = 0;
  std::vector<Layer> layers_;
  backend::BufferPtr embed_, final_norm_;
  std::unique_ptr<backend::LinearWeight> lm_head_;
  std::unique_ptr<backend::Rope> rope_;
  std::unique_ptr<backend::KvCache> kv_;
  std::unique_ptr<Scratch> s_;
  backend::StepLayout layout_;
  mutable std::vector<uint8_t> seen_;  // scratch of check_penalties (vocab entries, all zero)
  std::vector<int32_t>
      host_rows_;  // per logits row: index of the sequence wanting it on the host, or -1
  std::vector<SampleOwner> sample_owner_;  // per sample row (layout order): whose token it is
  bool graphs_ = false;
  int pad_block_ = -1;              // KV block of the graph pads (not given to the engine)
  std::vector<int> graph_buckets_;  // batch sizes decode graphs are captured for
  uint64_t graph_replays_ = 0;
  bool graphs_paused_ = false;
  LoadReport report_;
  LinearTap tap_;
  bool fuse_ = true;                   // RunnerOptions::fuse_projections, NESTEDFP_NO_FUSE
  std::vector<FuseCollector> fusing_;  // while loading: per layer, qkv and gate_up parts
  // The launched step (launch() .. collect()): its input, output so far, and the sample rows
  // of logits rows [collect_begin_, collect_begin_ + collect_rows_) still queued on the device
  // (rows < 0: none).
  const StepInput* in_flight_ = nullptr;
  StepOutput out_;
  int64_t collect_begin_ = 0, collect_rows_ = -1;
  size_t collect_owner_ = 0;    // the first sample_owner_ entry of the queued rows
  std::unique_ptr<TpPlan> tp_;  // set when this runner is one rank of a sharded model
};

// Hands a host linear weight (nested, fp8 or plain) to the backend.
std::unique_ptr<backend::LinearWeight> upload_linear(backend::Backend& be, const HostLinear& l);

}  // namespace nestedfp::engine
