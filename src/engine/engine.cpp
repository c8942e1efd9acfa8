#include "nestedfp/engine.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <span>

#include "engine/engine_impl.hpp"

namespace nestedfp {

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Abort: return "abort";
    case FinishReason::Error: return "error";
    default: return "";
  }
}

// ---- RequestStream ------------------------------------------------------------------------

void RequestStream::push(RequestEvent ev) {
  {
    std::lock_guard lk(mu_);
    if (final_pushed_) return;
    final_pushed_ = ev.finish != FinishReason::None;
    pending_.push_back(std::move(ev));
  }
  cv_.notify_all();
}

std::optional<RequestEvent> RequestStream::next(std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  if (final_taken_) return std::nullopt;
  // A zero timeout is a poll: no condition-variable wait (a timed wait is a system call even when
  // it expires at once, and an offline client polls thousands of streams per step).
  if (timeout.count() <= 0 ? pending_.empty()
                           : !cv_.wait_for(lk, timeout, [&] { return !pending_.empty(); }))
    return std::nullopt;
  RequestEvent out = std::move(pending_.front());
  for (size_t i = 1; i < pending_.size(); ++i) {
    auto& e = pending_[i];
    out.token_ids.insert(out.token_ids.end(), e.token_ids.begin(), e.token_ids.end());
    for (auto& l : e.logprobs) out.logprobs.push_back(std::move(l));
    out.text += e.text;
    if (!e.prompt_logprobs.empty()) out.prompt_logprobs = std::move(e.prompt_logprobs);
    out.finish = e.finish;
    out.error = std::move(e.error);
    out.prompt_tokens = e.prompt_tokens;
    out.completion_tokens = e.completion_tokens;
  }
  pending_.clear();
  final_taken_ = out.finish != FinishReason::None;
  return out;
}

bool RequestStream::done() const {
  std::lock_guard lk(mu_);
  return final_taken_;
}

// ---- Engine -------------------------------------------------------------------------------

Engine::Impl::Impl(ModelExecutor& e, EngineConfig c) : exec(e), cfg(std::move(c)) {
  overlap = exec.overlaps_host();
  vocab = exec.vocab_size();
  if (vocab <= 0) fail("model executor reports vocab size {}", vocab);
  int blocks = exec.num_kv_blocks();
  if (cfg.num_kv_blocks > 0) {
    if (cfg.num_kv_blocks > blocks)
      fail("--kv-blocks {} exceeds the {} KV blocks the executor allocated", cfg.num_kv_blocks,
           blocks);
    blocks = cfg.num_kv_blocks;
  }
  if (cfg.max_queue < 1) fail("--max-queue must be at least 1");
  if (cfg.max_num_batched_tokens > exec.max_step_tokens())
    fail("--max-num-batched-tokens {} exceeds the {} tokens a step of the model executor holds",
         cfg.max_num_batched_tokens, exec.max_step_tokens());
  bm = std::make_unique<engine::BlockManager>(blocks, cfg.enable_prefix_caching);
  sched = std::make_unique<engine::Scheduler>(
      *bm, engine::SchedulerConfig{cfg.max_num_batched_tokens, cfg.max_num_seqs});
  max_len = exec.max_model_len();
  if (cfg.max_model_len > 0) {
    if (cfg.max_model_len > max_len)
      fail("--max-model-len {} exceeds the model's context of {} tokens", cfg.max_model_len,
           max_len);
    max_len = cfg.max_model_len;
  }
  // One sequence must always fit in the pool alone, or preemption could not make progress.
  if (max_len > blocks * kKvBlockSize) {
    spdlog::warn("max model length {} capped to {} tokens: the KV cache holds {} blocks of {}",
                 max_len, blocks * kKvBlockSize, blocks, kKvBlockSize);
    max_len = blocks * kKvBlockSize;
  }
  if (!cfg.latency_model_file.empty()) {
    fit_priors(latency, load_step_timings(cfg.latency_model_file), cfg.latency_model_file);
  } else if (is_slo_spec(cfg.precision)) {
    auto t = calibrate_steps(exec, cfg.max_num_batched_tokens, cfg.max_num_seqs, blocks, max_len);
    fit_priors(latency, t, "latency calibration");
    spdlog::info("slo latency model calibrated in {} steps", 3 * t.size());
  }
  policy = make_precision_policy(cfg.precision, policy_context());
  cfg.precision = policy->spec();
  spec = parse_speculative(cfg.speculative);
  cfg.speculative = spec.spec();
}

