// The generation endpoints (/v1/completions, /v1/chat/completions) and their responses.
#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>

#include "chat/chat_template.hpp"
#include "nestedfp/error.hpp"
#include "server/openai_server_impl.hpp"

namespace nestedfp::server {

using namespace std::chrono_literals;

namespace {

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

size_t codepoints(std::string_view s) {
  size_t n = 0;
  for (char ch : s) n += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return n;
}

}  // namespace

std::string OpenAIServer::Impl::token_str(int32_t id) const {
  std::string b;
  try {
    b = tok.decode_bytes(std::span<const int32_t>(&id, 1), /*skip_special_tokens=*/false);
  } catch (const std::exception&) {
    return fmt::format("<id:{}>", id);  // an id the model has but the tokenizer does not
  }
  if (valid_utf8(b)) return b;
  std::string out = "bytes:";
  for (unsigned char ch : b) out += fmt::format("\\x{:02x}", ch);
  return out;
}

json OpenAIServer::Impl::chat_token(int32_t id, float lp) const {
  std::string b;
  try {
    b = tok.decode_bytes(std::span<const int32_t>(&id, 1), false);
  } catch (const std::exception&) {
  }
  json bytes = json::array();
  for (unsigned char ch : b) bytes.push_back(static_cast<int>(ch));
  return json{{"token", token_str(id)}, {"logprob", lp}, {"bytes", bytes}};
}

json OpenAIServer::Impl::top_dict(const LogprobInfo& l) const {
  json d = json::object();
  for (const auto& t : l.top) {
    std::string s = token_str(t.token);
    if (!d.contains(s)) d[s] = t.logprob;
  }
  return d;
}

Piece OpenAIServer::Impl::absorb(Job& job, Choice& c, RequestEvent& ev) const {
  Piece p;
  const bool want_lp = job.logprobs >= 0;
  if (job.kind == Job::Kind::Completion && want_lp)
    p.logprobs = {{"tokens", json::array()},
                  {"token_logprobs", json::array()},
                  {"top_logprobs", json::array()},
                  {"text_offset", json::array()}};
  else if (want_lp)
    p.logprobs = json::array();
  auto add = [&](int32_t id, const LogprobInfo* l, size_t offset) {
    if (job.kind == Job::Kind::Completion) {
      p.logprobs["tokens"].push_back(token_str(id));
      p.logprobs["token_logprobs"].push_back(l ? json(l->chosen.logprob) : json(nullptr));
      p.logprobs["top_logprobs"].push_back(l ? top_dict(*l) : json(nullptr));
      p.logprobs["text_offset"].push_back(offset);
    } else if (l) {
      json e = chat_token(id, l->chosen.logprob);
      e["top_logprobs"] = json::array();
      for (const auto& t : l->top) e["top_logprobs"].push_back(chat_token(t.token, t.logprob));
      p.logprobs.push_back(std::move(e));
    }
  };
  if (!c.started) {
    c.started = true;
    if (job.echo) {
      p.text = c.echo_text;
      if (want_lp) {
        IncrementalDecoder dec(tok, true);
        size_t chars = 0;
        for (size_t i = 0; i < c.prompt_ids.size(); ++i) {
          const LogprobInfo* l = i < ev.prompt_logprobs.size() && ev.prompt_logprobs[i]
                                     ? &*ev.prompt_logprobs[i]
                                     : nullptr;
          add(c.prompt_ids[i], l, chars);
          try {
            chars += codepoints(dec.push(c.prompt_ids[i]));
          } catch (const std::exception&) {
          }
        }
      }
      c.chars = codepoints(c.echo_text);
    }
  }
  for (size_t i = 0; i < ev.token_ids.size(); ++i) {
    const int32_t id = ev.token_ids[i];
    if (i < ev.logprobs.size()) c.cum_logprob += ev.logprobs[i].chosen.logprob;
    if (want_lp) add(id, i < ev.logprobs.size() ? &ev.logprobs[i] : nullptr, c.chars);
    try {
      c.chars += codepoints(c.offsets->push(id));
    } catch (const std::exception&) {
    }
  }
  p.text += ev.text;
  c.prompt_tokens = ev.prompt_tokens;
  c.completion_tokens = ev.completion_tokens;
  if (ev.finish != FinishReason::None) {
    c.done = true;
    c.finish = ev.finish;
    c.error = ev.error;
  }
  return p;
}

json OpenAIServer::Impl::usage(const Job& job) const {
  int pt = 0, ct = 0;  // each prompt once; the tokens of every sample, returned or not
  for (const auto& c : job.choices) {
    if (c.sample == 0) pt += c.prompt_tokens;
    ct += c.completion_tokens;
  }
  return {{"prompt_tokens", pt}, {"completion_tokens", ct}, {"total_tokens", pt + ct}};
}

namespace {
json finish_json(const Choice& c) { return c.done ? json(to_string(c.finish)) : json(nullptr); }
}  // namespace

json OpenAIServer::Impl::chunk(const Job& job, const Choice& c, const Piece& p, bool first) const {
  json choice;
  if (job.kind == Job::Kind::Completion) {
    choice = {{"index", c.index},
              {"text", p.text},
              {"logprobs", p.logprobs.is_null() ? json(nullptr) : p.logprobs},
              {"finish_reason", finish_json(c)}};
    return {{"id", job.id},
            {"object", "text_completion"},
            {"created", job.created},
            {"model", job.model},
            {"choices", {choice}}};
  }
  json delta = json::object();
  if (first) delta["role"] = "assistant";
  if (!p.text.empty() || first) delta["content"] = p.text;
  choice = {{"index", c.index},
            {"delta", delta},
            {"logprobs", p.logprobs.is_null() ? json(nullptr) : json{{"content", p.logprobs}}},
            {"finish_reason", finish_json(c)}};
  return {{"id", job.id},
          {"object", "chat.completion.chunk"},
          {"created", job.created},
          {"model", job.model},
          {"choices", {choice}}};
}

std::optional<ApiError> OpenAIServer::Impl::check_model(const std::string& model) const {
  if (model.empty() || model == opts.model_name) return std::nullopt;
  return error(
      404,
      fmt::format("the model '{}' does not exist: this server serves '{}'", model, opts.model_name),
      "invalid_request_error", "model", "model_not_found");
}

std::optional<ApiError> OpenAIServer::Impl::submit(Job& job,
                                                   std::vector<std::vector<int32_t>> prompts,
                                                   const CommonParams& p,
                                                   std::optional<int64_t> default_max,
                                                   bool prompt_logprobs) {
  const int ctx = engine.max_model_len();
  job.n = p.n;
  job.best_of = p.best_of;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto& ids = prompts[i];
    GenerationRequest g;
    const int64_t room = static_cast<int64_t>(ctx) - static_cast<int64_t>(ids.size());
    if (p.max_tokens)
      g.max_tokens = static_cast<int>(*p.max_tokens);
    else
      g.max_tokens =
          static_cast<int>(std::max<int64_t>(1, default_max ? std::min(*default_max, room) : room));
    g.sampling = p.sampling;
    g.penalties = p.penalties;
    g.stop = p.stop;
    g.include_stop_str = p.include_stop_str_in_output;
    g.stop_token_ids = p.stop_token_ids;
    g.ignore_eos = p.ignore_eos;
    // Ranking needs each sample's chosen-token logprobs; they reach the response only if asked.
    g.logprobs = p.best_of > p.n ? std::max(job.logprobs, 0) : job.logprobs;
    g.prompt_logprobs = prompt_logprobs;
    const std::vector<int32_t> prompt_ids = ids;
    g.prompt = std::move(ids);
    std::vector<std::shared_ptr<RequestStream>> streams;
    try {
      streams = engine.add_requests(std::move(g), p.best_of);
    } catch (const QueueFullError& e) {
      ++rejected_queue_full;
      return error(429, e.what(), "rate_limit_exceeded", "",
                   "queue_full");  // ~Job aborts the others
    } catch (const RequestError& e) {
      std::string msg = e.what();
      bool ctx_err = msg.find("context length") != std::string::npos;
      return error(400, prompts.size() > 1 ? fmt::format("prompt {}: {}", i, msg) : msg,
                   "invalid_request_error", ctx_err ? "prompt" : "",
                   ctx_err ? "context_length_exceeded" : "");
    }
    for (size_t j = 0; j < streams.size(); ++j) {
      Choice c;
      c.index = static_cast<int>(i) * p.n + static_cast<int>(j);
      c.prompt_index = static_cast<int>(i);
      c.sample = static_cast<int>(j);
      c.prompt_ids = prompt_ids;
      c.offsets = std::make_unique<IncrementalDecoder>(tok, true);
      c.stream = std::move(streams[j]);
      job.choices.push_back(std::move(c));
    }
  }
  return std::nullopt;
}

