// Unsupported components, broken files and bad ids give an Error that names the problem.
#include "nestedfp/error.hpp"
#include "tok_test_util.hpp"

using nestedfp::Error;
using nestedfp::Tokenizer;
using namespace tok_test;

namespace {
// The message of the Error that `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(TokenizerErrors, UnsupportedModelTypes) {
  for (const char* type : {"Unigram", "WordPiece", "WordLevel"}) {
    auto j = sp_tokenizer_json();
    j["model"]["type"] = type;
    const std::string msg = error_of([&] { from(j); });
    EXPECT_NE(msg.find(type), std::string::npos) << msg;
    EXPECT_NE(msg.find("synthetic.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model"), std::string::npos) << msg;
  }
}

TEST(TokenizerErrors, UnknownComponents) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"normalizer", "NFKD"},
      {"pre_tokenizer", "BertPreTokenizer"},
      {"decoder", "WordPiece"},
      {"post_processor", "Fancy"}};
  for (auto [component, type] : cases) {
    auto j = sp_tokenizer_json();
    j[component] = {{"type", type}};
    const std::string msg = error_of([&] { from(j); });
    EXPECT_NE(msg.find(component), std::string::npos) << msg;
    EXPECT_NE(msg.find(type), std::string::npos) << msg;
    EXPECT_NE(msg.find("synthetic.json"), std::string::npos) << msg;
  }
  auto j = sp_tokenizer_json();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Punctuation"}}}}};
  EXPECT_NE(error_of([&] { from(j); }).find("Punctuation"), std::string::npos);
}

TEST(TokenizerErrors, BrokenFiles) {
  EXPECT_NE(error_of([] { Tokenizer::from_json("{not json", "x.json"); }).find("x.json"),
            std::string::npos);
  EXPECT_NE(error_of([] { Tokenizer::from_json("{}", "x.json"); }).find("model"),
            std::string::npos);
  EXPECT_NE(error_of([] { Tokenizer::load("/nonexistent/model"); }).find("/nonexistent/model"),
            std::string::npos);
  EXPECT_NE(error_of([] { Tokenizer::load(NESTEDFP_SOURCE_DIR "/tests"); }).find("tokenizer.json"),
            std::string::npos);
  auto j = sp_tokenizer_json();
  j["model"]["merges"].push_back("x y");  // pieces that are not in the vocab
  EXPECT_NE(error_of([&] { from(j); }).find("merge"), std::string::npos);
  j = sp_tokenizer_json();
  j["model"]["vocab"] = 3;
  EXPECT_NE(error_of([&] { from(j); }).find("vocab"), std::string::npos);
  j = sp_tokenizer_json();
  j["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  EXPECT_NE(error_of([&] { from(j); }).find("regex"), std::string::npos);
}

TEST(TokenizerErrors, IdsOutOfRange) {
  const Tokenizer t = from(sp_tokenizer_json());
  const int32_t n = t.vocab_size();
  EXPECT_NE(error_of([&] {
              t.decode(std::vector<int32_t>{1, n});
            }).find(std::to_string(n)),
            std::string::npos);
  EXPECT_FALSE(error_of([&] { t.decode(std::vector<int32_t>{-1}); }).empty());
  EXPECT_FALSE(error_of([&] { t.id_to_piece(n + 5); }).empty());
  EXPECT_TRUE(error_of([&] { t.decode(std::vector<int32_t>{n - 1}); }).empty());
}

// The stand-in for dummy-weight models without a tokenizer.json: bytes round-trip, every id of the
// vocabulary decodes, nothing is an EOS, and a bad size is refused.
TEST(PlaceholderTokenizer, CoversTheVocabulary) {
  const nestedfp::Tokenizer t = nestedfp::Tokenizer::placeholder(128256);
  EXPECT_EQ(t.vocab_size(), 128256);
  EXPECT_TRUE(t.eos_ids().empty());
  const std::string text = "def f(x):\n    return x + 1  # é";
  const auto ids = t.encode(text);
  EXPECT_EQ(ids.size(), text.size());  // byte by byte: no merges
  for (int32_t id : ids) EXPECT_LT(id, 256);
  EXPECT_EQ(t.decode(ids), text);
  const std::vector<int32_t> high = {256, 128255};
  EXPECT_EQ(t.decode(high), " t256 t128255");
  EXPECT_THROW(nestedfp::Tokenizer::placeholder(100), nestedfp::Error);
}