// Drafts to ask the scheduler for after r's next decode token: none for requests whose sampling
// reads per-token state the drafts would have to update (penalties, min_tokens) or that want
// logprobs; at most what max_tokens and the context leave after that token.
int Engine::Impl::draft_want(const Record& r) const {
  if (!spec.enabled || r.penalties.active() || r.req.logprobs >= 0) return 0;
  int k =
      spec.adaptive ? choose_draft_len(r.acceptance.rate(), spec.max_k, spec.draft_cost) : spec.k;
  k = std::min(k, r.req.max_tokens - r.generated - 1);
  k = std::min(k, max_len - static_cast<int>(r.seq.tokens.size()));
  return std::max(0, k);
}

bool Engine::Impl::step() {
  std::lock_guard step_lk(step_mu);
  struct Work {
    Record* rec;
    engine::ScheduledChunk chunk;
    std::optional<int32_t> token;
    LogprobInfo token_lp;
    std::vector<std::pair<int, LogprobInfo>> prompt_lps;  // (position of the scored token, lp)
    int spec = -1;                                        // its speculative cycle in `specs`
  };
  std::vector<Work> work;
  std::vector<engine::SpecSeq> specs;
  StepInput in;
  {
    std::lock_guard lk(mu);
    if (spec.enabled)
      for (auto& [id, r] : recs) r->seq.draft_want = r->done ? 0 : draft_want(*r);
    auto chunks = sched->schedule();
    if (chunks.empty()) {
      flush_emits();
      if (!has_work()) idle_cv.notify_all();  // the flush may have ended the last request
      return false;
    }
    StepLoad load;
    for (auto& c : chunks) {
      Record* r = recs.at(c.seq->id).get();
      r->in_flight = true;
      SeqChunk sc;
      sc.seq_id = c.seq->id;
      sc.tokens.assign(c.seq->tokens.begin() + c.start,
                       c.seq->tokens.begin() + c.start + c.num_tokens);
      sc.start_pos = c.start;
      sc.block_table = c.seq->blocks;
      // The executor samples on its device; the request's generator supplies the one uniform
      // draw per sampled token here, so seeds mean the same on every backend.
      sc.sample = c.need_logits;
      sc.need_logits = false;
      sc.need_all_logits = c.need_all_logits;
      if (sc.sample) {
        sc.sampling = r->sampler->params();
        if (sc.sampling.temperature > 0.f) sc.uniform = r->sampler->next_uniform();
        sc.top_logprobs = r->req.logprobs >= 0 ? std::max(0, r->req.logprobs) : -1;
        // The record outlives the step (in_flight) and commits tokens only after it.
        if (r->penalties.active()) sc.penalties = &r->penalties.row();
      }
      in.seqs.push_back(std::move(sc));
      load.num_tokens += c.num_tokens;
      load.num_seqs += 1;
      load.num_decode_seqs += c.decode ? 1 : 0;
      work.push_back({r, c, std::nullopt, {}, {}});
    }
    if (policy->needs_queue()) {  // requests still without a first token, oldest first
      auto now = Clock::now();
      std::vector<std::pair<uint64_t, QueuedPrompt>> q;
      for (auto& [id, r] : recs)
        // Samples 1.. of an n > 1 request (forks) reuse sample 0's prompt KV: one prompt.
        if (!r->done && r->generated == 0 && r->seq.prompt_len > r->seq.num_computed &&
            !r->seq.fork_of)
          q.push_back({r->seq.arrival,
                       {seconds(now - r->arrival), r->seq.prompt_len - r->seq.num_computed,
                        r->seq.arrival}});
      std::sort(q.begin(), q.end(), [](auto& a, auto& b) { return a.first < b.first; });
      for (auto& e : q) load.prompts.push_back(e.second);
      load.now_s = seconds(now.time_since_epoch());  // dates the arrivals (slo's forecast)
    }
    in.precision = policy->choose(load);
    // Speculation verifies in FP16: steps the policy makes FP8 decode plainly (their draft
    // blocks go back in Scheduler::complete).
    for (size_t i = 0; i < work.size() && in.precision == Precision::FP16; ++i) {
      if (work[i].chunk.draft <= 0) continue;
      engine::SpecSeq sp;
      sp.index = i;
      sp.k = work[i].chunk.draft;
      sp.sampling = in.seqs[i].sampling;
      sp.sampler = work[i].rec->sampler.get();
      sp.first_uniform = in.seqs[i].uniform;
      work[i].spec = static_cast<int>(specs.size());
      specs.push_back(std::move(sp));
    }
  }

  auto t0 = Clock::now();
  StepOutput out;
  std::string error;
  std::vector<engine::DraftStep> drafts;
  double draft_seconds = 0;
  bool launched = false;
  try {
    if (!specs.empty()) {
      drafts = engine::run_drafts(exec, in, specs);
      for (auto& d : drafts) draft_seconds += d.seconds;
    }
    exec.launch(in);
    launched = true;
  } catch (const std::exception& e) {
    error = e.what();
    spdlog::error("engine step failed: {}", error);
  }
  double flush_seconds = 0;  // host work inside the step's window: not the step's time
  {                          // the previous step's output work, while the device runs this one
    const auto f0 = Clock::now();
    std::lock_guard lk(mu);  // abort() may flush too
    if (!emits.empty()) flush_emits();
    flush_seconds = seconds(Clock::now() - f0);
  }
  try {
    if (launched) out = exec.collect();
    if (!error.empty()) fail("{}", error);  // reported above
    if (out.logits.size() != in.seqs.size() || out.tokens.size() != in.seqs.size() ||
        out.logprobs.size() != in.seqs.size())
      fail("executor returned results for {}/{}/{} sequences, expected {}", out.logits.size(),
           out.tokens.size(), out.logprobs.size(), in.seqs.size());
    for (size_t i = 0; i < in.seqs.size(); ++i) {
      const auto& s = in.seqs[i];
      size_t rows = s.need_all_logits ? s.tokens.size() : s.need_logits ? 1 : 0;
      if (out.logits[i].size() != rows * static_cast<size_t>(vocab))
        fail("executor returned {} logits for sequence {}, expected {} rows of {}",
             out.logits[i].size(), s.seq_id, rows, vocab);
      if (s.sample && (out.tokens[i] < 0 || out.tokens[i] >= vocab))
        fail("executor sampled token {} for sequence {}, outside [0, {})", out.tokens[i], s.seq_id,
             vocab);
      if (s.sample && s.top_logprobs >= 0 && !out.logprobs[i])
        fail("executor returned no logprobs for sequence {}", s.seq_id);
    }
    if (!specs.empty()) engine::accept_drafts(in, out, vocab, specs);
  } catch (const std::exception& e) {
    if (error.empty()) {
      error = e.what();
      spdlog::error("engine step failed: {}", error);
    }
  }
  // The device's time when it outlasts the overlapped output work (the usual case).
  double dt = seconds(Clock::now() - t0) - draft_seconds - flush_seconds;
  dt = std::max(dt, 0.0);
  int total_tokens = 0;
  for (auto& s : in.seqs) total_tokens += static_cast<int>(s.tokens.size());

  // Sampling and log-probs outside the lock: only this thread touches samplers and token lists.
  if (error.empty()) {
    for (size_t i = 0; i < work.size(); ++i) {
      auto& w = work[i];
      if (w.rec->done) continue;
      const auto& c = w.chunk;
      const engine::Sequence& s = w.rec->seq;
      const float* rows = out.logits[i].data();
      const int top = std::max(0, w.rec->req.logprobs);
      if (c.need_all_logits) {
        for (int r = 0; r < c.num_tokens; ++r) {
          int p = c.start + r;
          if (p < s.prompt_logit_rows || p >= s.prompt_len - 1) continue;
          std::span<const float> row(rows + static_cast<size_t>(r) * static_cast<size_t>(vocab),
                                     static_cast<size_t>(vocab));
          w.prompt_lps.emplace_back(p + 1,
                                    logprobs(row, s.tokens[static_cast<size_t>(p) + 1], top));
        }
      }
      if (w.spec >= 0) {
        auto& sp = specs[static_cast<size_t>(w.spec)];
        w.rec->acceptance.update(static_cast<int>(sp.drafts.size()), sp.accepted);
      } else if (in.seqs[i].sample) {
        w.token = out.tokens[i];
        if (out.logprobs[i]) w.token_lp = std::move(*out.logprobs[i]);
      }
    }
  }

  {
    std::lock_guard lk(mu);
    for (auto& d : drafts) metrics.step(Precision::FP8, d.tokens, d.seconds);
    metrics.step(in.precision, total_tokens, dt);
    if (error.empty()) {
      // Draft steps are ordinary FP8 decode steps (one token per sequence) for the model too.
      for (auto& d : drafts) latency.observe({Precision::FP8, d.tokens, d.tokens, d.seconds});
      latency.observe({in.precision, total_tokens, static_cast<int>(in.seqs.size()), dt});
    }
    for (auto& w : work) {
      Record& r = *w.rec;
      r.in_flight = false;
      if (r.done) {  // ended while the executor ran; its blocks were freed then
        release(r);
        continue;
      }
      if (!error.empty()) {
        RequestEvent ev;
        ev.error = "model step failed: " + error;
        finish(r, FinishReason::Error, std::move(ev));
        continue;
      }
      if (w.spec >= 0) {
        commit_verified(r, specs[static_cast<size_t>(w.spec)], w.chunk);
        continue;
      }
      sched->complete(w.chunk);
      engine::Emit e;
      e.rec = &r;
      engine::Sequence& s = r.seq;
      for (auto& [pos, lp] : w.prompt_lps) r.prompt_lp[static_cast<size_t>(pos)] = std::move(lp);
      if (w.chunk.need_all_logits)
        s.prompt_logit_rows = std::max(
            s.prompt_logit_rows, std::min(w.chunk.start + w.chunk.num_tokens, s.prompt_len - 1));
      if (s.want_prompt_logits && !r.prompt_lp_sent && s.prompt_logit_rows >= s.prompt_len - 1) {
        e.ev.prompt_logprobs = std::move(r.prompt_lp);
        r.prompt_lp_sent = true;
      }
      if (w.token) {
        commit_token(r, *w.token, std::move(w.token_lp), e);
      } else if (!s.samples && s.num_computed == static_cast<int>(s.tokens.size())) {
        finish(r, FinishReason::Length, std::move(e.ev));  // max_tokens 0: prompt only
        continue;
      }
      if (!e.tokens.empty() || !e.ev.prompt_logprobs.empty()) {
        r.owed = true;
        emits.push_back(std::move(e));
      }
    }
    // Without overlap, or with nothing left to run, the output work is done now.
    if (!overlap || !has_work()) flush_emits();
    if (!has_work()) idle_cv.notify_all();
  }
  return true;
}

