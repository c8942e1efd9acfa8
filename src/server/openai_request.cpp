#include "server/openai_request.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>

#include "chat/chat_template.hpp"
#include "nestedfp/engine.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::server {

using nlohmann::json;

namespace {

// Messages may quote the client's bytes (JSON parse errors do): keep them valid UTF-8 so every
// serializer accepts them. Invalid bytes become U+FFFD.
std::string utf8_clean(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80                        ? 1
               : (c >> 5) == 0x6 && c >= 0xC2  ? 2
               : (c >> 4) == 0xE               ? 3
               : (c >> 3) == 0x1E && c <= 0xF4 ? 4
                                               : 0;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && n >= 3) {  // no overlong forms, surrogates or code points past U+10FFFF
      auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 > 0x9F) && !(c == 0xF0 && c1 < 0x90) &&
           !(c == 0xF4 && c1 > 0x8F);
    }
    if (ok) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

}  // namespace

std::optional<size_t> json_nesting_over(std::string_view body, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::nullopt;
}

json ApiError::to_json() const {
  json e = {
      {"message", utf8_clean(message)}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = utf8_clean(param);
  if (!code.empty()) e["code"] = code;
  return json{{"error", e}};
}

namespace {

struct Bad {
  ApiError e;
};
[[noreturn]] void bad(const std::string& param, const std::string& msg) {
  throw Bad{ApiError{400, msg, "invalid_request_error", param, ""}};
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a non-integer number";
    default: return "a number";
  }
}

// Reads the body's fields; absent and null both mean "use the default".
class Fields {
 public:
  explicit Fields(const json& o) : o_(o) {}
  const json* get(const char* k) const {
    auto it = o_.find(k);
    return it == o_.end() || it->is_null() ? nullptr : &*it;
  }
  std::optional<int64_t> integer(const char* k, int64_t lo, int64_t hi,
                                 const char* hint = "") const {
    const json* v = get(k);
    if (!v) return std::nullopt;
    int64_t x = 0;
    if (v->is_number_unsigned()) {
      auto u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        out_of_range(k, lo, hi, hint);
      x = static_cast<int64_t>(u);
    } else if (v->is_number_integer()) {
      x = v->get<int64_t>();
    } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
               std::floor(v->get<double>()) == v->get<double>() &&
               std::fabs(v->get<double>()) < 9e15) {
      x = static_cast<int64_t>(v->get<double>());  // 16.0 is an integer
    } else {
      bad(k, fmt::format("'{}' must be an integer, got {}", k, type_name(*v)));
    }
    if (x < lo || x > hi) out_of_range(k, lo, hi, hint);
    return x;
  }
  std::optional<double> number(const char* k) const {
    const json* v = get(k);
    if (!v) return std::nullopt;
    if (!v->is_number()) bad(k, fmt::format("'{}' must be a number, got {}", k, type_name(*v)));
    double x = v->get<double>();
    if (!std::isfinite(x)) bad(k, fmt::format("'{}' must be finite", k));
    return x;
  }
  std::optional<bool> boolean(const char* k) const {
    const json* v = get(k);
    if (!v) return std::nullopt;
    if (!v->is_boolean())
      bad(k, fmt::format("'{}' must be true or false, got {}", k, type_name(*v)));
    return v->get<bool>();
  }
  std::optional<std::string> string(const char* k) const {
    const json* v = get(k);
    if (!v) return std::nullopt;
    if (!v->is_string()) bad(k, fmt::format("'{}' must be a string, got {}", k, type_name(*v)));
    return v->get<std::string>();
  }

 private:
  [[noreturn]] static void out_of_range(const char* k, int64_t lo, int64_t hi, const char* hint) {
    if (hi == std::numeric_limits<int64_t>::max())
      bad(k, fmt::format("'{}' must be at least {}{}", k, lo, hint));
    bad(k, fmt::format("'{}' must be between {} and {}{}", k, lo, hi, hint));
  }
  const json& o_;
};

