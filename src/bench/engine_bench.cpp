// The measurements of `bench engine` (engine_bench.hpp, docs/MEASURING.md §5.5). Everything runs
// on the calling thread through ModelRunner::execute or Engine::step, so each timing is the wall
// time a serving step loop would see.
#include "bench/engine_bench.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <set>

#include "engine/op_names.hpp"
#include "engine/tp_executor.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}
double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string engine_label(const std::string& weights, Precision p) {
  return weights == "fp16" ? "plain FP16" : p == Precision::FP16 ? "NestedFP16" : "NestedFP8";
}

struct Seq {
  int64_t id = 0;
  std::vector<int32_t> blocks;
  int32_t len = 0, last = 0;
};

SeqChunk decode_chunk(const Seq& s) {
  SeqChunk c;
  c.seq_id = s.id, c.start_pos = s.len, c.block_table = s.blocks, c.tokens = {s.last};
  c.need_logits = false, c.sample = true;
  c.sampling.temperature = 0;
  return c;
}

// One decode step of every sequence (greedy, on the device); returns its wall time in ms.
double decode_step(ModelExecutor& ex, std::vector<Seq>& seqs, Precision p) {
  StepInput in;
  in.precision = p;
  for (const Seq& s : seqs) in.seqs.push_back(decode_chunk(s));
  const auto t0 = Clock::now();
  const StepOutput o = ex.execute(in);
  const double ms = ms_since(t0);
  for (size_t i = 0; i < seqs.size(); ++i) seqs[i].len += 1, seqs[i].last = o.tokens[i];
  return ms;
}

// Prefills every sequence to `context` random tokens, in steps of at most `budget` tokens.
void prefill_to(ModelExecutor& ex, std::vector<Seq>& seqs, int context, int budget, int vocab,
                std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  for (;;) {
    StepInput in;
    int left = budget;
    for (const Seq& s : seqs) {
      if (s.len >= context || left == 0) continue;
      const int n = std::min(left, context - s.len);
      SeqChunk c;
      c.seq_id = s.id, c.start_pos = s.len, c.block_table = s.blocks;
      for (int i = 0; i < n; ++i) c.tokens.push_back(tok(rng));
      c.need_logits = false, c.sample = s.len + n == context, c.sampling.temperature = 0;
      in.seqs.push_back(std::move(c));
      left -= n;
    }
    if (in.seqs.empty()) return;
    const StepOutput o = ex.execute(in);
    for (size_t i = 0; i < in.seqs.size(); ++i) {
      Seq& s = *std::find_if(seqs.begin(), seqs.end(),
                             [&](const Seq& q) { return q.id == in.seqs[i].seq_id; });
      s.len += int32_t(in.seqs[i].tokens.size());
      if (in.seqs[i].sample) s.last = o.tokens[i];
    }
  }
}

// Prefill throughput: each step is one fresh sequence of `chunk` tokens (its KV overwrites the
// same blocks), the last row sampled.
double prefill_tok_s(ModelExecutor& ex, Precision p, int chunk, int steps, int vocab,
                     std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  std::vector<double> ms;
  for (int it = 0; it < steps + 2; ++it) {
    StepInput in;
    in.precision = p;
    SeqChunk c;
    c.seq_id = 1'000'000 + it, c.start_pos = 0;
    for (int b = 0; b < (chunk + kKvBlockSize - 1) / kKvBlockSize; ++b) c.block_table.push_back(b);
    for (int i = 0; i < chunk; ++i) c.tokens.push_back(tok(rng));
    c.need_logits = false, c.sample = true, c.sampling.temperature = 0;
    in.seqs.push_back(std::move(c));
    const auto t0 = Clock::now();
    ex.execute(in);
    if (it >= 2) ms.push_back(ms_since(t0));  // two warm-up steps
  }
  return chunk / median(ms) * 1e3;
}

