// Decoders (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence) and the streaming
// IncrementalDecoder.
#include <fmt/format.h>

#include "io/tokenizer_internal.hpp"
#include "nestedfp/error.hpp"
#include "nestedfp/tokenizer.hpp"

namespace nestedfp::tok {
namespace {

class ByteLevelDec final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& toks) const override {
    for (auto& t : toks)
      if (auto raw = byte_level_to_bytes(t))
        t = std::move(*raw);  // else (e.g. an added token) as written
  }
};

class ReplaceDec final : public Decoder {
 public:
  ReplaceDec(const json& j, const std::string& where) : r_(j, where) {}
  void decode_chain(std::vector<std::string>& toks) const override {
    for (auto& t : toks) t = r_.apply(t);
  }

 private:
  Replacer r_;
};

// <0xNN> tokens become the byte NN (left raw: the caller decides what to do with split characters).
class ByteFallbackDec final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& toks) const override {
    for (auto& t : toks) {
      if (t.size() == 6 && t.starts_with("<0x") && t[5] == '>' &&
          std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4])))
        t = std::string(1, char(std::stoi(t.substr(3, 2), nullptr, 16)));
    }
  }
};

class FuseDec final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& toks) const override {
    std::string all;
    for (auto& t : toks) all += t;
    toks.assign(1, std::move(all));
  }
};

class StripDec final : public Decoder {
 public:
  StripDec(std::string content, size_t start, size_t stop)
      : c_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& toks) const override {
    if (c_.empty()) return;
    for (auto& t : toks) {
      for (size_t k = 0; k < start_ && t.starts_with(c_); ++k) t.erase(0, c_.size());
      for (size_t k = 0; k < stop_ && t.ends_with(c_); ++k) t.resize(t.size() - c_.size());
    }
  }

 private:
  std::string c_;
  size_t start_, stop_;
};

class MetaspaceDec final : public Decoder {
 public:
  MetaspaceDec(std::string rep, bool strip_first)
      : rep_(std::move(rep)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& toks) const override {
    for (size_t i = 0; i < toks.size(); ++i) {
      std::string& t = toks[i];
      std::string out;
      for (size_t p = 0; p < t.size();) {
        if (t.compare(p, rep_.size(), rep_) == 0) {
          out += ' ';
          p += rep_.size();
        } else {
          out += t[p++];
        }
      }
      if (i == 0 && strip_first_ && out.starts_with(' ')) out.erase(0, 1);
      t = std::move(out);
    }
  }

 private:
  std::string rep_;
  bool strip_first_;
};

class SequenceDec final : public Decoder {
 public:
  explicit SequenceDec(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& toks) const override {
    for (const auto& d : steps_) d->decode_chain(toks);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace

std::unique_ptr<Decoder> make_decoder(const json& j, const std::string& file) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDec>();
  if (type == "Replace") return std::make_unique<ReplaceDec>(j, file + ": decoder Replace");
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDec>();
  if (type == "Fuse") return std::make_unique<FuseDec>();
  if (type == "Strip")
    return std::make_unique<StripDec>(j.value("content", std::string(" ")),
                                      j.value("start", size_t(0)), j.value("stop", size_t(0)));
  if (type == "Metaspace") {
    bool strip = j.value("add_prefix_space", true);
    if (j.contains("prepend_scheme")) strip = j.at("prepend_scheme").get<std::string>() != "never";
    return std::make_unique<MetaspaceDec>(j.value("replacement", std::string("\xE2\x96\x81")),
                                          strip);
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const json& s : j.at("decoders"))
      if (auto d = make_decoder(s, file)) steps.push_back(std::move(d));
    return std::make_unique<SequenceDec>(std::move(steps));
  }
  unsupported("decoder", j, file);
}

}  // namespace nestedfp::tok

namespace nestedfp {

IncrementalDecoder::IncrementalDecoder(Tokenizer tokenizer, bool skip_special_tokens)
    : tok_(std::move(tokenizer)), skip_special_(skip_special_tokens) {}

std::string IncrementalDecoder::push(int32_t id) {
  (void)tok_.id_to_piece(id);  // validates the id before it enters the window
  ids_.push_back(id);
  const std::string text = tok_.decode_bytes(ids_, skip_special_);
  const size_t safe = tok::utf8_complete_prefix(text);
  std::string out;
  if (safe > emitted_) {
    out = tok::utf8_sanitize(std::string_view(text).substr(emitted_, safe - emitted_));
    emitted_ = safe;
  }
  if (safe == text.size()) {
    // Everything is out: keep only the tokens emitted by this call, as context for the next one
    // (a decoder may treat the first token of a sequence differently, e.g. strip its space). When
    // those decode to nothing (skipped special tokens), the older context stays.
    const std::span<const int32_t> recent(ids_.data() + read_, ids_.size() - read_);
    if (std::string ctx = tok_.decode_bytes(recent, skip_special_); !ctx.empty()) {
      ids_.erase(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(read_));
      emitted_ = ctx.size();
    }
    read_ = ids_.size();
  }
  return out;
}

std::string IncrementalDecoder::finish() {
  const std::string text = tok_.decode_bytes(ids_, skip_special_);
  std::string out = text.size() > emitted_
                        ? tok::utf8_sanitize(std::string_view(text).substr(emitted_))
                        : std::string();
  reset();
  return out;
}

void IncrementalDecoder::reset() {
  ids_.clear();
  read_ = 0;
  emitted_ = 0;
}

}  // namespace nestedfp