std::vector<int32_t> token_ids(const json& arr, const char* param) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const auto& t : arr) {
    if (!t.is_number_integer())
      bad(param, fmt::format("token ids in '{}' must be integers, got {}", param, type_name(t)));
    if (t.is_number_unsigned()
            ? t.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())
            : (t.get<int64_t>() < 0 || t.get<int64_t>() > std::numeric_limits<int32_t>::max()))
      bad(param, fmt::format("token id {} in '{}' is out of range", t.dump(), param));
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return ids;
}

// 'messages' normalized (text parts joined) with every role checked.
json chat_messages(const json* m) {
  if (!m || !m->is_array() || m->empty())
    bad("messages", "'messages' must be a non-empty list of {\"role\", \"content\"} objects");
  json out;
  try {
    out = chat::normalize_chat_messages(*m);
  } catch (const Error& e) {
    bad("messages", e.what());
  }
  for (size_t i = 0; i < out.size(); ++i) {
    const std::string role = out[i]["role"].get<std::string>();
    if (std::find_if(std::begin(kChatRoles), std::end(kChatRoles),
                     [&](const char* r) { return role == r; }) == std::end(kChatRoles))
      bad("messages",
          fmt::format(
              "messages[{}].role '{}' is not one of system, developer, user, assistant, tool", i,
              role));
  }
  return out;
}

// The generation fields both /v1/completions and /v1/chat/completions honour (parse_common).
constexpr std::string_view kGenerationFields[] = {"model",
                                                  "max_tokens",
                                                  "temperature",
                                                  "top_p",
                                                  "top_k",
                                                  "seed",
                                                  "stop",
                                                  "stream",
                                                  "stream_options",
                                                  "n",
                                                  "best_of",
                                                  "presence_penalty",
                                                  "frequency_penalty",
                                                  "logit_bias",
                                                  "repetition_penalty",
                                                  "min_tokens",
                                                  "ignore_eos",
                                                  "include_stop_str_in_output",
                                                  "stop_token_ids",
                                                  "logprobs",
                                                  "user"};

// Refuses any top-level field outside `known` (and kGenerationFields when `generation`); null
// values count as absent, as everywhere.
void only_fields(const json& body, std::initializer_list<std::string_view> known,
                 const char* endpoint, bool generation = false) {
  auto in = [](const auto& list, const std::string& k) {
    return std::find(std::begin(list), std::end(list), k) != std::end(list);
  };
  for (const auto& [k, v] : body.items()) {
    if (v.is_null() || in(known, k) || (generation && in(kGenerationFields, k))) continue;
    bad(k, fmt::format("'{}' is not a field this server honours on {}: remove it", k, endpoint));
  }
}

// presence/frequency/repetition penalties, logit_bias and min_tokens (penalties.hpp).
void parse_penalties(const Fields& f, PenaltyParams& p, std::optional<int64_t> max_tokens) {
  for (auto [k, dst] : {std::pair{"presence_penalty", &p.presence_penalty},
                        std::pair{"frequency_penalty", &p.frequency_penalty}})
    if (auto v = f.number(k)) {
      if (!(std::fabs(*v) <= kMaxFreqPresence))
        bad(k, fmt::format("'{}' must be between -2 and 2", k));
      *dst = static_cast<float>(*v);
    }
  if (auto v = f.number("repetition_penalty")) {
    if (!(*v > 0) || !std::isfinite(static_cast<float>(*v)))
      bad("repetition_penalty", "'repetition_penalty' must be greater than 0 (1 turns it off)");
    p.repetition_penalty = static_cast<float>(*v);
  }
  if (auto m = f.integer("min_tokens", 0, kMaxTokensLimit)) {
    if (max_tokens && *m > *max_tokens)
      bad("min_tokens",
          fmt::format("'min_tokens' ({}) must not exceed 'max_tokens' ({})", *m, *max_tokens));
    p.min_tokens = static_cast<int>(*m);
  }
  if (const json* lb = f.get("logit_bias")) {
    if (!lb->is_object())
      bad("logit_bias",
          "'logit_bias' must be an object mapping token ids to a bias, like {\"50256\": -100}");
    for (const auto& [k, v] : lb->items()) {
      const bool digits =
          !k.empty() && k.size() <= 9 &&
          std::all_of(k.begin(), k.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits)
        bad("logit_bias",
            fmt::format("'logit_bias' keys must be token ids written in decimal, got '{}'", k));
      if (!v.is_number() || !(std::fabs(v.get<double>()) <= kMaxLogitBias))
        bad("logit_bias",
            fmt::format("'logit_bias' value for token {} must be a number between -100 and 100",
                        k));
      p.logit_bias.emplace_back(static_cast<int32_t>(std::stol(k)),
                                static_cast<float>(v.get<double>()));
    }
    std::vector<int32_t> ids;
    for (const auto& e : p.logit_bias) ids.push_back(e.first);
    std::sort(ids.begin(), ids.end());
    if (auto d = std::adjacent_find(ids.begin(), ids.end()); d != ids.end())
      bad("logit_bias", fmt::format("'logit_bias' lists token id {} twice", *d));
  }
}