struct GemmBytes {
  double qkv, o, gate_up, down, lm_head;
};
GemmBytes gemm_bytes(const io::ModelConfig& c, bool fp8) {
  const double H = c.hidden_size, I = c.intermediate_size, L = c.num_layers,
               qd = double(c.num_heads) * c.head_dim, kvd = double(c.num_kv_heads) * c.head_dim,
               b = fp8 ? 1.0 : 2.0;
  return {L * H * (qd + 2 * kvd) * b, L * qd * H * b, L * 2 * I * H * b, L * I * H * b,
          2.0 * c.vocab_size * H};
}

// Mean time per op kind over `steps` profiled eager decode steps (one profile per step).
json profile_decode(ModelExecutor& ex, engine::ModelRunner& r, std::vector<Seq>& seqs, Precision p,
                    int steps, const io::ModelConfig& cfg, double bw) {
  auto& be = r.backend();
  // Unprofiled eager steps first: what the marks themselves cost is profiled - eager.
  std::vector<double> eager;
  for (engine::ModelRunner* rank : engine::ranks_of(ex)) rank->pause_graphs(true);
  for (int it = 0; it <= steps; ++it) {
    const double ms = decode_step(ex, seqs, p);
    if (it > 0) eager.push_back(ms);
  }
  for (engine::ModelRunner* rank : engine::ranks_of(ex)) rank->pause_graphs(false);
  std::map<std::string, double> sum;
  std::vector<std::string> order;
  std::vector<double> walls;
  for (int it = 0; it <= steps; ++it) {  // the first step warms the eager path up
    be.profile_begin();
    const double wall = decode_step(ex, seqs, p);
    const std::vector<backend::OpTime> ops = be.profile_end();
    if (it == 0) continue;
    walls.push_back(wall);
    for (const auto& t : ops) {
      if (!sum.count(t.op)) order.push_back(t.op);
      sum[t.op] += t.ms;
    }
  }
  const GemmBytes gb = gemm_bytes(cfg, p == Precision::FP8 && r.load_report().nested > 0);
  const std::map<std::string, double> bytes = {{engine::op::kQkv, gb.qkv},
                                               {engine::op::kO, gb.o},
                                               {engine::op::kGateUp, gb.gate_up},
                                               {engine::op::kDown, gb.down},
                                               {engine::op::kLmHead, gb.lm_head}};
  double total = 0;
  for (const auto& [op, ms] : sum) total += ms / steps;
  json ops = json::array();
  for (const std::string& op : order) {
    const double ms = sum[op] / steps;
    json o = {{"op", op}, {"ms", ms}, {"share", total > 0 ? ms / total : 0.0}};
    if (auto it = bytes.find(op); it != bytes.end()) {
      o["weight_bytes"] = it->second;
      o["GBps"] = ms > 0 ? it->second / ms / 1e6 : 0.0;
      o["copy_fraction"] = bw > 0 && ms > 0 ? it->second / (ms * 1e-3) / bw : 0.0;
    }
    ops.push_back(o);
  }
  double mean_wall = 0;
  for (double w : walls) mean_wall += w / double(walls.size());
  return {{"step_ms", mean_wall}, {"eager_ms", median(eager)}, {"sum_ms", total}, {"ops", ops}};
}

// Decode steps alternating FP16 / FP8 against runs of one precision (all graph replays).
json switch_cost(ModelExecutor& r, std::vector<Seq>& seqs, int steps) {
  for (int i = 0; i < 2; ++i)  // graphs of both precisions captured and warm
    decode_step(r, seqs, Precision::FP16), decode_step(r, seqs, Precision::FP8);
  std::vector<double> same16, same8, alt16, alt8;
  for (int i = 0; i < steps; ++i) same16.push_back(decode_step(r, seqs, Precision::FP16));
  for (int i = 0; i < steps; ++i) same8.push_back(decode_step(r, seqs, Precision::FP8));
  for (int i = 0; i < steps; ++i) {
    alt16.push_back(decode_step(r, seqs, Precision::FP16));
    alt8.push_back(decode_step(r, seqs, Precision::FP8));
  }
  const double s16 = median(same16), s8 = median(same8), a16 = median(alt16), a8 = median(alt8);
  const double cost = ((a16 - s16) + (a8 - s8)) / 2;
  return {{"batch", int(seqs.size())},
          {"same_fp16_ms", s16},
          {"same_fp8_ms", s8},
          {"alternating_fp16_ms", a16},
          {"alternating_fp8_ms", a8},
          {"cost_ms", cost},
          {"cost_fraction", cost / ((s16 + s8) / 2)}};
}

