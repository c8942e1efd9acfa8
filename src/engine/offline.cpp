#include "engine/offline.hpp"

#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "nestedfp/error.hpp"
#include "nestedfp/sampler.hpp"

namespace nestedfp::engine {

std::vector<float> SingleSequence::feed(std::span<const int32_t> tokens, Precision p,
                                        bool all_logits, int chunk) {
  const int32_t end = len_ + int32_t(tokens.size());
  if (end > ex_.max_model_len())
    fail("sequence of {} tokens exceeds max_model_len {}", end, ex_.max_model_len());
  const int32_t blocks = (end + kKvBlockSize - 1) / kKvBlockSize;
  if (blocks > ex_.num_kv_blocks())
    fail("sequence of {} tokens needs {} KV blocks, the cache has {}", end, blocks,
         ex_.num_kv_blocks());
  std::vector<float> out;
  if (tokens.empty()) return out;
  // Steps never carry more tokens than the executor's scratch holds.
  const size_t cap = size_t(std::max(1, ex_.max_step_tokens()));
  const size_t step = std::min(chunk > 0 ? size_t(chunk) : tokens.size(), cap);
  for (size_t i = 0; i < tokens.size(); i += step) {
    const size_t n = std::min(step, tokens.size() - i);
    StepInput in;
    in.precision = p;
    SeqChunk& s = in.seqs.emplace_back();
    s.seq_id = id_;
    s.tokens.assign(tokens.begin() + i, tokens.begin() + i + n);
    s.start_pos = len_;
    const int32_t nb = (len_ + int32_t(n) + kKvBlockSize - 1) / kKvBlockSize;
    for (int32_t b = 0; b < nb; ++b) s.block_table.push_back(b);
    s.need_all_logits = all_logits;
    s.need_logits = all_logits || i + n == tokens.size();
    StepOutput o = ex_.execute(in);
    len_ += int32_t(n);
    if (all_logits)
      out.insert(out.end(), o.logits[0].begin(), o.logits[0].end());
    else if (s.need_logits)
      out = std::move(o.logits[0]);
  }
  return out;
}

double chunk_mean_nll(ModelExecutor& ex, std::span<const int32_t> ids, Precision p) {
  if (ids.size() < 2) fail("a perplexity chunk needs at least 2 tokens");
  SingleSequence seq(ex);
  const std::vector<float> logits = seq.feed(ids, p, true);
  const size_t V = size_t(ex.vocab_size());
  double nll = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i)
    nll -= token_logprob(std::span<const float>(logits.data() + i * V, V), ids[i + 1]);
  return nll / double(ids.size() - 1);
}

PerplexityResult perplexity(ModelExecutor& ex, std::span<const int32_t> ids, Precision p,
                            int max_chunks, int chunk_len,
                            const std::function<void(int, int)>& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  int n = int(ids.size() / size_t(chunk_len));
  if (max_chunks > 0) n = std::min(n, max_chunks);
  if (n == 0) fail("the text has {} tokens, fewer than one chunk of {}", ids.size(), chunk_len);
  PerplexityResult r;
  double total = 0;
  for (int i = 0; i < n; ++i) {
    const double m = chunk_mean_nll(ex, ids.subspan(size_t(i) * chunk_len, size_t(chunk_len)), p);
    r.chunk_nll.push_back(m);
    total += m * (chunk_len - 1);
    if (progress) progress(i + 1, n);
  }
  r.chunks = n;
  r.tokens = int64_t(n) * (chunk_len - 1);
  r.mean_nll = total / double(r.tokens);
  r.ppl = std::exp(r.mean_nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::string read_text_file(const std::string& path) {
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  if (!gz) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("{}: cannot open ({})", path, std::strerror(errno));
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open ({})", path, std::strerror(errno));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      const std::string msg = gzerror(f, &err);
      gzclose(f);
      fail("{}: not a valid gzip file ({})", path, msg);
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  gzclose(f);
  return out;
}

}  // namespace nestedfp::engine