void parse_common(const json& body, CommonParams& p, bool chat) {
  Fields f(body);
  (void)f.string("user");  // accepted without effect; must still be a string
  if (auto m = f.string("model")) p.model = *m;
  const char* mt = chat && f.get("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  p.max_tokens =
      f.integer(mt, 0, kMaxTokensLimit,
                " (it counts generated tokens; prompt + max_tokens must fit the context)");
  if (auto t = f.number("temperature")) {
    if (*t < 0 || *t > 100)
      bad("temperature", "'temperature' must be between 0 and 100 (0 = greedy)");
    p.sampling.temperature = static_cast<float>(*t);
  }
  if (auto t = f.number("top_p")) {
    if (!(*t > 0 && *t <= 1)) bad("top_p", "'top_p' must be greater than 0 and at most 1");
    p.sampling.top_p = static_cast<float>(*t);
  }
  if (auto k =
          f.integer("top_k", -1, std::numeric_limits<int32_t>::max(), " (-1 or 0 turn it off)"))
    p.sampling.top_k = static_cast<int>(*k);
  if (const json* s = f.get("seed")) {
    if (s->is_number_unsigned())
      p.sampling.seed = s->get<uint64_t>();
    else if (s->is_number_integer())
      p.sampling.seed = static_cast<uint64_t>(s->get<int64_t>());
    else
      bad("seed", fmt::format("'seed' must be an integer, got {}", type_name(*s)));
  }
  if (const json* s = f.get("stop")) {
    if (s->is_string()) {
      p.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      if (s->size() > kMaxStops)
        bad("stop", fmt::format("'stop' may hold at most {} strings", kMaxStops));
      for (const auto& x : *s) {
        if (!x.is_string())
          bad("stop",
              fmt::format("'stop' must be a string or a list of strings, found {}", type_name(x)));
        p.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop",
          fmt::format("'stop' must be a string or a list of strings, got {}", type_name(*s)));
    }
    for (const auto& x : p.stop)
      if (x.empty()) bad("stop", "stop strings must not be empty");
  }
  p.stream = f.boolean("stream").value_or(false);
  if (const json* so = f.get("stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    if (!p.stream) bad("stream_options", "'stream_options' is only allowed with \"stream\": true");
    for (const auto& [k, v] : so->items())
      if (k != "include_usage" && !v.is_null())
        bad("stream_options",
            fmt::format("'stream_options.{}' is not supported (only include_usage is)", k));
    p.include_usage = Fields(*so).boolean("include_usage").value_or(false);
  }
  if (auto n = f.integer("n", 1, kMaxSamples, " (choices per prompt)")) p.n = static_cast<int>(*n);
  p.best_of = p.n;
  if (auto b = f.integer("best_of", 1, kMaxSamples, " (samples per prompt)")) {
    if (*b < p.n) bad("best_of", fmt::format("'best_of' ({}) must be at least 'n' ({})", *b, p.n));
    p.best_of = static_cast<int>(*b);
  }
  if (p.best_of > p.n && p.stream)
    bad("best_of",
        "'best_of' greater than 'n' needs \"stream\": false (samples are ranked once all have "
        "finished)");
  parse_penalties(f, p.penalties, p.max_tokens);
  p.ignore_eos = f.boolean("ignore_eos").value_or(false);
  p.include_stop_str_in_output = f.boolean("include_stop_str_in_output").value_or(false);
  if (const json* s = f.get("stop_token_ids")) {
    if (!s->is_array()) bad("stop_token_ids", "'stop_token_ids' must be a list of token ids");
    p.stop_token_ids = token_ids(*s, "stop_token_ids");
  }
}

json parse_json(std::string_view body) {
  if (auto depth = json_nesting_over(body, kMaxJsonDepth))
    bad("",
        fmt::format(
            "the request body nests arrays/objects deeper than {} levels (at byte {}): flatten it",
            kMaxJsonDepth, *depth));
  try {
    json j = json::parse(body);
    if (!j.is_object())
      bad("", fmt::format("the request body must be a JSON object, got {}", type_name(j)));
    return j;
  } catch (const json::exception& e) {
    bad("", fmt::format("the request body is not valid JSON: {}", e.what()));
  }
}

template <typename T, typename F>
Parsed<T> run(std::string_view body, F&& fill) {
  Parsed<T> out;
  try {
    json j = parse_json(body);
    T r;
    fill(j, r);
    out.request = std::move(r);
  } catch (const Bad& b) {
    out.error = b.e;
  } catch (const std::exception& e) {  // e.g. a type error from a nested value: still the client's
    out.error = ApiError{400, fmt::format("invalid request: {}", e.what()), "invalid_request_error",
                         "", ""};
  }
  return out;
}

}  // namespace

