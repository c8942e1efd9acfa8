// Tokenizer: loading tokenizer.json and the model's side files, added-token matching, the
// encode/decode pipeline, and the post-processor (BOS/EOS templates).
#include "nestedfp/tokenizer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "io/tokenizer_internal.hpp"
#include "nestedfp/error.hpp"

namespace fs = std::filesystem;

namespace nestedfp {
namespace tok {

std::string json_type(const json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) return "";
  return j["type"].get<std::string>();
}

void unsupported(std::string_view component, const json& j, const std::string& file) {
  static const std::map<std::string_view, std::string_view> supported = {
      {"normalizer", "Sequence, Prepend, Replace, Strip, NFC"},
      {"pre_tokenizer",
       "ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit, Sequence"},
      {"decoder", "ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence"},
      {"post_processor",
       "TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence"},
      {"model", "BPE"}};
  const std::string type = json_type(j);
  const auto it = supported.find(component);
  fail("{}: {} type '{}' is not supported (supported: {})", file, component,
       type.empty() ? "<missing>" : type, it == supported.end() ? "" : it->second);
}

}  // namespace tok

using tok::json;

struct AddedToken {
  std::string content;
  int32_t id;
  bool special, lstrip, rstrip, single_word;
};

struct Tokenizer::Impl {
  std::string source;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre;
  std::unique_ptr<tok::BpeModel> model;
  std::unique_ptr<tok::Decoder> decoder;
  std::vector<int32_t> post_prefix, post_suffix;  // what add_special_tokens wraps around the ids

  std::vector<AddedToken> added;
  std::array<std::vector<size_t>, 256> added_by_byte;  // indices into `added`, longest first
  tok::PieceMap added_ids;

  int32_t vocab_size = 0;
  std::vector<std::string> pieces;  // by id, as written in tokenizer.json
  std::vector<char> has_piece, special;

  int32_t bos = -1;
  std::vector<int32_t> eos;
  std::string chat_template;

  void encode_segment(std::string_view seg, bool at_start, std::vector<int32_t>& out) const;
  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size || !has_piece[id])
      fail("token id {} is not in the vocabulary of {} (size {})", id, source, vocab_size);
  }
};

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("{}: cannot open for reading", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json(std::string_view text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", source, e.what());
  }
}