void Engine::Impl::loop() {
  while (true) {
    {
      std::unique_lock lk(mu);
      work_cv.wait(lk, [&] { return stopping || has_work() || !emits.empty(); });
      if (stopping) return;
    }
    bool ran = false;
    try {
      ran = step();
    } catch (const std::exception& e) {
      spdlog::error("engine step thread: {}", e.what());
    }
    if (!ran) {  // work exists but none could be scheduled: do not spin
      std::unique_lock lk(mu);
      work_cv.wait_for(lk, std::chrono::milliseconds(5));
    }
  }
}

Engine::Engine(ModelExecutor& executor, EngineConfig cfg)
    : impl_(std::make_unique<Impl>(executor, std::move(cfg))) {}

Engine::~Engine() {
  stop();
  std::lock_guard lk(impl_->mu);
  impl_->flush_emits();  // tokens already computed reach their streams before the abort
  std::vector<int64_t> ids;
  for (auto& [id, r] : impl_->recs) ids.push_back(id);
  for (int64_t id : ids) {
    auto it = impl_->recs.find(id);
    if (it != impl_->recs.end() && !it->second->done) {
      it->second->in_flight = false;
      impl_->finish(*it->second, FinishReason::Abort, {});
    }
  }
}

void Engine::start() {
  std::lock_guard lk(impl_->mu);
  if (impl_->thread.joinable()) return;
  impl_->stopping = false;
  impl_->thread = std::thread([this] { impl_->loop(); });
}