// Times the offline run's steps. A step's window runs from launch() to the end of collect(): the
// device is busy (or being fed) inside it, and the engine does the previous step's output work
// there when the executor overlaps (§3.15). Host time outside the windows leaves the device idle.
class TimedExecutor final : public ModelExecutor {
 public:
  explicit TimedExecutor(ModelExecutor& inner) : inner_(inner) {}
  StepOutput execute(const StepInput& in) override {  // speculative drafts
    const auto t0 = Clock::now();
    StepOutput o = inner_.execute(in);
    ms += ms_since(t0);
    count(in);
    return o;
  }
  void launch(const StepInput& in) override {
    t_launch_ = Clock::now();
    inner_.launch(in);
    launch_ms += ms_since(t_launch_);
    count(in);
  }
  StepOutput collect() override {
    const auto c0 = Clock::now();
    StepOutput o = inner_.collect();
    const auto end = Clock::now();
    collect_ms += std::chrono::duration<double, std::milli>(end - c0).count();
    ms += std::chrono::duration<double, std::milli>(end - t_launch_).count();
    return o;
  }
  bool overlaps_host() const override { return inner_.overlaps_host(); }
  int num_kv_blocks() const override { return inner_.num_kv_blocks(); }
  int vocab_size() const override { return inner_.vocab_size(); }
  int max_model_len() const override { return inner_.max_model_len(); }
  int max_step_tokens() const override { return inner_.max_step_tokens(); }
  double ms = 0;                         // inside step windows
  double launch_ms = 0, collect_ms = 0;  // in the executor's two halves
  int64_t steps = 0, tokens = 0;

 private:
  void count(const StepInput& in) {
    ++steps;
    for (const SeqChunk& c : in.seqs) tokens += int64_t(c.tokens.size());
  }
  ModelExecutor& inner_;
  Clock::time_point t_launch_;
};

