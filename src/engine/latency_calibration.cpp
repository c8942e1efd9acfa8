// Start-up calibration of the latency model (docs/DESIGN.md §3.12): a few synthetic steps through
// the executor before the engine takes requests.
#include <algorithm>
#include <chrono>

#include "nestedfp/latency_model.hpp"

namespace nestedfp {

std::vector<StepTiming> calibrate_steps(ModelExecutor& exec, int budget, int max_seqs,
                                        int num_blocks, int max_len) {
  // Each synthetic sequence starts at position 0 (no cached KV is read) and owns its own blocks.
  auto make = [&](int seqs, int tokens_each) {
    StepInput in;
    int32_t next_block = 0;
    for (int i = 0; i < seqs; ++i) {
      SeqChunk c;
      c.seq_id = -1 - i;  // never a request id
      c.tokens.assign(static_cast<size_t>(tokens_each), 1 + i % 7);
      const int blocks = (tokens_each + kKvBlockSize - 1) / kKvBlockSize;
      for (int b = 0; b < blocks; ++b) c.block_table.push_back(next_block++);
      c.sample = true;  // greedy, like a decode step (CUDA graphs replay those)
      c.sampling.temperature = 0.f;
      c.need_logits = false;
      in.seqs.push_back(std::move(c));
    }
    return in;
  };
  const int chunk = std::max(1, std::min({256, max_len, budget}));
  const int decode_seqs = std::max(1, std::min({max_seqs, num_blocks, 128, budget}));
  struct Point {
    int seqs, each;
  };
  std::vector<Point> points = {{1, 1}, {decode_seqs, 1}};
  for (int total : {std::max(chunk, budget / 2), budget}) {
    int seqs = std::max(1, total / chunk);
    if (seqs * ((chunk + kKvBlockSize - 1) / kKvBlockSize) <= num_blocks && seqs <= max_seqs)
      points.push_back({seqs, chunk});
  }
  std::vector<StepTiming> out;
  for (Precision p : {Precision::FP16, Precision::FP8})
    for (const Point& pt : points) {
      StepInput in = make(pt.seqs, pt.each);
      in.precision = p;
      double best = 1e30;
      for (int rep = 0; rep < 3; ++rep) {  // rep 0 warms up (graph capture, workspaces)
        auto t0 = std::chrono::steady_clock::now();
        exec.execute(in);
        double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (rep > 0) best = std::min(best, dt);
      }
      out.push_back({p, pt.seqs * pt.each, pt.seqs, best});
    }
  return out;
}

}  // namespace nestedfp