void Engine::stop() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->work_cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::shared_ptr<RequestStream> Engine::add_request(GenerationRequest req) {
  return add_requests(std::move(req), 1).front();
}

std::vector<std::shared_ptr<RequestStream>> Engine::add_requests(GenerationRequest req, int count) {
  auto& I = *impl_;
  if (count < 1 || count > kMaxSamples)
    throw RequestError(
        fmt::format("the number of samples must be between 1 and {} (got {})", kMaxSamples, count));
  const int n = static_cast<int>(req.prompt.size());
  if (n == 0) throw RequestError("the prompt is empty: send at least one token");
  for (int32_t t : req.prompt)
    if (t < 0 || t >= I.vocab)
      throw RequestError(
          fmt::format("prompt token id {} is outside the vocabulary [0, {})", t, I.vocab));
  if (req.max_tokens < 0)
    throw RequestError(fmt::format("max_tokens must be >= 0 (got {})", req.max_tokens));
  if (static_cast<int64_t>(n) + req.max_tokens > I.max_len)
    throw RequestError(
        fmt::format("this model's maximum context length is {} tokens, but the request needs {} "
                    "({} in the prompt + {} max_tokens): "
                    "shorten the prompt or lower max_tokens",
                    I.max_len, static_cast<int64_t>(n) + req.max_tokens, n, req.max_tokens));
  const auto& sp = req.sampling;
  if (!(sp.temperature >= 0.0f) || !std::isfinite(sp.temperature))
    throw RequestError(
        fmt::format("temperature must be a finite number >= 0 (got {})", sp.temperature));
  if (!(sp.top_p > 0.0f && sp.top_p <= 1.0f))
    throw RequestError(fmt::format("top_p must be in (0, 1] (got {})", sp.top_p));
  if (sp.top_k < -1)
    throw RequestError(fmt::format("top_k must be -1, 0 (off) or positive (got {})", sp.top_k));
  if (req.logprobs > kMaxLogprobs)
    throw RequestError(
        fmt::format("logprobs must be at most {} (got {})", kMaxLogprobs, req.logprobs));
  try {
    req.penalties.validate(I.vocab);
  } catch (const Error& e) {
    throw RequestError(e.what());
  }
  if (req.penalties.min_tokens > req.max_tokens)
    throw RequestError(fmt::format("min_tokens ({}) must not exceed max_tokens ({})",
                                   req.penalties.min_tokens, req.max_tokens));

  std::vector<std::shared_ptr<RequestStream>> streams;
  {
    std::lock_guard lk(I.mu);
    // The bound is on new requests: a preempted one was admitted before and is never refused.
    const auto waiting_new =
        static_cast<size_t>(I.sched->num_waiting() - I.sched->num_waiting_preempted());
    if (waiting_new + static_cast<size_t>(count) > I.cfg.max_queue)
      throw QueueFullError(fmt::format("the request queue is full ({} waiting{}): retry later",
                                       I.cfg.max_queue,
                                       count > 1 ? fmt::format(", {} samples asked", count) : ""));
    const uint64_t base_seed = sp.seed ? *sp.seed : I.seed_rng();
    std::vector<int32_t> stop_ids;  // what min_tokens holds back (ids the model can produce)
    for (const auto* ids : {&req.stop_token_ids, req.ignore_eos ? nullptr : &I.cfg.eos_token_ids})
      if (ids)
        for (int32_t t : *ids)
          if (t >= 0 && t < I.vocab) stop_ids.push_back(t);
    engine::Record* first = nullptr;
    for (int j = 0; j < count; ++j) {
      auto rec = std::make_unique<engine::Record>();
      engine::Record& r = *rec;
      const int64_t id = I.next_id++;
      r.seq.id = id;
      r.seq.arrival = I.next_arrival++;
      r.seq.tokens = req.prompt;
      r.seq.prompt_len = n;
      r.seq.samples = req.max_tokens > 0;
      r.seq.want_prompt_logits = req.prompt_logprobs;
      if (req.prompt_logprobs) r.prompt_lp.resize(static_cast<size_t>(n));
      SamplingParams sj = sp;
      if (sj.seed) sj.seed = base_seed + static_cast<uint64_t>(j);  // sample j: seed + j
      r.sampler = std::make_unique<RequestSampler>(sj, base_seed + static_cast<uint64_t>(j));
      r.penalties = engine::PenaltyState(req.penalties, req.prompt, stop_ids);
      if (I.cfg.text_decoder) r.decoder = I.cfg.text_decoder();
      r.stops = engine::StopChecker(req.stop, req.include_stop_str);
      r.stream = std::make_shared<RequestStream>(id);
      streams.push_back(r.stream);
      r.arrival = Clock::now();
      r.req = j + 1 < count ? req : std::move(req);
      r.req.sampling = sj;
      I.metrics.request_added(n);
      I.recs.emplace(id, std::move(rec));
      if (!r.seq.samples && !r.seq.want_prompt_logits) {
        I.finish(r, FinishReason::Length, {});  // nothing to compute
        continue;
      }
      if (first) {  // waits for the first sample's prompt KV (Scheduler)
        r.seq.fork_of = &first->seq;
        first->seq.forks.push_back(&r.seq);
      } else {
        first = &r;
      }
      I.sched->add(&r.seq);
    }
  }
  I.work_cv.notify_all();
  return streams;
}

