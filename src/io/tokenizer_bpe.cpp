// The BPE model: ranked merges over byte-level symbols (GPT-2 style) or over UTF-8 characters with
// byte fallback / unk (SentencePiece style), with a bounded per-word cache.
#include <fmt/format.h>

#include <climits>
#include <queue>

#include "io/tokenizer_internal.hpp"
#include "nestedfp/error.hpp"

namespace nestedfp::tok {

BpeModel::BpeModel(const json& m, bool byte_level, const std::string& file)
    : byte_level_(byte_level) {
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m[k].is_null() && !m[k].get<std::string>().empty())
      fail("{}: BPE option '{}' is not supported", file, k);
  byte_fallback_ = m.value("byte_fallback", false);
  fuse_unk_ = m.value("fuse_unk", false);
  ignore_merges_ = m.value("ignore_merges", false);

  const json& vocab = m.at("vocab");
  if (!vocab.is_object()) fail("{}: model.vocab must be an object of piece -> id", file);
  vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = it.value().get<int64_t>();
    if (id < 0 || id > INT32_MAX)
      fail("{}: model.vocab id {} of '{}' is out of range", file, id, it.key());
    vocab_.emplace(it.key(), int32_t(id));
    max_id_ = std::max(max_id_, int32_t(id));
    if (byte_level_)
      if (auto raw = byte_level_to_bytes(it.key()))
        raw_vocab_.emplace(std::move(*raw), int32_t(id));
  }
  auto find = [&](std::string_view p) -> int32_t {
    auto it = vocab_.find(p);
    return it == vocab_.end() ? -1 : it->second;
  };
  for (int b = 0; b < 256; ++b)
    byte_ids_[b] = byte_level_ ? find(byte_to_unicode()[b])
                               : (byte_fallback_ ? find(fmt::format("<0x{:02X}>", b)) : -1);

  if (m.contains("unk_token") && !m["unk_token"].is_null()) {
    const auto unk = m["unk_token"].get<std::string>();
    const int32_t id = find(unk);
    if (id < 0) fail("{}: model.unk_token '{}' is not in the vocab", file, unk);
    unk_id_ = id;
  }

  const json& merges = m.value("merges", json::array());
  merges_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& e = merges[r];
    std::string a, b;
    if (e.is_string()) {
      const auto s = e.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) fail("{}: merge #{} '{}' is not 'left right'", file, r, s);
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      fail("{}: merge #{} must be a 'left right' string or a [left, right] pair", file, r);
    }
    const int32_t ia = find(a), ib = find(b), ic = find(a + b);
    if (ia < 0 || ib < 0 || ic < 0)
      fail("{}: merge #{} ('{}' + '{}') uses a piece that is not in the vocab", file, r, a, b);
    merges_.emplace(pair_key(ia, ib),
                    Merge{int32_t(r), ic});  // first (best) rank wins on duplicates
  }
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& syms) const {
  bool last_unk = false;
  auto push_unk = [&] {
    if (!unk_id_) return;  // no unk token: the unit is dropped, as Hugging Face does
    if (!(fuse_unk_ && last_unk)) syms.push_back(*unk_id_);
    last_unk = true;
  };
  if (byte_level_) {
    for (unsigned char c : word) {
      if (byte_ids_[c] >= 0) {
        syms.push_back(byte_ids_[c]);
        last_unk = false;
      } else {
        push_unk();
      }
    }
    return;
  }
  for (size_t i = 0; i < word.size();) {
    const size_t n = utf8_unit_len(word, i);
    const std::string_view unit = word.substr(i, n);
    i += n;
    if (auto it = vocab_.find(unit); it != vocab_.end()) {
      syms.push_back(it->second);
      last_unk = false;
      continue;
    }
    bool all_bytes = byte_fallback_;
    for (unsigned char c : unit) all_bytes = all_bytes && byte_ids_[c] >= 0;
    if (all_bytes) {
      for (unsigned char c : unit) syms.push_back(byte_ids_[c]);
      last_unk = false;
    } else {
      push_unk();
    }
  }
}

void BpeModel::merge(std::vector<int32_t>& syms) const {
  const size_t n = syms.size();
  if (n < 2 || merges_.empty()) return;
  auto lookup = [&](int32_t a, int32_t b) -> const Merge* {
    auto it = merges_.find(pair_key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  if (n <= 24) {  // short words: rescanning is cheaper than a heap
    for (;;) {
      const Merge* best = nullptr;
      size_t at = 0;
      for (size_t i = 0; i + 1 < syms.size(); ++i)
        if (const Merge* m = lookup(syms[i], syms[i + 1]); m && (!best || m->rank < best->rank)) {
          best = m;
          at = i;
        }
      if (!best) return;
      syms[at] = best->id;
      syms.erase(syms.begin() + at + 1);
    }
  }
  // Long words: lowest rank first, leftmost on ties (the order Hugging Face's queue gives).
  struct Cand {
    int32_t rank, pos, left, right, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  std::vector<int32_t> prev(n), next(n);
  std::vector<char> alive(n, 1);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = int32_t(i) - 1;
    next[i] = i + 1 < n ? int32_t(i + 1) : -1;
  }
  auto consider = [&](int32_t p) {
    const int32_t q = next[p];
    if (q < 0) return;
    if (const Merge* m = lookup(syms[p], syms[q])) heap.push({m->rank, p, syms[p], syms[q], m->id});
  };
  for (size_t i = 0; i + 1 < n; ++i) consider(int32_t(i));
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const int32_t q = next[c.pos];
    if (!alive[c.pos] || syms[c.pos] != c.left || q < 0 || syms[q] != c.right) continue;  // stale
    syms[c.pos] = c.id;
    alive[q] = 0;
    next[c.pos] = next[q];
    if (next[q] >= 0) prev[next[q]] = c.pos;
    if (prev[c.pos] >= 0) consider(prev[c.pos]);
    consider(c.pos);
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0; i = next[i]) syms[w++] = syms[i];
  syms.resize(w);
}

std::optional<int32_t> BpeModel::whole_word(std::string_view word) const {
  const PieceMap& m = byte_level_ ? raw_vocab_ : vocab_;
  auto it = m.find(word);
  if (it == m.end()) return std::nullopt;
  return it->second;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_)
    if (auto id = whole_word(word)) return out.push_back(*id);
  const bool cacheable = word.size() <= kCacheMaxWord;
  if (cacheable) {
    std::lock_guard lock(cache_mu_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> syms;
  syms.reserve(word.size());
  initial_symbols(word, syms);
  merge(syms);
  out.insert(out.end(), syms.begin(), syms.end());
  if (cacheable) {
    std::lock_guard lock(cache_mu_);
    if (cache_.size() >= kCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::move(syms));
  }
}

}  // namespace nestedfp::tok
