// Byte-level BPE on the bundled pystd-16m tokenizer, checked against the Hugging Face reference
// ids.
#include <chrono>
#include <map>
#include <random>

#include "tok_test_util.hpp"

using nestedfp::Tokenizer;
using namespace tok_test;

namespace {

const Tokenizer& pystd() {
  static const Tokenizer t = Tokenizer::load(model_dir());
  return t;
}

// Encoded once for the whole suite (the timing test reports how long it took).
struct WholeFile {
  std::vector<int32_t> ids;
  double seconds = 0;
};
const WholeFile& whole_file() {
  static const WholeFile w = [] {
    WholeFile r;
    const auto t0 = std::chrono::steady_clock::now();
    r.ids = pystd().encode(eval_text());
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
  }();
  return w;
}

// Textbook BPE on strings (lowest rank first, leftmost on ties), independent of the library.
std::vector<int32_t> naive_bpe(const std::string& mapped_word,
                               const std::map<std::pair<std::string, std::string>, int>& ranks,
                               const nlohmann::json& vocab) {
  std::vector<std::string> s;
  for (size_t i = 0; i < mapped_word.size();) {
    const auto c = static_cast<unsigned char>(mapped_word[i]);
    const size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    s.push_back(mapped_word.substr(i, n));
    i += n;
  }
  for (;;) {
    int best = -1;
    size_t at = 0;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      auto it = ranks.find({s[i], s[i + 1]});
      if (it != ranks.end() && (best < 0 || it->second < best)) {
        best = it->second;
        at = i;
      }
    }
    if (best < 0) break;
    s[at] += s[at + 1];
    s.erase(s.begin() + long(at) + 1);
  }
  std::vector<int32_t> ids;
  for (auto& p : s) ids.push_back(vocab.at(p).get<int32_t>());
  return ids;
}

std::string to_byte_level(const std::string& raw) {
  // GPT-2's table, rebuilt here independently of the library.
  std::string out;
  for (unsigned char b : raw) {
    int cp = b;
    if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))) {
      int n = 0;
      for (int x = 0; x < b; ++x)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) ++n;
      cp = 256 + n;
    }
    if (cp < 0x80)
      out += char(cp);
    else {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

}  // namespace

TEST(ByteLevel, EvalTextIsPresent) {
  ASSERT_FALSE(eval_text().empty()) << "missing or empty: " << eval_text_path();
}

TEST(ByteLevel, FirstIdsMatchReference) {
  const auto ref = reference()["perplexity"]["first_ids"].get<std::vector<int32_t>>();
  ASSERT_FALSE(eval_text().empty());
  const auto& ids = whole_file().ids;
  ASSERT_GE(ids.size(), ref.size());
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + long(ref.size())), ref);
}

TEST(ByteLevel, TotalTokenCountMatchesReference) {
  ASSERT_FALSE(eval_text().empty());
  EXPECT_EQ(int64_t(whole_file().ids.size()),
            reference()["perplexity"]["total_tokens_in_file"].get<int64_t>());
}

