// Adapter from the tokenizer's IncrementalDecoder to the engine's TextDecoder.
#include "nestedfp/engine.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp {
namespace {
class TokenizerTextDecoder final : public TextDecoder {
 public:
  explicit TokenizerTextDecoder(const Tokenizer& t) : dec_(t, /*skip_special_tokens=*/true) {}
  std::string push(int32_t id) override { return dec_.push(id); }
  std::string finish() override { return dec_.finish(); }

 private:
  IncrementalDecoder dec_;
};
}  // namespace

TextDecoderFactory text_decoder_factory(const Tokenizer& tokenizer) {
  return [tokenizer] { return std::make_unique<TokenizerTextDecoder>(tokenizer); };
}

}  // namespace nestedfp
