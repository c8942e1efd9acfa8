#pragma once
// Chat prompts for /v1/chat/completions.
//
// render_chat runs a Hugging Face chat template (tokenizer_config.json "chat_template") through a
// small Jinja2 interpreter (chat/jinja.hpp) configured like transformers' apply_chat_template:
// trim_blocks and lstrip_blocks on, break/continue allowed, and these variables: `messages`,
// `add_generation_prompt`, `bos_token`, `eos_token`, plus the globals `raise_exception(msg)`,
// `strftime_now(fmt)`, `range`, `namespace`, `dict`. Supported: {{ }}, {% if/elif/else %},
// {% for %} (loop.*, `if` filter, else), {% set %} (incl. namespace attributes and block set),
// {% macro %}, {% raw %}, {% generation %}, whitespace control, the usual operators, tests,
// filters and str/dict methods. Not supported: include/extends/import, call blocks, `%` string
// formatting; using one is a syntax error naming line and column.
//
// OpenAI-style content lists (`[{"type":"text","text":...}, ...]`) are flattened to one string
// (text parts joined by "\n") before rendering, as text-only servers do; other part types are
// rejected.
//
// Errors (syntax, unknown filter/test/tag, type errors, raise_exception) throw nestedfp::Error
// with "chat template ... at line L, column C: ..."; servers map them to HTTP 400.
#include <nlohmann/json.hpp>
#include <string>

namespace nestedfp::chat {

std::string render_chat(const std::string& template_src, const nlohmann::json& messages,
                        bool add_generation_prompt, const std::string& bos_token,
                        const std::string& eos_token);

// The documented fallback for tokenizers without a chat_template (base models such as pystd-16m):
// one paragraph per message, "<Role>: <content>" with the role capitalized ("System", "User",
// "Assistant", "Tool", ...) and paragraphs separated by a blank line, then a final "Assistant:"
// for the model to continue. No special tokens are added (the tokenizer adds BOS as usual).
//   [{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]
//   -> "System: Be brief.\n\nUser: Hi\n\nAssistant:"
std::string default_chat_prompt(const nlohmann::json& messages);

// Flattens text-part content lists and checks that `messages` is a list of objects with a string
// "role". Throws nestedfp::Error saying what is wrong.
nlohmann::json normalize_chat_messages(const nlohmann::json& messages);

}  // namespace nestedfp::chat
