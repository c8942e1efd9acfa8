// SentencePiece-style pieces of the pipeline as Hugging Face writes them for Llama-2 / Mistral:
// the normalizers (Sequence, Prepend, Replace, Strip, NFC) and the Metaspace pre-tokenizer.
#include <spdlog/spdlog.h>

#include "io/tokenizer_internal.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::tok {
namespace {

class SequenceNorm final : public Normalizer {
 public:
  explicit SequenceNorm(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  void normalize(std::string& s) const override {
    for (const auto& n : steps_) n->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

class PrependNorm final : public Normalizer {
 public:
  explicit PrependNorm(std::string p) : p_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, p_);  // Hugging Face leaves an empty string empty
  }

 private:
  std::string p_;
};

class ReplaceNorm final : public Normalizer {
 public:
  ReplaceNorm(const json& j, const std::string& where) : r_(j, where) {}
  void normalize(std::string& s) const override { s = r_.apply(s); }

 private:
  Replacer r_;
};

class StripNorm final : public Normalizer {
 public:
  StripNorm(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    auto ws = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
    size_t b = 0, e = s.size();
    if (left_)
      while (b < e && ws(s[b])) ++b;
    if (right_)
      while (e > b && ws(s[e - 1])) --e;
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

// Unicode NFC needs composition tables this project does not carry; real text (and every test
// text here) is NFC already, so the step is passed through with a warning at load.
class NfcPassThrough final : public Normalizer {
 public:
  void normalize(std::string&) const override {}
};

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(const json& j, const std::string& file)
      : replacement_(j.value("replacement", std::string("\xE2\x96\x81"))) {
    if (j.contains("prepend_scheme")) {
      const std::string s = j.at("prepend_scheme").get<std::string>();
      if (s == "always")
        scheme_ = Scheme::Always;
      else if (s == "first")
        scheme_ = Scheme::First;
      else if (s == "never")
        scheme_ = Scheme::Never;
      else
        fail("{}: pre_tokenizer Metaspace has unknown prepend_scheme '{}'", file, s);
    } else {
      scheme_ = j.value("add_prefix_space", true) ? Scheme::Always : Scheme::Never;  // older files
    }
    split_ = j.value("split", true);
    if (split_)
      splitter_ = std::make_unique<Regex>(replacement_, true, file + ": pre_tokenizer Metaspace");
  }

  void split(std::string_view s, bool at_start, PieceSink sink) const override {
    std::string t;
    t.reserve(s.size() + replacement_.size() * 4);
    const bool prepend = scheme_ == Scheme::Always || (scheme_ == Scheme::First && at_start);
    if (prepend && !s.empty() && !s.starts_with(replacement_)) t = replacement_;
    for (char c : s) {
      if (c == ' ')
        t += replacement_;
      else
        t += c;
    }
    if (!split_) return sink(t, at_start);
    split_by_regex(*splitter_, t, at_start, SplitBehavior::MergedWithNext, false, sink);
  }

 private:
  enum class Scheme { Always, First, Never };
  std::string replacement_;
  Scheme scheme_;
  bool split_;
  std::unique_ptr<Regex> splitter_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_metaspace_pre_tokenizer(const json& j, const std::string& file) {
  return std::make_unique<Metaspace>(j, file);
}

std::unique_ptr<Normalizer> make_normalizer(const json& j, const std::string& file) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const json& s : j.at("normalizers"))
      if (auto n = make_normalizer(s, file)) steps.push_back(std::move(n));
    return std::make_unique<SequenceNorm>(std::move(steps));
  }
  if (type == "Prepend") return std::make_unique<PrependNorm>(j.at("prepend").get<std::string>());
  if (type == "Replace") return std::make_unique<ReplaceNorm>(j, file + ": normalizer Replace");
  if (type == "Strip")
    return std::make_unique<StripNorm>(j.value("strip_left", true), j.value("strip_right", true));
  if (type == "NFC") {
    spdlog::warn(
        "{}: normalizer NFC is applied as a pass-through (input text is assumed to be NFC already)",
        file);
    return std::make_unique<NfcPassThrough>();
  }
  unsupported("normalizer", j, file);
}

}  // namespace nestedfp::tok