Parsed<CompletionRequest> parse_completion_request(std::string_view body) {
  return run<CompletionRequest>(body, [](const json& j, CompletionRequest& r) {
    only_fields(j, {"prompt", "echo", "suffix"}, "/v1/completions", true);
    parse_common(j, r, false);
    Fields f(j);
    const json* p = f.get("prompt");
    if (!p)
      bad("prompt",
          "'prompt' is required: a string, a list of strings, a list of token ids or a list of "
          "such lists");
    auto text = [](const json& s) { return PromptInput{true, s.get<std::string>(), {}}; };
    auto ids = [](const json& a) {
      if (a.empty()) bad("prompt", "a token-id prompt must not be empty");
      return PromptInput{false, {}, token_ids(a, "prompt")};
    };
    if (p->is_string()) {
      r.prompts.push_back(text(*p));
    } else if (p->is_array()) {
      if (p->empty()) bad("prompt", "'prompt' must not be an empty list");
      const json& first = p->front();
      if (first.is_number()) {
        r.prompts.push_back(ids(*p));
      } else {
        if (p->size() > kMaxPrompts)
          bad("prompt", fmt::format("at most {} prompts per request", kMaxPrompts));
        for (const auto& e : *p) {
          if (e.is_string() && first.is_string())
            r.prompts.push_back(text(e));
          else if (e.is_array() && first.is_array())
            r.prompts.push_back(ids(e));
          else
            bad("prompt", "'prompt' lists must hold only strings or only token-id lists");
        }
      }
    } else {
      bad("prompt", fmt::format("'prompt' must be a string or a list, got {}", type_name(*p)));
    }
    for (const auto& pi : r.prompts)
      if (pi.is_text && pi.text.empty()) bad("prompt", "'prompt' must not be an empty string");
    if (auto lp = f.integer("logprobs", 0, kMaxLogprobs, " (number of alternatives per token)"))
      r.logprobs = static_cast<int>(*lp);
    r.echo = f.boolean("echo").value_or(false);
    if (auto s = f.string("suffix"); s && !s->empty()) bad("suffix", "'suffix' is not supported");
    if (r.max_tokens && *r.max_tokens == 0 && !r.echo)
      bad("max_tokens",
          "'max_tokens' is 0: nothing would be returned (allowed only with \"echo\": true)");
  });
}