TEST(ByteLevel, WholeFileRoundTripsAndIsFast) {
  ASSERT_FALSE(eval_text().empty());
  const auto& w = whole_file();
  std::printf("encoded %zu bytes into %zu tokens in %.2f s\n", eval_text().size(), w.ids.size(),
              w.seconds);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string back = pystd().decode(w.ids);
  std::printf("decoded in %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_TRUE(back == eval_text()) << "decode(encode(text)) differs from the text";
  EXPECT_LT(w.seconds, 15.0) << "encoding the eval text should take a few seconds at most";
}

TEST(ByteLevel, PromptIdsMatchReferenceWithBos) {
  const auto ref = reference();
  ASSERT_FALSE(ref["greedy"].empty());
  for (const auto& g : ref["greedy"]) {
    const auto expect = g["prompt_ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(expect.front(), pystd().bos_id()) << "reference prompt_ids start with BOS";
    EXPECT_EQ(pystd().encode(g["prompt"].get<std::string>(), /*add_special_tokens=*/true), expect);
    EXPECT_EQ(pystd().encode(g["prompt"].get<std::string>()),
              std::vector<int32_t>(expect.begin() + 1, expect.end()));
  }
}

TEST(ByteLevel, SpecialIdsFromConfigs) {
  EXPECT_EQ(pystd().bos_id(), 0);
  EXPECT_EQ(pystd().eos_ids(), std::vector<int32_t>{1});
  EXPECT_EQ(pystd().vocab_size(), 8192);
  EXPECT_EQ(pystd().token_id("<|end_of_text|>"), 1);
  EXPECT_EQ(pystd().encode("  "),
            std::vector<int32_t>{*pystd().token_id("\xC4\xA0\xC4\xA0")});  // "ĠĠ" is a piece
  EXPECT_FALSE(pystd().token_id("no such piece").has_value());
  EXPECT_TRUE(pystd().is_special(0));
  EXPECT_FALSE(pystd().is_special(100));
  EXPECT_TRUE(pystd().chat_template().empty());
}

TEST(ByteLevel, AddedTokensAreMatchedInText) {
  const auto& t = pystd();
  const auto a = t.encode("x = 1");
  auto expect = a;
  expect.push_back(1);
  const auto b = t.encode(" y");
  expect.insert(expect.end(), b.begin(), b.end());
  EXPECT_EQ(t.encode("x = 1<|end_of_text|> y"), expect);
  // Special tokens are skipped by default and kept on request.
  EXPECT_EQ(t.decode(expect), "x = 1 y");
  EXPECT_EQ(t.decode(expect, false), "x = 1<|end_of_text|> y");
}

TEST(ByteLevel, RandomUtf8RoundTrips) {
  std::mt19937 rng(1234);
  const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
      {0x20, 0x7E},       {0x09, 0x0D},     {0xA0, 0x24F},    {0x391, 0x3C9},
      {0x400, 0x4FF},     {0x3000, 0x3000}, {0x4E00, 0x4FFF}, {0xAC00, 0xAD00},
      {0x1F600, 0x1F64F}, {0x2000, 0x200A}, {0x30, 0x39}};
  for (int iter = 0; iter < 300; ++iter) {
    std::string s;
    const int len = int(rng() % 60);
    for (int k = 0; k < len; ++k) {
      const auto& r = ranges[rng() % ranges.size()];
      const uint32_t cp = r.first + rng() % (r.second - r.first + 1);
      if (cp < 0x80)
        s += char(cp);
      else if (cp < 0x800) {
        s += char(0xC0 | (cp >> 6));
        s += char(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        s += char(0xE0 | (cp >> 12));
        s += char(0x80 | ((cp >> 6) & 0x3F));
        s += char(0x80 | (cp & 0x3F));
      } else {
        s += char(0xF0 | (cp >> 18));
        s += char(0x80 | ((cp >> 12) & 0x3F));
        s += char(0x80 | ((cp >> 6) & 0x3F));
        s += char(0x80 | (cp & 0x3F));
      }
    }
    ASSERT_EQ(pystd().decode(pystd().encode(s)), s) << "iteration " << iter;
  }
}

TEST(ByteLevel, RandomBytesRoundTripExactly) {
  std::mt19937 rng(99);
  for (int iter = 0; iter < 300; ++iter) {
    std::string s(rng() % 80, '\0');
    for (auto& c : s) c = char(rng() & 0xFF);
    const auto ids = pystd().encode(s);
    ASSERT_EQ(pystd().decode_bytes(ids), s) << "iteration " << iter;
    ASSERT_TRUE(valid_utf8(pystd().decode(ids)));
  }
}

TEST(ByteLevel, InvalidUtf8IsEncodedAsRawBytes) {
  const std::string bad = "ok \xFF\xFE then \xC3 and \xE2\x82 end\xF0\x9F";
  std::vector<int32_t> ids;
  ASSERT_NO_THROW(ids = pystd().encode(bad));
  EXPECT_EQ(pystd().decode_bytes(ids), bad);
  const std::string shown = pystd().decode(ids);
  EXPECT_TRUE(valid_utf8(shown));
  EXPECT_NE(shown.find("\xEF\xBF\xBD"), std::string::npos);
  EXPECT_EQ(shown.substr(0, 3), "ok ");
}

TEST(ByteLevel, LongWordsMatchTextbookBpe) {
  // Long single pre-tokens take the heap path; compare with a textbook implementation.
  const auto j = pystd_tokenizer_json();
  std::map<std::pair<std::string, std::string>, int> ranks;
  int r = 0;
  for (const auto& m : j["model"]["merges"])
    ranks.emplace(std::pair{m[0].get<std::string>(), m[1].get<std::string>()}, r++);
  std::mt19937 rng(7);
  const std::string letters = "etaoinshrdlucmfwypvbgkqjxz_";
  for (int iter = 0; iter < 60; ++iter) {
    std::string w;
    const int len = 25 + int(rng() % 200);
    for (int k = 0; k < len; ++k) w += letters[rng() % letters.size()];
    ASSERT_EQ(pystd().encode(w), naive_bpe(to_byte_level(w), ranks, j["model"]["vocab"])) << w;
  }
  const std::string spaces(3000, ' ');  // one \s+ piece of 3000 bytes
  EXPECT_EQ(pystd().decode(pystd().encode(spaces + "x")), spaces + "x");
}

TEST(ByteLevel, SplitThenByteLevelSequenceMatchesPlainByteLevel) {
  // Llama-3 / Qwen layout: Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)].
  auto j = pystd_tokenizer_json();
  const std::string gpt2 =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"},
                           {"pattern", {{"Regex", gpt2}}},
                           {"behavior", "Isolated"},
                           {"invert", false}},
                          {{"type", "ByteLevel"},
                           {"add_prefix_space", false},
                           {"trim_offsets", true},
                           {"use_regex", false}}}}};
  const Tokenizer seq = from(j);
  ASSERT_FALSE(eval_text().empty());
  const std::string sample = eval_text().substr(0, 300000);
  EXPECT_EQ(seq.encode(sample), pystd().encode(sample));

  // Llama-3's own pattern splits digits in groups of at most three.
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  const Tokenizer l3 = from(j);
  auto a = l3.encode("1234567"), b = l3.encode("123"), c = l3.encode("456"), d = l3.encode("7");
  b.insert(b.end(), c.begin(), c.end());
  b.insert(b.end(), d.begin(), d.end());
  EXPECT_EQ(a, b);
  EXPECT_NE(pystd().encode("1234567"), a);  // GPT-2's \p{N}+ keeps the run together
  EXPECT_EQ(l3.decode(l3.encode(sample)), sample);
}