json offline(ModelExecutor& ex, engine::ModelRunner& r, const EngineBenchOptions& o, Precision p) {
  TimedExecutor timed(ex);
  EngineConfig ec;
  ec.max_num_batched_tokens = o.max_num_batched_tokens, ec.max_num_seqs = o.max_num_seqs;
  ec.max_queue = size_t(o.offline_requests);
  ec.precision = to_string(p);
  ec.enable_prefix_caching = false;  // random prompts share nothing; no lookups timed
  // Output text as a server makes it (detokenization, stop-string scan); the placeholder stands
  // in for the model's tokenizer (random ids, dummy configs without tokenizer.json).
  const Tokenizer tokenizer = Tokenizer::placeholder(r.vocab_size());
  ec.text_decoder = text_decoder_factory(tokenizer);
  Engine engine(timed, ec);
  std::mt19937 rng(uint32_t(o.seed));
  std::uniform_int_distribution<int32_t> tok(0, r.vocab_size() - 1);
  std::vector<GenerationRequest> reqs(size_t(o.offline_requests));
  for (size_t i = 0; i < reqs.size(); ++i) {
    for (int t = 0; t < o.offline_input; ++t) reqs[i].prompt.push_back(tok(rng));
    reqs[i].max_tokens = o.offline_output, reqs[i].ignore_eos = true;
    reqs[i].sampling.temperature = 1.0f, reqs[i].sampling.seed = o.seed + i;
  }
  const uint64_t replays0 = r.graph_replays();
  const auto t0 = Clock::now();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (auto& q : reqs) streams.push_back(engine.add_request(std::move(q)));
  std::vector<size_t> live(streams.size());
  for (size_t i = 0; i < live.size(); ++i) live[i] = i;
  int64_t out_tokens = 0;
  double drain_ms = 0;
  bool any = true;
  while (any) {
    any = engine.step();
    const auto d0 = Clock::now();  // what a client does with the events (here: count them)
    for (size_t k = 0; k < live.size();) {
      auto& s = *streams[live[k]];
      while (auto ev = s.next(std::chrono::milliseconds(0))) {
        out_tokens += int64_t(ev->token_ids.size());
        if (ev->finish == FinishReason::Error)
          fail("bench engine: offline request failed: {}", ev->error);
      }
      if (s.done())
        live[k] = live.back(), live.pop_back();
      else
        ++k;
    }
    drain_ms += ms_since(d0);
  }
  const double wall_ms = ms_since(t0);
  if (!live.empty() || out_tokens != int64_t(o.offline_requests) * o.offline_output)
    fail("bench engine: offline run ended with {} unfinished requests and {} of {} output tokens",
         live.size(), out_tokens, int64_t(o.offline_requests) * o.offline_output);
  const double s = wall_ms / 1e3;
  const double in_tokens = double(o.offline_requests) * o.offline_input;
  const EngineStats st = engine.stats();
  return {{"requests", o.offline_requests},
          {"input_tokens", o.offline_input},
          {"output_tokens", o.offline_output},
          {"wall_s", s},
          {"requests_per_s", o.offline_requests / s},
          {"output_tok_s", double(out_tokens) / s},
          {"total_tok_s", (double(out_tokens) + in_tokens) / s},
          {"steps", timed.steps},
          {"graph_steps", r.graph_replays() - replays0},
          {"mean_step_tokens", timed.steps ? double(timed.tokens) / double(timed.steps) : 0.0},
          {"executor_s", timed.ms / 1e3},
          {"overlap", timed.overlaps_host()},
          // Engine output work done inside the windows, while the device ran the next step.
          {"overlapped_host_s", std::max(0.0, timed.ms - timed.launch_ms - timed.collect_ms) / 1e3},
          {"host_s", (wall_ms - timed.ms - drain_ms) / 1e3},
          {"client_drain_s", drain_ms / 1e3},
          {"host_fraction", (wall_ms - timed.ms - drain_ms) / wall_ms},
          {"preemptions", st.preemptions}};
}

json memory_json(const engine::ModelRunner& r) {
  const engine::RunnerMemory m = r.memory();
  json backend = json::array();
  size_t ws = 0;
  for (const auto& it : m.backend)
    backend.push_back({{"what", it.what}, {"bytes", it.bytes}}), ws += it.bytes;
  json j = {{"nested_linears", m.nested_linears},
            {"plain_linears", m.plain_linears},
            {"lm_head", m.lm_head},
            {"embedding", m.embedding},
            {"norms", m.norms},
            {"weights", m.weights()},
            {"kv_cache", m.kv_cache},
            {"kv_blocks", m.kv_blocks},
            {"kv_bytes_per_block", engine::ModelRunner::kv_bytes_per_block(r.config())},
            {"scratch", m.scratch},
            {"backend_workspaces", backend},
            {"backend_workspace_total", ws}};
  const auto [free_b, total_b] = const_cast<engine::ModelRunner&>(r).backend().memory_info();
  if (total_b > 0) j["device_used"] = total_b - free_b, j["device_total"] = total_b;
  return j;
}

// Linear weights as the alternatives would hold them (from the config alone).
json memory_from_config(const io::ModelConfig& c) {
  const double H = c.hidden_size, I = c.intermediate_size, L = c.num_layers,
               qd = double(c.num_heads) * c.head_dim, kvd = double(c.num_kv_heads) * c.head_dim;
  const double params = L * (H * (qd + 2 * kvd) + qd * H + 3 * H * I);
  const double rows = L * ((qd + 2 * kvd) + H + 2 * I + H);
  const double other = 2.0 * c.vocab_size * H * (c.tie_word_embeddings ? 1 : 2);
  return {{"linear_params", params},
          {"linear_fp16", 2 * params},
          {"linear_nested", 2 * params},
          {"linear_nested_channel", 2 * params + rows},
          {"linear_fp8_copy", params + 4 * rows},
          {"linear_fp16_plus_fp8", 3 * params + 4 * rows},
          {"embedding_and_lm_head", other},
          {"note",
           "fp8 copy = E4M3 bytes + one fp32 scale per output row; nested = upper + lower planes "
           "(+ one int8 exponent per row with --nested-scale channel)"}};
}

}  // namespace