void OpenAIServer::Impl::respond(std::shared_ptr<Job> job, httplib::Response& res) {
  if (!job->stream) {
    std::vector<std::string> texts(job->choices.size());
    std::vector<json> lps(job->choices.size());
    for (size_t i = 0; i < job->choices.size(); ++i) {
      Choice& c = job->choices[i];
      while (!c.done) {
        if (stopping)
          return send_error(res, error(503, "the server is shutting down", "server_error"));
        // Nobody would read the answer: free the KV blocks and the slot now, not at max_tokens.
        // Checked by time, since tokens may arrive without a pause.
        if (Clock::now() - job->last_write > 200ms) {
          job->last_write = Clock::now();
          if (current_client_gone()) {
            ++disconnects;
            for (auto& other : job->choices)
              if (!other.done && engine.abort(other.stream->id())) other.done = true;
            return send_error(
                res, error(499, "the client closed the connection", "invalid_request_error"));
          }
        }
        auto ev = c.stream->next(200ms);
        if (!ev) continue;
        Piece p = absorb(*job, c, *ev);
        texts[i] += p.text;
        if (p.logprobs.is_null()) continue;
        if (lps[i].is_null()) {
          lps[i] = std::move(p.logprobs);
        } else if (lps[i].is_array()) {
          for (auto& e : p.logprobs) lps[i].push_back(std::move(e));
        } else {
          for (auto& [k, v] : p.logprobs.items())
            for (auto& e : v) lps[i][k].push_back(std::move(e));
        }
      }
      if (c.finish == FinishReason::Error)
        return send_error(res, error(500, "generation failed: " + c.error, "server_error"));
      if (c.finish == FinishReason::Abort)
        return send_error(
            res, error(503, "the request was aborted (server shutting down)", "server_error"));
    }
    // best_of > n: per prompt, the n samples with the highest cumulative logprob, best first
    // (ties: the lower sample); their indices are 0..n-1 in that order.
    std::vector<size_t> order;
    for (size_t i = 0; i < job->choices.size(); ++i) order.push_back(i);
    if (job->best_of > job->n) {
      std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        const Choice &x = job->choices[a], &y = job->choices[b];
        if (x.prompt_index != y.prompt_index) return x.prompt_index < y.prompt_index;
        return x.cum_logprob > y.cum_logprob;
      });
      std::vector<size_t> kept;
      for (size_t k = 0; k < order.size(); ++k) {
        Choice& c = job->choices[order[k]];
        const int rank = static_cast<int>(k) - c.prompt_index * job->best_of;
        if (rank >= job->n) continue;
        c.index = c.prompt_index * job->n + rank;
        kept.push_back(order[k]);
      }
      order = std::move(kept);
    }
    json choices = json::array();
    for (size_t i : order) {
      const Choice& c = job->choices[i];
      if (job->kind == Job::Kind::Completion) {
        choices.push_back({{"index", c.index},
                           {"text", texts[i]},
                           {"logprobs", lps[i]},
                           {"finish_reason", to_string(c.finish)}});
      } else {
        choices.push_back(
            {{"index", c.index},
             {"message", {{"role", "assistant"}, {"content", texts[i]}}},
             {"logprobs", lps[i].is_null() ? json(nullptr) : json{{"content", lps[i]}}},
             {"finish_reason", to_string(c.finish)}});
      }
    }
    send_json(
        res, 200,
        {{"id", job->id},
         {"object", job->kind == Job::Kind::Completion ? "text_completion" : "chat.completion"},
         {"created", job->created},
         {"model", job->model},
         {"choices", choices},
         {"usage", usage(*job)}});
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto provider = [this, job](size_t, httplib::DataSink& sink) -> bool {
    auto send = [&](const std::string& s) {
      job->last_write = Clock::now();
      return sink.write(s.data(), s.size());
    };
    auto data = [&](const json& j) {
      return send("data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n");
    };
    if (stopping || current_client_gone()) return false;
    const auto wait = job->choices.size() == 1 ? 100ms : 10ms;
    bool all_done = true;
    for (auto& c : job->choices) {
      if (c.done) continue;
      auto ev = c.stream->next(wait);
      if (!ev) {
        all_done = false;
        continue;
      }
      bool first = !c.started;
      Piece p = absorb(*job, c, *ev);
      if (c.finish == FinishReason::Error || c.finish == FinishReason::Abort) {
        auto e = c.finish == FinishReason::Error
                     ? error(500, "generation failed: " + c.error, "server_error")
                     : error(503, "the request was aborted", "server_error");
        data(e.to_json());
        send("data: [DONE]\n\n");
        sink.done();
        return true;
      }
      if (job->kind == Job::Kind::Chat && first) {
        Piece role;  // the role comes alone first, as OpenAI streams it
        Choice tmp;
        tmp.index = c.index;
        if (!data(chunk(*job, tmp, role, true))) return false;
        first = false;
      }
      if (!p.text.empty() || !p.logprobs.is_null() || c.done || first)
        if (!data(chunk(*job, c, p, first))) return false;
      all_done = all_done && c.done;
    }
    if (all_done) {
      if (job->include_usage) {
        json u = {{"id", job->id},
                  {"object", job->kind == Job::Kind::Completion ? "text_completion"
                                                                : "chat.completion.chunk"},
                  {"created", job->created},
                  {"model", job->model},
                  {"choices", json::array()},
                  {"usage", usage(*job)}};
        if (!data(u)) return false;
      }
      if (!send("data: [DONE]\n\n")) return false;
      sink.done();
      return true;
    }
    // Nothing to send for a while (queued, or a long prefill): probe the connection with an SSE
    // comment, so a client that went away is noticed and its request aborted.
    if (Clock::now() - job->last_write > 500ms) {
      if (!sink.is_writable() || !send(": keep-alive\n\n")) return false;
    }
    return true;
  };
  auto releaser = [this, job](bool success) {
    bool unfinished = false;
    for (auto& c : job->choices) unfinished = unfinished || !c.done;
    if (!success && unfinished) {
      ++disconnects;
      for (auto& c : job->choices)
        if (!c.done && engine.abort(c.stream->id())) c.done = true;
    }
  };
  res.set_chunked_content_provider("text/event-stream", provider, releaser);
}