bool is_word_byte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || u >= 0x80;
}
bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Post-processors reduce to ids before and after the sequence when add_special_tokens is set.
void parse_post(const json& j, const std::string& file, std::vector<int32_t>& pre,
                std::vector<int32_t>& suf) {
  if (j.is_null()) return;
  const std::string type = tok::json_type(j);
  if (type == "ByteLevel") return;  // only adjusts offsets
  if (type == "Sequence") {
    for (const json& p : j.at("processors")) {
      std::vector<int32_t> a, b;
      parse_post(p, file, a, b);
      pre.insert(pre.begin(), a.begin(), a.end());  // a later processor wraps the earlier result
      suf.insert(suf.end(), b.begin(), b.end());
    }
    return;
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    pre.push_back(j.at("cls").at(1).get<int32_t>());
    suf.push_back(j.at("sep").at(1).get<int32_t>());
    return;
  }
  if (type == "TemplateProcessing") {
    const json& specials = j.value("special_tokens", json::object());
    bool seen_a = false;
    for (const json& item : j.at("single")) {
      if (item.contains("Sequence")) {
        seen_a = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      if (!specials.contains(name))
        fail("{}: post_processor TemplateProcessing uses '{}' that is not in its special_tokens",
             file, name);
      for (const json& id : specials.at(name).at("ids"))
        (seen_a ? suf : pre).push_back(id.get<int32_t>());
    }
    return;
  }
  tok::unsupported("post_processor", j, file);
}

// "<s>", {"content": "<s>", ...} or null, as tokenizer_config.json writes special tokens.
std::optional<std::string> config_token(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

// An int or a list of ints (generation_config.json's eos_token_id may be either).
std::vector<int32_t> config_ids(const json& cfg, const char* key) {
  std::vector<int32_t> out;
  if (!cfg.contains(key)) return out;
  const json& v = cfg[key];
  if (v.is_number_integer()) out.push_back(v.get<int32_t>());
  if (v.is_array())
    for (const json& x : v)
      if (x.is_number_integer()) out.push_back(x.get<int32_t>());
  return out;
}

std::shared_ptr<Tokenizer::Impl> build(std::string_view text, const std::string& source) {
  auto impl = std::make_shared<Tokenizer::Impl>();
  impl->source = source;
  const json j = parse_json(text, source);
  try {
    if (!j.is_object()) fail("{}: expected a JSON object (a Hugging Face tokenizer.json)", source);
    if (!j.contains("model"))
      fail("{}: no 'model' section; not a Hugging Face tokenizer.json", source);
    const json& model = j["model"];
    std::string mtype = tok::json_type(model);
    if (mtype.empty() && model.contains("merges")) mtype = "BPE";  // some writers omit the type
    if (mtype != "BPE") tok::unsupported("model", model, source);

    impl->normalizer = tok::make_normalizer(j.value("normalizer", json()), source);
    impl->pre = tok::make_pre_tokenizer(j.value("pre_tokenizer", json()), source);
    impl->decoder = tok::make_decoder(j.value("decoder", json()), source);
    parse_post(j.value("post_processor", json()), source, impl->post_prefix, impl->post_suffix);
    impl->model =
        std::make_unique<tok::BpeModel>(model, impl->pre && impl->pre->byte_level(), source);

    int32_t max_id = impl->model->max_id();
    for (const json& a : j.value("added_tokens", json::array())) {
      AddedToken t{a.at("content").get<std::string>(), a.at("id").get<int32_t>(),
                   a.value("special", false),          a.value("lstrip", false),
                   a.value("rstrip", false),           a.value("single_word", false)};
      if (t.id < 0) fail("{}: added token '{}' has a negative id", source, t.content);
      max_id = std::max(max_id, t.id);
      impl->added.push_back(std::move(t));
    }
    impl->vocab_size = max_id + 1;
    impl->pieces.assign(size_t(impl->vocab_size), std::string());
    impl->has_piece.assign(size_t(impl->vocab_size), 0);
    impl->special.assign(size_t(impl->vocab_size), 0);
    for (const auto& [piece, id] : impl->model->vocab()) {
      impl->pieces[id] = piece;
      impl->has_piece[id] = 1;
    }
    for (size_t i = 0; i < impl->added.size(); ++i) {
      const AddedToken& t = impl->added[i];
      impl->pieces[t.id] = t.content;
      impl->has_piece[t.id] = 1;
      impl->special[t.id] = t.special;
      impl->added_ids[t.content] = t.id;
      if (!t.content.empty())
        impl->added_by_byte[static_cast<unsigned char>(t.content[0])].push_back(i);
    }
    for (auto& v : impl->added_by_byte)
      std::stable_sort(v.begin(), v.end(), [&](size_t a, size_t b) {
        return impl->added[a].content.size() > impl->added[b].content.size();
      });
    for (int32_t id : impl->post_prefix) impl->check_id(id);
    for (int32_t id : impl->post_suffix) impl->check_id(id);
  } catch (const json::exception& e) {
    fail("{}: unexpected tokenizer.json layout: {}", source, e.what());
  }
  return impl;
}

}  // namespace

void Tokenizer::Impl::encode_segment(std::string_view seg, bool at_start,
                                     std::vector<int32_t>& out) const {
  if (seg.empty()) return;
  std::string normalized;
  if (normalizer) {
    normalized.assign(seg);
    normalizer->normalize(normalized);
    seg = normalized;
  }
  if (!pre) return model->encode_word(seg, out);
  pre->split(seg, at_start, [&](std::string_view piece, bool) { model->encode_word(piece, out); });
}

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, const std::string& source) {
  return Tokenizer(build(tokenizer_json, source));
}

Tokenizer Tokenizer::placeholder(int32_t vocab_size) {
  if (vocab_size < 256 || vocab_size > (1 << 24))
    fail("placeholder tokenizer: vocab size {} outside 256..{}", vocab_size, 1 << 24);
  json vocab = json::object();
  const auto& chars = tok::byte_to_unicode();
  for (int b = 0; b < 256; ++b) vocab[chars[b]] = b;
  for (int32_t id = 256; id < vocab_size; ++id) vocab[chars[' '] + "t" + std::to_string(id)] = id;
  const json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}},
                  {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
                  {"decoder", {{"type", "ByteLevel"}}}};
  return Tokenizer(build(j.dump(), "placeholder tokenizer"));
}