TEST(ByteLevel, MergeRanksAndIgnoreMerges) {
  // Tiny byte-level model: "abc" is in the vocab but no merge path reaches it.
  nlohmann::json j = {
      {"model",
       {{"type", "BPE"},
        {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}}},
        {"merges", nlohmann::json::array({"b c", "a b"})},
        {"ignore_merges", false}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}}};
  EXPECT_EQ(from(j).encode("abc"), (std::vector<int32_t>{0, 4}));  // "b c" ranks first
  j["model"]["merges"] = nlohmann::json::array({"a b", "b c"});
  EXPECT_EQ(from(j).encode("abc"), (std::vector<int32_t>{3, 2}));
  j["model"]["merges"] = nlohmann::json::array(
      {nlohmann::json::array({"a", "b"}), nlohmann::json::array({"b", "c"})});  // [l, r] form
  EXPECT_EQ(from(j).encode("abc"), (std::vector<int32_t>{3, 2}));
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(from(j).encode("abc"), (std::vector<int32_t>{5}));
  EXPECT_EQ(from(j).encode("abcb"), (std::vector<int32_t>{3, 2, 1}));  // not a piece: merges apply
}

TEST(ByteLevel, AddedTokenStripOptions) {
  auto j = pystd_tokenizer_json();
  j["added_tokens"].push_back({{"id", 8192},
                               {"content", "<mask>"},
                               {"single_word", false},
                               {"lstrip", true},
                               {"rstrip", true},
                               {"normalized", false},
                               {"special", false}});
  j["added_tokens"].push_back({{"id", 8193},
                               {"content", "cat"},
                               {"single_word", true},
                               {"lstrip", false},
                               {"rstrip", false},
                               {"normalized", false},
                               {"special", false}});
  const Tokenizer t = from(j);
  EXPECT_EQ(t.vocab_size(), 8194);
  auto expect = t.encode("a");
  expect.push_back(8192);
  const auto b = t.encode("b");
  expect.insert(expect.end(), b.begin(), b.end());
  EXPECT_EQ(t.encode("a  <mask>  b"), expect);  // spaces around it are absorbed
  const auto words = t.encode("a cat");
  EXPECT_EQ(words.back(), 8193);
  const auto inside = t.encode("concatenate");  // not a single word there
  EXPECT_EQ(std::count(inside.begin(), inside.end(), 8193), 0);
  EXPECT_EQ(t.decode(t.encode("concatenate")), "concatenate");
}