void OpenAIServer::Impl::completions(const httplib::Request& req, httplib::Response& res) {
  auto parsed = parse_completion_request(req.body);
  if (!parsed.ok()) return send_error(res, parsed.error);
  CompletionRequest& r = *parsed.request;
  if (auto e = check_model(r.model)) return send_error(res, *e);
  auto job = std::make_shared<Job>();
  job->kind = Job::Kind::Completion;
  job->engine = &engine;
  job->id = fmt::format("cmpl-{:x}", next_id++);
  job->model = opts.model_name;
  job->created = static_cast<int64_t>(std::time(nullptr));
  job->stream = r.stream;
  job->include_usage = r.include_usage;
  job->echo = r.echo;
  job->logprobs = r.logprobs;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> echo;
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    if (!r.prompts[i].is_text) continue;
    if (auto e = prompt_too_long(r.prompts[i].text.size(), "prompt")) {
      if (r.prompts.size() > 1) e->message = fmt::format("prompt {}: {}", i, e->message);
      return send_error(res, *e);
    }
  }
  for (auto& p : r.prompts) {
    if (p.is_text) {
      prompts.push_back(tok.encode(p.text, /*add_special_tokens=*/true));
      echo.push_back(p.text);
    } else {
      for (int32_t id : p.ids)
        if (id >= engine.vocab_size())
          return send_error(
              res, error(400,
                         fmt::format("prompt token id {} is outside the vocabulary [0, {})", id,
                                     engine.vocab_size()),
                         "invalid_request_error", "prompt"));
      std::string text;
      if (r.echo) {
        try {
          text = tok.decode(p.ids);
        } catch (const std::exception&) {
        }
      }
      prompts.push_back(p.ids);
      echo.push_back(std::move(text));
    }
  }
  if (auto e =
          submit(*job, std::move(prompts), r, /*default max_tokens=*/16, r.echo && r.logprobs >= 0))
    return send_error(res, *e);
  for (auto& c : job->choices) c.echo_text = echo[static_cast<size_t>(c.prompt_index)];
  respond(job, res);
}

