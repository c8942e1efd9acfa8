// Chat prompt rendering: HF chat templates via the Jinja subset, and the no-template fallback.
#include "chat/chat_template.hpp"

#include <cctype>
#include <map>
#include <memory>
#include <mutex>

#include "chat/jinja.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::chat {

nlohmann::json normalize_chat_messages(const nlohmann::json& messages) {
  if (!messages.is_array()) fail("'messages' must be a list of message objects");
  if (messages.empty()) fail("'messages' must not be empty");
  nlohmann::json out = messages;
  for (size_t k = 0; k < out.size(); ++k) {
    auto& m = out[k];
    if (!m.is_object()) fail("messages[{}] must be an object with 'role' and 'content'", k);
    if (!m.contains("role") || !m["role"].is_string())
      fail("messages[{}].role must be a string", k);
    if (!m.contains("content")) continue;  // e.g. assistant messages with only tool_calls
    auto& c = m["content"];
    if (c.is_array()) {
      std::string text;
      for (size_t p = 0; p < c.size(); ++p) {
        const auto& part = c[p];
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string())
          fail(
              "messages[{}].content[{}]: only {{\"type\": \"text\", \"text\": ...}} parts are "
              "supported",
              k, p);
        if (p) text += "\n";
        text += part["text"].get<std::string>();
      }
      c = text;
    } else if (!c.is_string() && !c.is_null()) {
      fail("messages[{}].content must be a string, a list of text parts, or null", k);
    }
  }
  return out;
}

namespace {
// Templates are parsed once per distinct source (a server renders the same template per request).
std::shared_ptr<jinja::Template> cached_parse(const std::string& src) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<jinja::Template>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(src);
  if (it != cache.end()) return it->second;
  auto t = jinja::parse(src);
  if (cache.size() > 16) cache.clear();
  cache.emplace(src, t);
  return t;
}
}  // namespace

std::string render_chat(const std::string& template_src, const nlohmann::json& messages,
                        bool add_generation_prompt, const std::string& bos_token,
                        const std::string& eos_token) {
  auto t = cached_parse(template_src);
  std::vector<std::pair<std::string, jinja::Value>> globals = {
      {"messages", jinja::Value::from_json(normalize_chat_messages(messages))},
      {"add_generation_prompt", jinja::Value::boolean(add_generation_prompt)},
      {"bos_token", jinja::Value::str(bos_token)},
      {"eos_token", jinja::Value::str(eos_token)},
  };
  return jinja::render(*t, globals);
}

std::string default_chat_prompt(const nlohmann::json& messages) {
  nlohmann::json ms = normalize_chat_messages(messages);
  std::string out;
  for (auto& m : ms) {
    std::string role = m["role"].get<std::string>();
    if (!role.empty()) role[0] = char(std::toupper(uint8_t(role[0])));
    std::string content =
        m.contains("content") && m["content"].is_string() ? m["content"].get<std::string>() : "";
    out += role + ": " + content + "\n\n";
  }
  return out + "Assistant:";
}

}  // namespace nestedfp::chat