bool Engine::abort(int64_t request_id) {
  auto& I = *impl_;
  std::lock_guard lk(I.mu);
  auto it = I.recs.find(request_id);
  if (it == I.recs.end() || it->second->done) return false;
  I.finish(*it->second, FinishReason::Abort, {});
  if (!I.has_work()) {  // no step will come to emit what other requests are owed
    I.flush_emits();
    I.idle_cv.notify_all();
  }
  return true;
}

bool Engine::step() { return impl_->step(); }

void Engine::set_precision_policy(std::string_view spec) {
  auto p = make_precision_policy(spec, impl_->policy_context());
  std::lock_guard lk(impl_->mu);
  impl_->policy = std::move(p);
  spdlog::info("precision policy is now {}", impl_->policy->spec());
}

std::string Engine::precision_policy() const {
  std::lock_guard lk(impl_->mu);
  return impl_->policy->spec();
}

EngineStats Engine::stats() const {
  auto& I = *impl_;
  EngineStats s;
  {
    std::lock_guard lk(I.mu);
    s.kv_blocks_total = I.bm->num_blocks();
    s.kv_blocks_used = I.bm->num_used();
    s.kv_blocks_free = I.bm->num_free();
    s.waiting = I.sched->num_waiting();
    s.waiting_preempted = I.sched->num_waiting_preempted();
    s.running = I.sched->num_running();
    s.preemptions = I.sched->num_preemptions();
    s.prefix_cache_queries = I.sched->prefix_queries();
    s.prefix_cache_hits = I.sched->prefix_hits();
    s.kv_blocks_cached = I.bm->num_cached();
    s.requests_aborted = I.aborted;
    s.precision_policy = I.policy->spec();
  }
  s.steps_fp16 = I.metrics.steps(Precision::FP16);
  s.steps_fp8 = I.metrics.steps(Precision::FP8);
  s.tokens_fp16 = I.metrics.step_tokens(Precision::FP16);
  s.tokens_fp8 = I.metrics.step_tokens(Precision::FP8);
  const auto sc = I.metrics.spec_counts();
  s.spec_cycles = sc.cycles, s.spec_drafted = sc.drafted, s.spec_accepted = sc.accepted;
  s.spec_committed = sc.committed;
  s.requests_added = I.metrics.requests_added();
  s.requests_finished = I.metrics.requests_finished("stop") +
                        I.metrics.requests_finished("length") +
                        I.metrics.requests_finished("abort") + I.metrics.requests_finished("error");
  return s;
}

