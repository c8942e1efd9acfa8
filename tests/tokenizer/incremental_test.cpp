// IncrementalDecoder: only complete UTF-8 comes out, and the stream concatenates to decode(ids).
#include <random>

#include "nestedfp/error.hpp"
#include "tok_test_util.hpp"

using nestedfp::IncrementalDecoder;
using nestedfp::Tokenizer;
using namespace tok_test;

namespace {

// Streams ids one by one; every chunk must be valid UTF-8. Returns the concatenation.
std::string stream(const Tokenizer& t, const std::vector<int32_t>& ids,
                   int* empty_pushes = nullptr) {
  IncrementalDecoder dec(t);
  std::string all;
  for (int32_t id : ids) {
    const std::string chunk = dec.push(id);
    EXPECT_TRUE(valid_utf8(chunk)) << "chunk is not valid UTF-8";
    if (chunk.empty() && empty_pushes) ++*empty_pushes;
    all += chunk;
  }
  const std::string rest = dec.finish();
  EXPECT_TRUE(valid_utf8(rest));
  return all + rest;
}

}  // namespace

TEST(Incremental, ByteLevelMultiByteCharactersSplitAcrossTokens) {
  const Tokenizer t = Tokenizer::load(model_dir());
  const std::string text =
      "caf\xC3\xA9 \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82 ok\n\xE2\x82\xAC";  // café 世界 🙂
                                                                                 // ok\n€
  const auto ids = t.encode(text);
  // The test means something only if some token ends inside a character.
  int partial = 0;
  for (int32_t id : ids) partial += !valid_utf8(t.decode_bytes(std::vector<int32_t>{id}));
  ASSERT_GT(partial, 0);
  int empty = 0;
  EXPECT_EQ(stream(t, ids, &empty), text);
  EXPECT_GT(empty, 0) << "split characters must be held back";
}

TEST(Incremental, ByteLevelWholeFilePrefix) {
  const Tokenizer t = Tokenizer::load(model_dir());
  ASSERT_FALSE(eval_text().empty());
  const std::string text = eval_text().substr(0, 60000);
  EXPECT_EQ(stream(t, t.encode(text)), text);
}

TEST(Incremental, TruncatedCharacterIsFlushedAsReplacement) {
  const Tokenizer t = Tokenizer::load(model_dir());
  auto ids = t.encode("a\xF0\x9F\x99\x82");
  std::string raw;
  // Drop tokens from the end until the bytes stop inside the emoji.
  while (!ids.empty() && valid_utf8(raw = t.decode_bytes(ids))) ids.pop_back();
  ASSERT_FALSE(ids.empty());
  IncrementalDecoder dec(t);
  std::string out;
  for (int32_t id : ids) out += dec.push(id);
  EXPECT_EQ(out, "a");
  EXPECT_EQ(dec.finish(), "\xEF\xBF\xBD");
}

TEST(Incremental, SentencePieceKeepsSpacesAndBytes) {
  const Tokenizer t = from(sp_tokenizer_json());
  const std::string text = "hello world \xE4\xBD\xA0 h\xC3\xA9llo";
  const auto ids = t.encode(text, true);
  EXPECT_EQ(stream(t, ids), text);
  EXPECT_EQ(stream(t, ids), t.decode(ids));
  IncrementalDecoder dec(t);
  EXPECT_EQ(dec.push(ids[0]), "");  // <s> is skipped
  EXPECT_EQ(dec.push(ids[1]), "hello");
  EXPECT_EQ(dec.push(ids[2]), " world");
}

TEST(Incremental, BadIdThrows) {
  const Tokenizer t = from(sp_tokenizer_json());
  IncrementalDecoder dec(t);
  EXPECT_THROW(dec.push(t.vocab_size()), nestedfp::Error);
}

TEST(Incremental, RandomIdsStreamLikeOneDecode) {
  // Random ids make plenty of broken byte sequences; the stream must still equal one decode().
  std::mt19937 rng(5);
  for (const Tokenizer& t : {Tokenizer::load(model_dir()), from(sp_tokenizer_json())}) {
    for (int iter = 0; iter < 300; ++iter) {
      std::vector<int32_t> ids(rng() % 40);
      for (auto& id : ids) id = int32_t(rng() % uint32_t(t.vocab_size()));
      ASSERT_EQ(stream(t, ids), t.decode(ids)) << "iteration " << iter;
    }
  }
}