std::string OpenAIServer::Impl::render_chat_prompt(const json& messages,
                                                   bool add_generation_prompt) const {
  const std::string& tmpl = tok.chat_template();
  if (tmpl.empty()) return chat::default_chat_prompt(messages);
  auto piece = [&](int32_t id) { return id >= 0 ? tok.id_to_piece(id) : std::string(); };
  auto eos = tok.eos_ids();
  return chat::render_chat(tmpl, messages, add_generation_prompt, piece(tok.bos_id()),
                           eos.empty() ? std::string() : piece(eos.front()));
}

void OpenAIServer::Impl::chat(const httplib::Request& req, httplib::Response& res) {
  auto parsed = parse_chat_request(req.body);
  if (!parsed.ok()) return send_error(res, parsed.error);
  ChatRequest& r = *parsed.request;
  if (auto e = check_model(r.model)) return send_error(res, *e);
  std::vector<int32_t> ids;
  try {
    std::string prompt = render_chat_prompt(r.messages, r.add_generation_prompt);
    if (auto e = prompt_too_long(prompt.size(), "messages")) return send_error(res, *e);
    // A template writes BOS itself; the fallback prompt gets the tokenizer's usual special tokens.
    ids = tok.encode(prompt, /*add_special_tokens=*/tok.chat_template().empty());
  } catch (const Error& e) {
    return send_error(res, error(400, e.what(), "invalid_request_error", "messages"));
  }
  auto job = std::make_shared<Job>();
  job->kind = Job::Kind::Chat;
  job->engine = &engine;
  job->id = fmt::format("chatcmpl-{:x}", next_id++);
  job->model = opts.model_name;
  job->created = static_cast<int64_t>(std::time(nullptr));
  job->stream = r.stream;
  job->include_usage = r.include_usage;
  job->logprobs = r.logprobs ? r.top_logprobs : -1;
  std::vector<std::vector<int32_t>> prompts{std::move(ids)};
  if (auto e = submit(*job, std::move(prompts), r, std::nullopt, false)) return send_error(res, *e);
  respond(job, res);
}