std::string Engine::metrics_text() const {
  auto& I = *impl_;
  engine::Gauges g;
  {
    std::lock_guard lk(I.mu);
    g.kv_blocks_total = I.bm->num_blocks();
    g.kv_blocks_used = I.bm->num_used();
    g.kv_blocks_free = I.bm->num_free();
    g.waiting_preempted = I.sched->num_waiting_preempted();
    g.waiting = I.sched->num_waiting() - g.waiting_preempted;
    g.running = I.sched->num_running();
    g.preemptions = I.sched->num_preemptions();
    g.prefix_queries = I.sched->prefix_queries();
    g.prefix_hits = I.sched->prefix_hits();
    g.kv_blocks_cached = I.bm->num_cached();
    g.policy = I.policy->spec();
  }
  std::string text = I.metrics.render(g);
  std::lock_guard lk(I.mu);
  I.policy->render_metrics(text);
  render_latency_model(I.latency, text);
  return text;
}

bool Engine::wait_idle(std::chrono::milliseconds timeout) const {
  std::unique_lock lk(impl_->mu);
  return impl_->idle_cv.wait_for(lk, timeout,
                                 [&] { return !impl_->has_work() && impl_->emits.empty(); });
}

int Engine::max_model_len() const { return impl_->max_len; }
int Engine::vocab_size() const { return impl_->vocab; }
const EngineConfig& Engine::config() const { return impl_->cfg; }

}  // namespace nestedfp
