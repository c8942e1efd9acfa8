// libFuzzer target: OpenAI request bodies (completions and chat) through the pure parsers.
// Any input must give either a validated request or an ApiError with a 4xx status and a message;
// nothing may crash, hang or leak. Seeds: tests/fuzz/seeds/fuzz_request_parser/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/openai_request.hpp"

namespace {
template <typename P>
void check(const P& p) {
  if (p.ok()) return;
  if (p.error.status < 400 || p.error.status > 499 || p.error.message.empty()) std::abort();
  (void)p.error.to_json().dump();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto c = nestedfp::server::parse_completion_request(body);
  check(c);
  if (c.ok()) {
    const auto& r = *c.request;
    if (r.prompts.empty() || r.logprobs > 20 || (r.max_tokens && (*r.max_tokens < 0 || *r.max_tokens > nestedfp::server::kMaxTokensLimit)))
      std::abort();
    if (!(r.sampling.temperature >= 0) || !(r.sampling.top_p > 0 && r.sampling.top_p <= 1)) std::abort();
  }
  auto h = nestedfp::server::parse_chat_request(body);
  check(h);
  if (h.ok() && (!h.request->messages.is_array() || h.request->messages.empty())) std::abort();
  return 0;
}
