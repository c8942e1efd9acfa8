// libFuzzer target: OpenAI request bodies through the pure parsers and, for chat, on to the prompt
// the server would tokenize (the fallback prompt and a ChatML-style Jinja template render of the
// normalized messages). Any input must give either a validated request or an ApiError with a 4xx
// status and a message; nothing may crash, hang, recurse without bound or leak.
// Seeds: tests/fuzz/seeds/fuzz_request_parser/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "chat/chat_template.hpp"
#include "nestedfp/error.hpp"
#include "server/openai_request.hpp"

namespace {
template <typename P>
void check(const P& p) {
  if (p.ok()) return;
  if (p.error.status < 400 || p.error.status > 499 || p.error.message.empty()) std::abort();
  (void)p.error.to_json().dump();
}

// The shape of common chat templates: roles, content, a generation prompt.
const std::string kTemplate =
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] | trim }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

void render(const nlohmann::json& messages) {
  (void)nestedfp::chat::default_chat_prompt(messages);
  try {
    (void)nestedfp::chat::render_chat(kTemplate, messages, true, "<s>", "</s>");
  } catch (const nestedfp::Error&) {  // a template error is a 400 in the server, not a crash
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto c = nestedfp::server::parse_completion_request(body);
  check(c);
  if (c.ok()) {
    const auto& r = *c.request;
    if (r.prompts.empty() || r.logprobs > 20 ||
        (r.max_tokens && (*r.max_tokens < 0 || *r.max_tokens > nestedfp::server::kMaxTokensLimit)))
      std::abort();
    if (!(r.sampling.temperature >= 0) || !(r.sampling.top_p > 0 && r.sampling.top_p <= 1))
      std::abort();
  }
  auto h = nestedfp::server::parse_chat_request(body);
  check(h);
  if (h.ok()) {
    const auto& m = h.request->messages;
    if (!m.is_array() || m.empty()) std::abort();
    for (const auto& msg : m)  // normalized: every role allowed, every content a string or null
    {
      if (!msg["role"].is_string() ||
          (msg.contains("content") && !msg["content"].is_string() && !msg["content"].is_null()))
        std::abort();
      bool known = false;
      for (const char* r : nestedfp::server::kChatRoles) known = known || msg["role"] == r;
      if (!known) std::abort();
    }
    render(m);
  }
  auto t = nestedfp::server::parse_tokenize_request(body);
  check(t);
  if (t.ok() && t.request->chat) render(t.request->messages);
  check(nestedfp::server::parse_detokenize_request(body));
  check(nestedfp::server::parse_json_object(body));
  return 0;
}
