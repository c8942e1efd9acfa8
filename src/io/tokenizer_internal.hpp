#pragma once
// Building blocks of the tokenizer (include/nestedfp/tokenizer.hpp). Each tokenizer.json component
// (normalizer, pre_tokenizer, model, decoder) has a small interface and a factory that throws Error
// naming the component type and the file for anything it does not support.
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

struct pcre2_real_code_8;

namespace nestedfp::tok {

using json = nlohmann::json;

// ---- UTF-8 helpers (tokenizer_utf8.cpp) --------------------------------------------------------
// Length of the unit starting at s[i]: a whole well-formed character, or 1 for a byte that does not
// start one (so every byte string splits into units and nothing is lost).
size_t utf8_unit_len(std::string_view s, size_t i);
// Length of s without a trailing, still-incomplete (but so far well-formed) character.
size_t utf8_complete_prefix(std::string_view s);
// s with every ill-formed byte sequence replaced by U+FFFD.
std::string utf8_sanitize(std::string_view s);
bool utf8_valid(std::string_view s);
void utf8_append(std::string& out, char32_t cp);
// Decodes the unit at s[i] (advancing i); returns -1 for a byte that does not start a character.
int32_t utf8_next(std::string_view s, size_t& i);

// ---- byte-level (tokenizer_bytelevel.cpp) -------------------------------------------------------
// GPT-2's reversible byte <-> printable-character table.
const std::array<std::string, 256>& byte_to_unicode();  // UTF-8 of the character for each byte
int byte_from_unicode(int32_t cp);                      // -1 when cp is not in the table
// Maps every character of `mapped` back to its byte; nullopt if some character is not in the table.
std::optional<std::string> byte_level_to_bytes(std::string_view mapped);
std::string bytes_to_byte_level(std::string_view raw);

// ---- regex (tokenizer_regex.cpp) ----------------------------------------------------------------
// PCRE2 with UTF + UCP (Unicode \p{..}, \s, \w), JIT when available. Invalid UTF-8 in the subject
// is allowed (PCRE2_MATCH_INVALID_UTF): it never matches, so it ends up between matches.
class Regex {
 public:
  Regex(const std::string& pattern, bool literal, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-empty matches, left to right, as [begin, end) byte offsets.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

 private:
  pcre2_real_code_8* code_ = nullptr;
};

// Lightweight non-owning callable reference (pre-tokenizers call their sink once per piece).
template <typename Sig>
class FunctionRef;
template <typename R, typename... A>
class FunctionRef<R(A...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT: implicit by design
      : obj_(const_cast<void*>(static_cast<const void*>(&f))), call_([](void* o, A... a) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...);
        }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

// ---- normalizers (tokenizer_sentencepiece.cpp) --------------------------------------------------
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};
std::unique_ptr<Normalizer> make_normalizer(const json& j,
                                            const std::string& file);  // null -> nullptr

// ---- pre-tokenizers (tokenizer_pretokenizer.cpp; Metaspace in tokenizer_sentencepiece.cpp)
// ------- A piece and whether it starts at offset 0 of the text being encoded (Metaspace "first").
using PieceSink = FunctionRef<void(std::string_view, bool)>;
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void split(std::string_view s, bool at_start, PieceSink sink) const = 0;
  // True when the pieces are raw bytes the model must read through the byte-level table.
  virtual bool byte_level() const { return false; }
};
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& file);
std::unique_ptr<PreTokenizer> make_byte_level_pre_tokenizer(const json& j);
std::unique_ptr<PreTokenizer> make_metaspace_pre_tokenizer(const json& j, const std::string& file);

// How a Split pre-tokenizer treats the delimiters it matched.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
// Cuts s by the matches of `re` (inverted: the text between matches is the delimiter).
void split_by_regex(const Regex& re, std::string_view s, bool at_start, SplitBehavior behavior,
                    bool invert, PieceSink sink);

// Replace as normalizers and decoders write it: {"pattern": {"String"|"Regex": ...}, "content":
// ...}.
class Replacer {
 public:
  Replacer(const json& j, const std::string& where);
  std::string apply(std::string_view s) const;

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

// ---- BPE model (tokenizer_bpe.cpp) --------------------------------------------------------------
struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using PieceMap = std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>>;

class BpeModel {
 public:
  // `byte_level`: words arrive as raw bytes and vocab pieces are written in the byte-level
  // alphabet.
  BpeModel(const json& model, bool byte_level, const std::string& file);
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  const PieceMap& vocab() const { return vocab_; }
  int32_t max_id() const { return max_id_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
  }
  void initial_symbols(std::string_view word, std::vector<int32_t>& syms) const;
  void merge(std::vector<int32_t>& syms) const;
  std::optional<int32_t> whole_word(std::string_view word) const;

  bool byte_level_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_id_;
  PieceMap vocab_;      // as written in tokenizer.json
  PieceMap raw_vocab_;  // byte-level: raw bytes -> id
  std::array<int32_t, 256>
      byte_ids_{};  // byte-level: the byte's own token; else its <0xNN> token (-1: none)
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t max_id_ = -1;

  // Per-word results; bounded: cleared when full (the working set of real text refills it quickly).
  static constexpr size_t kCacheEntries = 1 << 17;
  static constexpr size_t kCacheMaxWord = 64;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StrHash, std::equal_to<>> cache_;
};

// ---- decoders (tokenizer_decoder.cpp) -----------------------------------------------------------
// Works on the token strings as written in tokenizer.json and leaves raw bytes (the final result is
// their concatenation), so that the incremental decoder can hold back split characters.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};
std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& file);  // null -> nullptr

// ---- helpers shared by the factories ------------------------------------------------------------
[[noreturn]] void unsupported(std::string_view component, const json& j, const std::string& file);
std::string json_type(const json& j);  // j["type"] or "" when absent

}  // namespace nestedfp::tok