Tokenizer Tokenizer::load(const std::string& path) {
  const fs::path p(path);
  fs::path file, dir;
  if (fs::is_directory(p)) {
    dir = p;
    file = p / "tokenizer.json";
    if (!fs::exists(file))
      fail("{}: missing; the model directory needs a Hugging Face tokenizer.json", file.string());
  } else if (fs::exists(p)) {
    file = p;
    dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  } else {
    fail("{}: no such file or directory (give a model directory or its tokenizer.json)", path);
  }
  auto impl = build(read_file(file), file.string());

  auto side = [&](const char* name) -> json {
    const fs::path f = dir / name;
    if (!fs::exists(f)) return json::object();
    json v = parse_json(read_file(f), f.string());
    return v.is_object() ? v : json::object();
  };
  const json tcfg = side("tokenizer_config.json"), gcfg = side("generation_config.json"),
             mcfg = side("config.json");
  auto lookup = [&](const std::optional<std::string>& piece) -> std::optional<int32_t> {
    if (!piece) return std::nullopt;
    if (auto it = impl->added_ids.find(*piece); it != impl->added_ids.end()) return it->second;
    if (auto it = impl->model->vocab().find(*piece); it != impl->model->vocab().end())
      return it->second;
    return std::nullopt;
  };
  auto valid = [&](int32_t id) { return id >= 0 && id < impl->vocab_size && impl->has_piece[id]; };

  if (auto id = lookup(config_token(tcfg, "bos_token"))) impl->bos = *id;
  for (const json* cfg : {&gcfg, &mcfg})
    if (impl->bos < 0)
      for (int32_t id : config_ids(*cfg, "bos_token_id"))
        if (valid(id)) {
          impl->bos = id;
          break;
        }

  std::vector<int32_t> eos = config_ids(gcfg, "eos_token_id");
  if (auto id = lookup(config_token(tcfg, "eos_token"))) eos.push_back(*id);
  for (int32_t id : config_ids(mcfg, "eos_token_id")) eos.push_back(id);
  for (int32_t id : eos)
    if (valid(id) && std::find(impl->eos.begin(), impl->eos.end(), id) == impl->eos.end())
      impl->eos.push_back(id);

  if (fs::exists(dir / "chat_template.jinja")) {
    impl->chat_template = read_file(dir / "chat_template.jinja");
  } else if (tcfg.contains("chat_template")) {
    const json& ct = tcfg["chat_template"];
    if (ct.is_string()) impl->chat_template = ct.get<std::string>();
    if (ct.is_array())  // named templates: the "default" one, else the first
      for (const json& t : ct)
        if (t.is_object() && t.value("template", json()).is_string() &&
            (impl->chat_template.empty() || t.value("name", std::string()) == "default"))
          impl->chat_template = t["template"].get<std::string>();
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special_tokens) out = m.post_prefix;
  // Added tokens are cut out of the raw text first: leftmost match, longest on ties.
  size_t seg = 0;
  for (size_t pos = 0; pos < text.size();) {
    const auto& cands = m.added_by_byte[static_cast<unsigned char>(text[pos])];
    const AddedToken* hit = nullptr;
    for (size_t i : cands) {
      const AddedToken& t = m.added[i];
      if (text.compare(pos, t.content.size(), t.content) != 0) continue;
      const size_t end = pos + t.content.size();
      if (t.single_word && ((pos > 0 && is_word_byte(text[pos - 1])) ||
                            (end < text.size() && is_word_byte(text[end]))))
        continue;
      hit = &t;
      break;
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t b = pos, e = pos + hit->content.size();
    if (hit->lstrip)
      while (b > seg && is_space(text[b - 1])) --b;
    if (hit->rstrip)
      while (e < text.size() && is_space(text[e])) ++e;
    m.encode_segment(text.substr(seg, b - seg), seg == 0, out);
    out.push_back(hit->id);
    seg = pos = e;
  }
  m.encode_segment(text.substr(seg), seg == 0, out);
  if (add_special_tokens) out.insert(out.end(), m.post_suffix.begin(), m.post_suffix.end());
  return out;
}

std::string Tokenizer::decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::vector<std::string> toks;
  toks.reserve(ids.size());
  for (int32_t id : ids) {
    m.check_id(id);
    if (skip_special_tokens && m.special[id]) continue;
    toks.push_back(m.pieces[id]);
  }
  if (m.decoder) m.decoder->decode_chain(toks);
  std::string out;
  for (size_t i = 0; i < toks.size(); ++i) {
    if (!m.decoder && i > 0) out += ' ';  // Hugging Face joins with spaces when there is no decoder
    out += toks[i];
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string raw = decode_bytes(ids, skip_special_tokens);
  return tok::utf8_valid(raw) ? raw : tok::utf8_sanitize(raw);
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
std::vector<int32_t> Tokenizer::eos_ids() const { return impl_->eos; }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size && impl_->special[id];
}

std::optional<int32_t> Tokenizer::token_id(std::string_view piece) const {
  if (auto it = impl_->added_ids.find(piece); it != impl_->added_ids.end()) return it->second;
  const auto& v = impl_->model->vocab();
  if (auto it = v.find(piece); it != v.end()) return it->second;
  return std::nullopt;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  impl_->check_id(id);
  return impl_->pieces[id];
}

}  // namespace nestedfp
