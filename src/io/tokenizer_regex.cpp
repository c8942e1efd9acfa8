// PCRE2 wrapper and the regex-driven pre-tokenizers (Split, Sequence, Digits, Whitespace,
// WhitespaceSplit) with Hugging Face's split behaviors.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

#include "io/tokenizer_internal.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::tok {
namespace {

// Deeply nested alternations on long runs (e.g. \s+ over thousands of spaces) can need more than
// PCRE2's default 32 KiB JIT stack; one per thread, made on first use.
pcre2_jit_stack* thread_jit_stack() {
  struct Holder {
    pcre2_jit_stack* s = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    ~Holder() { pcre2_jit_stack_free(s); }
  };
  thread_local Holder h;
  return h.s;
}

}  // namespace

Regex::Regex(const std::string& pattern, bool literal, const std::string& where) {
  int err = 0;
  PCRE2_SIZE off = 0;
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
  if (literal)
    opts = (opts & ~uint32_t(PCRE2_UCP)) | PCRE2_LITERAL;  // UCP is meaningless (and refused) there
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts, &err,
                        &off, nullptr);
  if (!code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("{}: cannot compile regex '{}' at offset {}: {}", where, pattern, off,
         reinterpret_cast<char*>(msg));
  }
  pcre2_jit_compile(code_,
                    PCRE2_JIT_COMPLETE);  // falls back to the interpreter when JIT is missing
}

Regex::~Regex() { pcre2_code_free(code_); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> out;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
  pcre2_match_context* mc = pcre2_match_context_create(nullptr);
  pcre2_jit_stack_assign(mc, nullptr, thread_jit_stack());
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos < s.size()) {
    const int rc = pcre2_match(code_, subj, s.size(), pos, 0, md, mc);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_context_free(mc);
      pcre2_match_data_free(md);
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("tokenizer regex match failed: {}", reinterpret_cast<char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      pos = e;
    } else {
      pos = b + utf8_unit_len(s, b);  // empty match: step over one character
    }
  }
  pcre2_match_context_free(mc);
  pcre2_match_data_free(md);
  return out;
}

void split_by_regex(const Regex& re, std::string_view s, bool at_start, SplitBehavior behavior,
                    bool invert, PieceSink sink) {
  // Pieces as (begin, end, is_delimiter), covering s.
  struct Span {
    size_t b, e;
    bool delim;
  };
  std::vector<Span> spans;
  size_t last = 0;
  for (auto [b, e] : re.find_all(s)) {
    if (b > last) spans.push_back({last, b, invert});
    spans.push_back({b, e, !invert});
    last = e;
  }
  if (last < s.size()) spans.push_back({last, s.size(), invert});

  auto emit = [&](size_t b, size_t e) {
    if (e > b) sink(s.substr(b, e - b), at_start && b == 0);
  };
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const Span& p : spans)
        if (!p.delim) emit(p.b, p.e);
      break;
    case SplitBehavior::Isolated:
      for (const Span& p : spans) emit(p.b, p.e);
      break;
    case SplitBehavior::Contiguous: {
      size_t i = 0;
      while (i < spans.size()) {
        size_t j = i + 1;
        while (spans[i].delim && j < spans.size() && spans[j].delim) ++j;
        emit(spans[i].b, spans[j - 1].e);
        i = j;
      }
      break;
    }
    case SplitBehavior::MergedWithPrevious: {
      size_t start = 0;
      for (const Span& p : spans)
        if (p.delim) {
          emit(start, p.e);
          start = p.e;
        }
      emit(start, s.size());
      break;
    }
    case SplitBehavior::MergedWithNext: {
      size_t start = 0;
      for (const Span& p : spans)
        if (p.delim) {
          emit(start, p.b);
          start = p.b;
        }
      emit(start, s.size());
      break;
    }
  }
}

Replacer::Replacer(const json& j, const std::string& where)
    : content_(j.value("content", std::string())) {
  const json& pat = j.at("pattern");
  if (pat.contains("String")) {
    literal_ = pat.at("String").get<std::string>();
    if (literal_.empty()) fail("{}: Replace with an empty pattern", where);
  } else if (pat.contains("Regex")) {
    regex_ = std::make_unique<Regex>(pat.at("Regex").get<std::string>(), false, where);
  } else {
    fail("{}: Replace pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}", where);
  }
}

