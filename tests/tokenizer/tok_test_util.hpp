#pragma once
// Shared helpers for the tokenizer tests: model paths, the public eval text, synthetic tokenizers.
#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "nestedfp/tokenizer.hpp"

namespace tok_test {

inline std::string model_dir() { return std::string(NESTEDFP_SOURCE_DIR) + "/models/pystd-16m"; }
inline std::string eval_text_path() {
  return std::string(NESTEDFP_SOURCE_DIR) + "/../shared/data/eval/pystd_public.txt.gz";
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline nlohmann::json reference() {
  return nlohmann::json::parse(read_text(model_dir() + "/REFERENCE.json"));
}
inline nlohmann::json pystd_tokenizer_json() {
  return nlohmann::json::parse(read_text(model_dir() + "/tokenizer.json"));
}

// The whole public eval text; empty (and a test failure with the reason) when it cannot be read.
inline const std::string& eval_text() {
  static const std::string text = [] {
    std::string out;
    gzFile f = gzopen(eval_text_path().c_str(), "rb");
    if (!f) {
      ADD_FAILURE() << "cannot open " << eval_text_path()
                    << ": the tokenizer tests need ../shared/data/eval/pystd_public.txt.gz next to "
                       "the source tree";
      return out;
    }
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, size_t(n));
    gzclose(f);
    return out;
  }();
  return text;
}

inline bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += size_t(n);
  }
  return true;
}

// Small SentencePiece-style BPE as Hugging Face writes Llama-2's: Prepend+Replace normalizer, no
// pre-tokenizer, byte fallback <0x00>..<0xFF> at ids 3..258, then a few pieces and merges.
inline constexpr const char* kU = "\xE2\x96\x81";  // "▁"
inline nlohmann::json sp_tokenizer_json(bool byte_fallback = true, bool fuse_unk = true) {
  using nlohmann::json;
  const std::string u = kU;
  json vocab = json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  char name[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  const std::vector<std::string> pieces = {u,         "h",   "e",         "l",       "o",
                                           "w",       "r",   "d",         "he",      "ll",
                                           u + "he",  "llo", u + "hello", u + "w",   "or",
                                           u + "wor", "ld",  u + "world", "\xC3\xA9" /* é */};
  for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i]] = int(259 + i);
  json merges = json::array({"h e", "l l", u + " he", "ll o", u + "he llo", u + " w", "o r",
                             u + "w or", "l d", u + "wor ld"});
  json added = json::array();
  for (auto [c, id] : {std::pair{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}})
    added.push_back({{"id", id},
                     {"content", c},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  return json{
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         json::array({{{"type", "Prepend"}, {"prepend", u}},
                      {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", u}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", json::array()},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array({{{"type", "Replace"}, {"pattern", {{"String", u}}}, {"content", " "}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}},
                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", fuse_unk},
        {"byte_fallback", byte_fallback},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merges}}}};
}

inline nestedfp::Tokenizer from(const nlohmann::json& j) {
  return nestedfp::Tokenizer::from_json(j.dump(), "synthetic.json");
}

}  // namespace tok_test