double decode_weight_bytes(const io::ModelConfig& c, bool fp8) {
  const GemmBytes g = gemm_bytes(c, fp8);
  return g.qkv + g.o + g.gate_up + g.down + g.lm_head;
}

json run_engine_bench(const EngineBenchOptions& o, const RunnerFactory& factory, json result) {
  if (o.batches.empty()) fail("bench engine: no decode batch sizes");
  for (int b : o.batches)
    if (b <= 0) fail("bench engine: batch sizes must be positive, got {}", b);
  const double bw = o.copy_bandwidth;
  // Sequences of the decode points: the union of every batch measured, longest context first.
  std::set<int> all(o.batches.begin(), o.batches.end());
  all.insert(o.switch_batches.begin(), o.switch_batches.end());
  all.insert(o.profile_batches.begin(), o.profile_batches.end());
  const int max_b = *all.rbegin();
  // Tokens each sequence gains after its prefill: decode points, switch runs (4 warm-up steps,
  // then 4 x switch_steps), eager and profiled steps (one warm-up each), and a margin.
  const int extra =
      2 * (o.warmup + o.steps) + 4 * o.switch_steps + 4 + 4 * (o.profile_steps + 1) + 8;
  const int per_seq = (o.context + extra + kKvBlockSize - 1) / kKvBlockSize + 1;
  const int offline_blocks =
      o.offline_requests > 0
          ? o.max_num_seqs *
                ((o.offline_input + o.offline_output + kKvBlockSize - 1) / kKvBlockSize + 1)
          : 0;
  const int kv_blocks = std::max(
      {max_b * per_seq + 8, offline_blocks, (o.prefill_chunk + kKvBlockSize - 1) / kKvBlockSize});
  result["options"] = {{"weights", o.weights},
                       {"batches", o.batches},
                       {"context", o.context},
                       {"steps", o.steps},
                       {"warmup", o.warmup},
                       {"prefill_chunk", o.prefill_chunk},
                       {"prefill_steps", o.prefill_steps},
                       {"switch_batches", o.switch_batches},
                       {"switch_steps", o.switch_steps},
                       {"profile_batches", o.profile_batches},
                       {"profile_steps", o.profile_steps},
                       {"offline_requests", o.offline_requests},
                       {"offline_input", o.offline_input},
                       {"offline_output", o.offline_output},
                       {"max_num_batched_tokens", o.max_num_batched_tokens},
                       {"max_num_seqs", o.max_num_seqs},
                       {"kv_blocks", kv_blocks}};
  result["copy_bandwidth_GBps"] = bw / 1e9;
  json decode = json::array(), prefill = json::array(), sw = json::array(),
       breakdown = json::array(), offl = json::array(), mem = json::array();
  std::mt19937 rng(uint32_t(o.seed));
  for (const std::string& w : o.weights) {
    if (w != "fp16" && w != "nested")
      fail("bench engine: weights modes are fp16 and nested, got '{}'", w);
    auto exec = factory(w, kv_blocks, std::max(max_b, o.max_num_seqs), o.max_num_batched_tokens);
    engine::ModelRunner* runner = engine::ranks_of(*exec).front();  // rank 0 under TP
    // Per GPU under tensor parallelism: the shard's heads and intermediate size.
    const io::ModelConfig& cfg = runner->config();
    const io::ModelConfig& full = runner->full_config();
    if (!result.contains("config"))
      result["config"] = {{"model_type", full.model_type}, {"layers", full.num_layers},
                          {"hidden", full.hidden_size},    {"intermediate", full.intermediate_size},
                          {"heads", full.num_heads},       {"kv_heads", full.num_kv_heads},
                          {"head_dim", full.head_dim},     {"vocab", full.vocab_size}},
      result["memory_from_config"] = memory_from_config(full);
    const engine::ModelRunner::FusedLayers fl = runner->fused_layers();
    result["fused_layers"][w] = {{"qkv", fl.qkv}, {"gate_up", fl.gate_up}};
    std::vector<Precision> precs = {Precision::FP16};
    if (w == "nested") precs.push_back(Precision::FP8);
    const bool nested = runner->load_report().nested > 0;
    for (Precision p : precs) {
      const double tps =
          prefill_tok_s(*exec, p, o.prefill_chunk, o.prefill_steps, cfg.vocab_size, rng);
      spdlog::info("{}: prefill {:.0f} tok/s ({}-token chunks)", engine_label(w, p), tps,
                   o.prefill_chunk);
      prefill.push_back(
          {{"engine", engine_label(w, p)}, {"chunk", o.prefill_chunk}, {"tok_s", tps}});
    }
    for (int B : all) {
      std::vector<Seq> seqs(static_cast<size_t>(B));
      for (int i = 0; i < B; ++i) {
        seqs[size_t(i)].id = i;
        for (int b = 0; b < per_seq; ++b) seqs[size_t(i)].blocks.push_back(i * per_seq + b);
      }
      prefill_to(*exec, seqs, o.context, o.max_num_batched_tokens, cfg.vocab_size, rng);
      if (std::count(o.batches.begin(), o.batches.end(), B))
        for (Precision p : precs) {
          const int ctx0 = seqs[0].len;
          const uint64_t replays0 = runner->graph_replays();
          std::vector<double> ms;
          for (int it = 0; it < o.warmup + o.steps; ++it) {
            const double t = decode_step(*exec, seqs, p);
            if (it >= o.warmup) ms.push_back(t);
          }
          const double step = median(ms);
          const double floor_ms =
              bw > 0 ? decode_weight_bytes(cfg, p == Precision::FP8 && nested) / bw * 1e3 : 0;
          spdlog::info("{}: batch {} context {}: decode step {:.3f} ms (floor {:.3f} ms)",
                       engine_label(w, p), B, ctx0, step, floor_ms);
          decode.push_back({{"engine", engine_label(w, p)},
                            {"weights", w},
                            {"precision", to_string(p)},
                            {"batch", B},
                            {"context", ctx0},
                            {"step_ms", step},
                            {"tok_s", B / step * 1e3},
                            {"floor_ms", floor_ms},
                            {"floor_fraction", floor_ms > 0 ? floor_ms / step : 0.0},
                            {"graph_steps", runner->graph_replays() - replays0}});
        }
      if (w == "nested" && std::count(o.switch_batches.begin(), o.switch_batches.end(), B)) {
        json s = switch_cost(*exec, seqs, o.switch_steps);
        spdlog::info("precision switch at batch {}: {:+.4f} ms per step", B,
                     s["cost_ms"].get<double>());
        sw.push_back(s);
      }
      if (std::count(o.profile_batches.begin(), o.profile_batches.end(), B))
        for (Precision p : precs) {
          json b = profile_decode(*exec, *runner, seqs, p, o.profile_steps, cfg, bw);
          b["engine"] = engine_label(w, p), b["batch"] = B;
          spdlog::info("{}: batch {}: eager profiled step {:.3f} ms, ops sum {:.3f} ms",
                       engine_label(w, p), B, b["step_ms"].get<double>(),
                       b["sum_ms"].get<double>());
          breakdown.push_back(b);
        }
    }
    if (o.offline_requests > 0)
      for (Precision p : precs) {
        json r = offline(*exec, *runner, o, p);
        r["engine"] = engine_label(w, p);
        spdlog::info("{}: offline {} requests in {:.2f} s ({:.2f} req/s, {:.0f} output tok/s)",
                     engine_label(w, p), o.offline_requests, r["wall_s"].get<double>(),
                     r["requests_per_s"].get<double>(), r["output_tok_s"].get<double>());
        offl.push_back(r);
      }
    json m = memory_json(*runner);
    m["weights_mode"] = w;
    mem.push_back(m);
  }
  result["decode"] = decode, result["prefill"] = prefill, result["switch"] = sw;
  result["breakdown"] = breakdown, result["offline"] = offl, result["memory"] = mem;
  add_goals(result);
  return result;
}

}  // namespace nestedfp::bench
