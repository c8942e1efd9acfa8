// What committed tokens do to a request: its sequence and finish at commit (engine.cpp's step
// needs them before the next schedule), its stream later (detokenization, stop strings, events:
// flush_emits, run while the device computes the next step when the executor overlaps).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine/engine_impl.hpp"

namespace nestedfp {

using engine::Emit;

void Engine::Impl::retire(Record& r, FinishReason why) {
  sched->remove(&r.seq);
  metrics.request_finished(to_string(why));
  if (why != FinishReason::Abort && why != FinishReason::Error) {
    metrics.request_latency(seconds(Clock::now() - r.arrival));
    if (r.generated > 1)
      metrics.request_tpot(seconds(r.last_token - r.first_token) / (r.generated - 1));
  }
  if (why == FinishReason::Abort) ++aborted;
  r.done = true;
}

void Engine::Impl::release(Record& r) {
  if (r.done && !r.in_flight && !r.owed) recs.erase(r.seq.id);  // r is gone after this line
}

void Engine::Impl::finish(Record& r, FinishReason why, RequestEvent ev) {
  ev.finish = why;
  ev.prompt_tokens = r.seq.prompt_len;
  ev.completion_tokens = r.emitted;
  r.stream->push(std::move(ev));  // an owed Emit pushes nothing after this final event
  retire(r, why);
  release(r);
}

void Engine::Impl::commit_token(Record& r, int32_t token, LogprobInfo lp, Emit& e) {
  r.seq.tokens.push_back(token);
  ++r.generated;
  r.penalties.commit(token, r.generated);
  metrics.generation_tokens(1);
  auto now = Clock::now();
  if (r.generated == 1) {
    r.first_token = now;
    metrics.first_token(seconds(now - r.arrival));
  } else {
    metrics.inter_token(seconds(now - r.last_token));
  }
  r.last_token = now;
  e.tokens.push_back(token);
  if (r.req.logprobs >= 0) e.lps.push_back(std::move(lp));

  auto has = [](const std::vector<int32_t>& v, int32_t t) {
    return std::find(v.begin(), v.end(), t) != v.end();
  };
  if ((!r.req.ignore_eos && has(cfg.eos_token_ids, token)) || has(r.req.stop_token_ids, token)) {
    e.finish = FinishReason::Stop, e.stop_token = true;
  } else if (r.generated >= r.req.max_tokens || static_cast<int>(r.seq.tokens.size()) >= max_len) {
    e.finish = FinishReason::Length;
  }
  if (e.finish != FinishReason::None) retire(r, e.finish);
}

// The tokens a verify step produced, one by one as plain decoding would commit them: EOS, a stop
// token or the length limit ends the request there and the rest are dropped (a stop string ends
// it when emitted). Otherwise the KV of the last token and the accepted drafts (all rewritten in
// FP16 by the verify step) counts as computed; blocks holding only rejected positions go back to
// the pool (Scheduler::complete).
void Engine::Impl::commit_verified(Record& r, const engine::SpecSeq& sp,
                                   engine::ScheduledChunk chunk) {
  Emit e;
  e.rec = &r;
  int committed = 0;
  for (int32_t t : sp.emitted) {
    ++committed;
    commit_token(r, t, {}, e);
    if (e.finish != FinishReason::None) break;
  }
  metrics.speculation(static_cast<int>(sp.drafts.size()), sp.accepted, committed);
  if (e.finish == FinishReason::None) {
    chunk.num_tokens = sp.accepted + 1;
    sched->complete(chunk);
  }
  r.owed = true;
  emits.push_back(std::move(e));
}

void Engine::Impl::flush_emits() {
  for (Emit& e : emits) {
    try {
      emit(e);
    } catch (const std::exception& ex) {  // lose this request's event, not the engine
      spdlog::error("request {}: output failed: {}", e.rec->seq.id, ex.what());
      Record& r = *e.rec;  // alive: emit releases it only as its last action
      r.owed = false;
      if (r.done) {
        release(r);
      } else {
        RequestEvent ev;
        ev.error = std::string("output failed: ") + ex.what();
        finish(r, FinishReason::Error, std::move(ev));
      }
    }
  }
  emits.clear();
}

void Engine::Impl::emit(Emit& e) {
  Record& r = *e.rec;
  r.owed = false;
  // Ended since the commit (abort, error, engine stop): its final event is out.
  if (r.done && e.finish == FinishReason::None) return release(r);
  RequestEvent ev = std::move(e.ev);
  FinishReason why = FinishReason::None;
  for (size_t i = 0; i < e.tokens.size() && why == FinishReason::None; ++i) {
    ev.token_ids.push_back(e.tokens[i]);
    if (r.req.logprobs >= 0) ev.logprobs.push_back(std::move(e.lps.at(i)));
    ++r.emitted;
    if (e.stop_token && i + 1 == e.tokens.size()) break;  // its text is not part of the output
    if (!r.decoder) continue;
    std::string piece;
    try {
      piece = r.decoder->push(e.tokens[i]);
    } catch (const std::exception& ex) {
      spdlog::debug("request {}: token {} has no text: {}", r.seq.id, e.tokens[i], ex.what());
    }
    if (r.stops.append(piece)) why = FinishReason::Stop;  // the tokens after it are dropped
  }
  if (why == FinishReason::None) why = e.finish;
  ev.prompt_tokens = r.seq.prompt_len;
  if (why == FinishReason::None) {
    ev.text += r.stops.take_ready();
    ev.completion_tokens = r.emitted;
    if (!ev.token_ids.empty() || !ev.text.empty() || !ev.prompt_logprobs.empty())
      r.stream->push(std::move(ev));
    return release(r);
  }
  if (r.decoder && !r.stops.stopped()) {
    std::string rest;
    try {
      rest = r.decoder->finish();
    } catch (const std::exception& ex) {
      spdlog::debug("request {}: no text at the end: {}", r.seq.id, ex.what());
    }
    if (r.stops.append(rest)) why = FinishReason::Stop;
  }
  ev.text += r.stops.take_all();
  ev.finish = why;
  ev.completion_tokens = r.emitted;
  r.stream->push(std::move(ev));
  // A stop string: the request may already be in the launched step, which then computes one
  // token for nothing (its blocks are freed now, as for an abort while a step runs).
  if (!r.done) retire(r, why);
  release(r);
}

}  // namespace nestedfp
