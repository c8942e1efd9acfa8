#pragma once
// Tokenizer read from a Hugging Face tokenizer.json: BPE models, byte-level (GPT-2 / Llama-3 /
// Qwen) or SentencePiece-style (Llama-2 / Mistral: Metaspace or Prepend+Replace, byte fallback).
//
// Pipeline, as Hugging Face runs it: added/special tokens are matched in the raw text first; each
// stretch between them is normalized, pre-tokenized and BPE-encoded; add_special_tokens applies the
// post-processor (e.g. a TemplateProcessing that prepends BOS).
//
// Invalid UTF-8 input never throws. Byte-level models encode every byte exactly (stray bytes go
// through the byte-to-unicode table like any other), so decode_bytes(encode(x)) == x for any bytes.
// SentencePiece-style models encode a stray byte as its <0xNN> byte-fallback token when the vocab
// has one, else as the unk token, else drop it.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nestedfp {

class Tokenizer {
 public:
  // A model directory (reads tokenizer.json and, when present, tokenizer_config.json,
  // generation_config.json, config.json, chat_template.jinja) or a tokenizer.json path (the side
  // files are then looked for next to it). Throws Error naming the file and the problem.
  static Tokenizer load(const std::string& model_dir_or_tokenizer_json);
  // From tokenizer.json text alone (tests, tools); `source` names it in error messages.
  static Tokenizer from_json(std::string_view tokenizer_json,
                             const std::string& source = "tokenizer.json");
  // A stand-in for models without a tokenizer.json (random `--load-format dummy` weights of a
  // bare config): ids 0..255 are the 256 bytes, every other id decodes to " t<id>", text encodes
  // byte by byte, and there is no EOS. Benchmarks send token ids, so only the text is fake.
  static Tokenizer placeholder(int32_t vocab_size);

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;

  // UTF-8 text; byte sequences that are not valid UTF-8 come out as U+FFFD. Throws Error for ids
  // outside the vocabulary.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = true) const;
  // The exact bytes the tokens stand for (may end inside a character, may be invalid UTF-8).
  std::string decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens = true) const;

  int32_t vocab_size() const;  // 1 + the largest id of the model vocab and the added tokens
  int32_t bos_id() const;      // -1 when the model files name none
  // From generation_config.json (int or list), tokenizer_config.json eos_token, config.json;
  // deduplicated.
  std::vector<int32_t> eos_ids() const;
  bool is_special(int32_t id) const;  // an added token marked special (skipped by decode)
  std::optional<int32_t> token_id(
      std::string_view piece) const;          // piece as written in tokenizer.json
  std::string id_to_piece(int32_t id) const;  // throws Error when out of range
  // chat_template.jinja, else tokenizer_config.json's chat_template (the "default" one of a list);
  // empty when neither exists.
  const std::string& chat_template() const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl>
      impl_;  // immutable after load (the BPE cache locks itself): copies are cheap
};

// Streaming detokenizer: feed ids as they are generated, get back only text that is complete UTF-8.
// Decodes a small window with one already-emitted token as context, so decoders that depend on
// position (SentencePiece's leading-space strip) and characters split across byte tokens come out
// right.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(Tokenizer tokenizer, bool skip_special_tokens = true);
  std::string push(int32_t id);  // newly completed text (often empty); throws Error for a bad id
  std::string finish();          // whatever is held back; incomplete characters become U+FFFD
  void reset();

 private:
  Tokenizer tok_;
  bool skip_special_;
  std::vector<int32_t> ids_;  // the window: ids_[0, read_) were emitted already
  size_t read_ = 0;
  size_t emitted_ = 0;  // bytes of decode_bytes(ids_) already returned (or context)
};

}  // namespace nestedfp
