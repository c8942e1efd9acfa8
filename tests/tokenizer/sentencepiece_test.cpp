// SentencePiece-style BPE as Hugging Face writes it for Llama-2 / Mistral, on a synthetic vocab.
#include "tok_test_util.hpp"

using nestedfp::Tokenizer;
using namespace tok_test;
using Ids = std::vector<int32_t>;

namespace {
// Ids of the synthetic vocab (see sp_tokenizer_json).
constexpr int32_t kUnk = 0, kBos = 1, kEos = 2, kSpace = 259, kH = 260, kHe = 267, kSpaceHe = 269,
                  kLlo = 270, kHello = 271, kWorld = 276, kEAcute = 277;
int32_t byte_id(unsigned char b) { return 3 + b; }
}  // namespace

TEST(SentencePiece, MergesWithPrependAndReplace) {
  const Tokenizer t = from(sp_tokenizer_json());
  EXPECT_EQ(t.encode("hello world"), (Ids{kHello, kWorld}));
  EXPECT_EQ(t.encode("hello world", true), (Ids{kBos, kHello, kWorld}));
  EXPECT_EQ(t.encode("h\xC3\xA9llo"), (Ids{kSpace, kH, kEAcute, kLlo}));
  EXPECT_TRUE(t.encode("").empty());
  EXPECT_EQ(t.encode("", true), Ids{kBos});
}

TEST(SentencePiece, ByteFallbackForUnknownCharacters) {
  const Tokenizer t = from(sp_tokenizer_json());
  const std::string text = "hello \xE4\xBD\xA0";  // "hello 你": 你 is not in the vocab
  const Ids ids = t.encode(text);
  EXPECT_EQ(ids, (Ids{kHello, kSpace, byte_id(0xE4), byte_id(0xBD), byte_id(0xA0)}));
  EXPECT_EQ(t.decode(ids), text);
  EXPECT_EQ(t.id_to_piece(byte_id(0xE4)), "<0xE4>");
}

TEST(SentencePiece, DecodeStripsOneLeadingSpace) {
  const Tokenizer t = from(sp_tokenizer_json());
  for (const std::string s : {"  hi there", "hello world", " x", "a\tb\n c", "wor ld  "})
    EXPECT_EQ(t.decode(t.encode(s)), s);
  EXPECT_EQ(t.decode(Ids{kBos, kHello, kWorld}), "hello world");
  EXPECT_EQ(t.decode(Ids{kBos, kHello, kWorld}, false), "<s> hello world");  // as Hugging Face does
}

TEST(SentencePiece, UnknownWithoutByteFallback) {
  const Tokenizer fused = from(sp_tokenizer_json(false, true));
  EXPECT_EQ(fused.encode("hello \xE4\xBD\xA0\xE5\xA5\xBD"), (Ids{kHello, kSpace, kUnk}));
  const Tokenizer plain = from(sp_tokenizer_json(false, false));
  EXPECT_EQ(plain.encode("hello \xE4\xBD\xA0\xE5\xA5\xBD"), (Ids{kHello, kSpace, kUnk, kUnk}));
}

TEST(SentencePiece, InvalidUtf8UsesByteFallback) {
  const Tokenizer t = from(sp_tokenizer_json());
  const std::string bad = "he\xFF\xC3";
  Ids ids;
  ASSERT_NO_THROW(ids = t.encode(bad));
  EXPECT_EQ(ids, (Ids{kSpaceHe, byte_id(0xFF), byte_id(0xC3)}));
  EXPECT_EQ(t.decode_bytes(ids), bad);
  EXPECT_TRUE(valid_utf8(t.decode(ids)));
  // Without byte fallback a stray byte becomes unk rather than a crash.
  EXPECT_EQ(from(sp_tokenizer_json(false)).encode("he\xFF"), (Ids{kSpaceHe, kUnk}));
}

TEST(SentencePiece, MetaspacePreTokenizerPrependSchemes) {
  auto j = sp_tokenizer_json();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "Metaspace"}, {"replacement", kU}, {"prepend_scheme", "first"}, {"split", true}};
  j["decoder"] = {
      {"type", "Metaspace"}, {"replacement", kU}, {"prepend_scheme", "first"}, {"split", true}};
  const Tokenizer first = from(j);
  EXPECT_EQ(first.encode("hello world"), (Ids{kHello, kWorld}));
  EXPECT_EQ(first.encode("</s>hello"),
            (Ids{kEos, kHe, kLlo}));  // "first": not after an added token
  EXPECT_EQ(first.decode(first.encode("hello world")), "hello world");
  j["pre_tokenizer"]["prepend_scheme"] = "always";
  EXPECT_EQ(from(j).encode("</s>hello"), (Ids{kEos, kHello}));
  j["pre_tokenizer"]["prepend_scheme"] = "never";
  EXPECT_EQ(from(j).encode("hello world"), (Ids{kHe, kLlo, kWorld}));
}

TEST(SentencePiece, SideFilesGiveSpecialIdsAndChatTemplate) {
  const std::string dir = std::string(NESTEDFP_BINARY_DIR) + "/tok_sidefiles_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto write = [&](const char* name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
  };
  write("tokenizer.json", sp_tokenizer_json().dump());
  write(
      "tokenizer_config.json",
      R"({"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "chat_template": "{{ messages }}"})");
  write("generation_config.json", R"({"eos_token_id": [0, 2]})");
  Tokenizer t = Tokenizer::load(dir);
  EXPECT_EQ(t.bos_id(), kBos);
  EXPECT_EQ(t.eos_ids(), (Ids{kUnk, kEos}));
  EXPECT_EQ(t.chat_template(), "{{ messages }}");
  write(
      "tokenizer_config.json",
      R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  EXPECT_EQ(Tokenizer::load(dir).chat_template(), "D");
  write("chat_template.jinja", "J");
  EXPECT_EQ(Tokenizer::load(dir + "/tokenizer.json").chat_template(), "J");
  std::filesystem::remove_all(dir);
}