Parsed<ChatRequest> parse_chat_request(std::string_view body) {
  return run<ChatRequest>(body, [](const json& j, ChatRequest& r) {
    only_fields(j,
                {"messages", "max_completion_tokens", "top_logprobs", "add_generation_prompt",
                 "tools", "tool_choice", "response_format"},
                "/v1/chat/completions", true);
    parse_common(j, r, true);
    if (r.best_of > r.n)
      bad("best_of", "'best_of' is only supported on /v1/completions: use 'n' for more choices");
    Fields f(j);
    r.messages = chat_messages(f.get("messages"));
    r.logprobs = f.boolean("logprobs").value_or(false);
    if (auto t = f.integer("top_logprobs", 0, kMaxLogprobs)) {
      if (!r.logprobs && *t > 0) bad("top_logprobs", "'top_logprobs' needs \"logprobs\": true");
      r.top_logprobs = static_cast<int>(*t);
    }
    r.add_generation_prompt = f.boolean("add_generation_prompt").value_or(true);
    if (r.max_tokens && *r.max_tokens == 0)
      bad("max_tokens", "'max_tokens' must be at least 1 for chat");
    if (const json* tl = f.get("tools"); tl && !(tl->is_array() && tl->empty()))
      bad("tools", "'tools' is not supported: this server does not call tools; leave it out");
    if (f.get("tool_choice"))
      bad("tool_choice",
          "'tool_choice' is only allowed with 'tools', and this server does not support tools: "
          "leave it out");
    if (const json* rf = f.get("response_format")) {
      const json* type = rf->is_object() ? Fields(*rf).get("type") : nullptr;
      if (!type || !type->is_string())
        bad("response_format", "'response_format' must be an object like {\"type\": \"text\"}");
      if (*type != "text")
        bad("response_format",
            fmt::format(
                "'response_format' type '{}' is not supported: this server does not constrain the "
                "output to JSON; leave it out or use {{\"type\": \"text\"}}",
                type->get<std::string>()));
    }
  });
}

Parsed<TokenizeRequest> parse_tokenize_request(std::string_view body) {
  return run<TokenizeRequest>(body, [](const json& j, TokenizeRequest& r) {
    only_fields(j, {"model", "prompt", "messages", "add_special_tokens", "add_generation_prompt"},
                "/tokenize");
    Fields f(j);
    if (auto m = f.string("model")) r.model = *m;
    const json* m = f.get("messages");
    auto p = f.string("prompt");
    if (!!m == p.has_value())
      bad("prompt", "send exactly one of 'prompt' (a string) or 'messages' (a chat)");
    if (m) {
      r.chat = true;
      r.messages = chat_messages(m);
    } else {
      r.prompt = std::move(*p);
    }
    r.add_special_tokens = f.boolean("add_special_tokens").value_or(true);
    r.add_generation_prompt = f.boolean("add_generation_prompt").value_or(true);
  });
}

Parsed<DetokenizeRequest> parse_detokenize_request(std::string_view body) {
  return run<DetokenizeRequest>(body, [](const json& j, DetokenizeRequest& r) {
    only_fields(j, {"model", "tokens"}, "/detokenize");
    Fields f(j);
    if (auto m = f.string("model")) r.model = *m;
    const json* t = f.get("tokens");
    if (!t || !t->is_array()) bad("tokens", "'tokens' must be a list of token ids");
    r.tokens = token_ids(*t, "tokens");
  });
}

Parsed<nlohmann::json> parse_json_object(std::string_view body) {
  return run<json>(body, [](const json& j, json& r) { r = j; });
}

}  // namespace nestedfp::server