std::string Replacer::apply(std::string_view s) const {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t last = 0;
  if (regex_) {
    for (auto [b, e] : regex_->find_all(s)) {
      out.append(s.substr(last, b - last));
      out += content_;
      last = e;
    }
  } else {
    for (size_t p = s.find(literal_); p != std::string_view::npos; p = s.find(literal_, last)) {
      out.append(s.substr(last, p - last));
      out += content_;
      last = p + literal_.size();
    }
  }
  out.append(s.substr(last));
  return out;
}

namespace {

SplitBehavior parse_behavior(const json& j, const std::string& file) {
  const std::string b = j.value("behavior", std::string("Isolated"));
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  fail("{}: pre_tokenizer Split has unknown behavior '{}'", file, b);
}

class RegexSplit final : public PreTokenizer {
 public:
  RegexSplit(std::unique_ptr<Regex> re, SplitBehavior b, bool invert)
      : re_(std::move(re)), behavior_(b), invert_(invert) {}
  void split(std::string_view s, bool at_start, PieceSink sink) const override {
    split_by_regex(*re_, s, at_start, behavior_, invert_, sink);
  }

 private:
  std::unique_ptr<Regex> re_;
  SplitBehavior behavior_;
  bool invert_;
};

class SequencePre final : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void split(std::string_view s, bool at_start, PieceSink sink) const override {
    run(0, s, at_start, sink);
  }
  bool byte_level() const override { return !steps_.empty() && steps_.back()->byte_level(); }

 private:
  // Depth first: each piece of step i goes straight through steps i+1.. (no big piece lists).
  void run(size_t i, std::string_view s, bool at_start, PieceSink sink) const {
    if (i == steps_.size()) return sink(s, at_start);
    steps_[i]->split(s, at_start, [&](std::string_view p, bool st) { run(i + 1, p, st, sink); });
  }
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

std::unique_ptr<PreTokenizer> regex_split(const char* pattern, SplitBehavior b, bool invert,
                                          const std::string& where) {
  return std::make_unique<RegexSplit>(std::make_unique<Regex>(pattern, false, where), b, invert);
}

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j, const std::string& file) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j);
  const std::string where = fmt::format("{}: pre_tokenizer {}", file, type);
  if (type == "ByteLevel") return make_byte_level_pre_tokenizer(j);
  if (type == "Metaspace") return make_metaspace_pre_tokenizer(j, file);
  if (type == "Split") {
    const json& pat = j.at("pattern");
    std::unique_ptr<Regex> re;
    if (pat.contains("Regex"))
      re = std::make_unique<Regex>(pat.at("Regex").get<std::string>(), false, where);
    else if (pat.contains("String"))
      re = std::make_unique<Regex>(pat.at("String").get<std::string>(), true, where);
    else
      fail("{}: pattern must be {{\"String\": ...}} or {{\"Regex\": ...}}", where);
    return std::make_unique<RegexSplit>(std::move(re), parse_behavior(j, file),
                                        j.value("invert", false));
  }
  if (type == "Digits")  // Rust's char::is_numeric is the Unicode N category
    return regex_split(
        R"(\p{N})",
        j.value("individual_digits", false) ? SplitBehavior::Isolated : SplitBehavior::Contiguous,
        false, where);
  if (type == "Whitespace")
    return regex_split(R"(\w+|[^\w\s]+)", SplitBehavior::Removed, true, where);
  if (type == "WhitespaceSplit") return regex_split(R"(\s+)", SplitBehavior::Removed, false, where);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (const json& s : j.at("pretokenizers")) {
      if (!steps.empty() && steps.back()->byte_level())
        fail(
            "{}: ByteLevel must be the last step of a pre_tokenizer Sequence (it is not here); "
            "this layout is not supported",
            file);
      if (auto p = make_pre_tokenizer(s, file)) steps.push_back(std::move(p));
    }
    return std::make_unique<SequencePre>(std::move(steps));
  }
  unsupported("pre_tokenizer", j, file);
}

}  // namespace nestedfp::tok
