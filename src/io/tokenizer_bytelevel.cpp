// Byte-level BPE support (GPT-2 / Llama-3 / Qwen): the reversible byte <-> character table and the
// ByteLevel pre-tokenizer. Pieces stay raw bytes; BpeModel reads them through the table.
#include <fmt/format.h>

#include "io/tokenizer_internal.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::tok {
namespace {

struct Tables {
  std::array<std::string, 256> to_char;
  std::array<int16_t, 324> to_byte;  // mapped code points are all below 256 + 68
  Tables() {
    to_byte.fill(-1);
    // Printable Latin-1 bytes keep their code point; the other 68 are moved to 256, 257, ...
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const int cp = printable ? b : next++;
      utf8_append(to_char[b], char32_t(cp));
      to_byte[cp] = int16_t(b);
    }
  }
};
const Tables& tables() {
  static const Tables t;
  return t;
}

// GPT-2's pre-tokenization pattern, as Hugging Face's ByteLevel pre-tokenizer uses it.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPre final : public PreTokenizer {
 public:
  explicit ByteLevelPre(const json& j)
      : add_prefix_space_(j.value("add_prefix_space", false)),
        regex_(j.value("use_regex", true)
                   ? std::make_unique<Regex>(kGpt2Pattern, false, "ByteLevel")
                   : nullptr) {}

  void split(std::string_view s, bool at_start, PieceSink sink) const override {
    std::string owned;
    if (add_prefix_space_ && !s.empty() && s.front() != ' ') {
      owned.reserve(s.size() + 1);
      owned += ' ';
      owned.append(s);
      s = owned;
    }
    if (!regex_) return sink(s, at_start);
    split_by_regex(*regex_, s, at_start, SplitBehavior::Isolated, false, sink);
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

}  // namespace

const std::array<std::string, 256>& byte_to_unicode() { return tables().to_char; }

int byte_from_unicode(int32_t cp) {
  const auto& t = tables().to_byte;
  return (cp >= 0 && cp < int32_t(t.size())) ? t[cp] : -1;
}

std::optional<std::string> byte_level_to_bytes(std::string_view mapped) {
  std::string out;
  out.reserve(mapped.size());
  for (size_t i = 0; i < mapped.size();) {
    const int b = byte_from_unicode(utf8_next(mapped, i));
    if (b < 0) return std::nullopt;
    out += char(b);
  }
  return out;
}

std::string bytes_to_byte_level(std::string_view raw) {
  const auto& t = byte_to_unicode();
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) out += t[c];
  return out;
}

std::unique_ptr<PreTokenizer> make_byte_level_pre_tokenizer(const json& j) {
  return std::make_unique<ByteLevelPre>(j);
}

}  // namespace nestedfp::tok