OpenAIServer::OpenAIServer(Engine& engine, Tokenizer tokenizer, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, std::move(tokenizer), std::move(options))) {
  // A client that closes its socket must not kill the process when we write to it.
  std::signal(SIGPIPE, SIG_IGN);
  impl_->routes();
}

OpenAIServer::~OpenAIServer() { stop(); }

int OpenAIServer::bind() {
  if (impl_->bound_port >= 0) return impl_->bound_port;
  auto& o = impl_->opts;
  const int port = o.port == 0                                ? impl_->http.bind_to_any_port(o.host)
                   : impl_->http.bind_to_port(o.host, o.port) ? o.port
                                                              : -1;
  if (port < 0)
    fail("cannot listen on {}:{} (address in use or not available): pick another --host/--port",
         o.host, o.port);
  impl_->front->widen_listen_backlog();  // before the port counts as bound: a retry widens again
  impl_->bound_port = port;
  return port;
}

void OpenAIServer::run() {
  bind();
  impl_->http.listen_after_bind();
}

void OpenAIServer::start() {
  bind();
  impl_->thread = std::thread([this] { impl_->http.listen_after_bind(); });
  for (int i = 0; i < 2000 && !impl_->http.is_running(); ++i) std::this_thread::sleep_for(1ms);
}

void OpenAIServer::stop() {
  if (impl_->stopping.exchange(true)) {
    if (impl_->thread.joinable()) impl_->thread.join();
    return;
  }
  impl_->http.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->front->shutdown_front();
}

int OpenAIServer::port() const { return impl_->bound_port; }

}  // namespace nestedfp::server
