#pragma once
// GEMM kernel tables (docs/KERNELS.md §2.4): which configuration of each nested GEMM family runs a
// weight shape (N, K) at a token count M, as measured by `nestedfp tune` on one GPU. Host code
// only (no CUDA): the cuda backend and `bench kernels` resolve a table against their family's
// variant names; the cpu tests cover parsing, lookups and fallbacks.
//
// File (JSON): {"format": "nestedfp-kernel-table/1", "gpu", "cuda", "commit", "date",
// "command"?, "entries": [{"family": "nfp16"|"nfp8", "N", "K", "M", "variant", ...}]}. Entries
// name variants, not table indices, so a table survives re-ordering of the variant tables;
// other fields of an entry (times, the heuristic's choice) are kept for people, not used.
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace nestedfp::backend {

enum class GemmFamily { Nfp16, Nfp8 };
const char* to_string(GemmFamily f);  // "nfp16" | "nfp8"

struct KernelTable {
  struct Entry {
    GemmFamily family = GemmFamily::Nfp16;
    int N = 0, K = 0, M = 0;  // M: the bucket, the token count it was tuned at
    std::string variant;
    // Informational (written by tune, optional on read): median times in microseconds and the
    // heuristic's choice at the same point; 0 / "" when absent.
    double us = 0, heuristic_us = 0;
    std::string heuristic;
  };

  std::string source;  // the file it was read from ("" when built in memory); used in messages
  std::string gpu, cuda, commit, date, command;
  std::map<std::tuple<GemmFamily, int, int>, std::vector<Entry>> shapes;  // buckets ascending by M

  // Both throw nestedfp::Error naming `source` / `path` and the field at fault.
  static KernelTable parse(const std::string& json_text, const std::string& source);
  static KernelTable load(const std::string& path);

  void add(const Entry& e);  // throws on a second entry for the same (family, N, K, M)
  // Takes `newer`'s shapes (all buckets of a shape it has replace this table's, so a shape's
  // buckets always come from one run) and header; commands are kept, joined by "; ". Throws when
  // the GPUs differ: one table describes one GPU.
  void merge(const KernelTable& newer);
  std::string dump() const;  // the JSON file text
  size_t size() const;       // entries

  // The buckets of (family, N, K), ascending by M; nullptr when the shape was not tuned.
  const std::vector<Entry>* buckets(GemmFamily f, int N, int K) const;
  // The entry of the smallest tuned M >= m (the largest beyond the last, unless it names a
  // streaming mma kernel); nullptr when untuned or not covered.
  const Entry* lookup(GemmFamily f, int N, int K, int m) const;
};

// One weight shape's choices, resolved once (at load time) to variant indices: `variant(M)` is a
// scan of a few buckets, no hashing, on the hot path. -1 = the family's heuristic.
struct ShapeDispatch {
  std::vector<std::pair<int, int>> buckets;  // (tuned M, variant index or -1), ascending by M
  int variant(int m) const;
};

// A family's variant table as the dispatcher knows it: names by index and which are built.
struct VariantSet {
  std::vector<std::string> names;
  std::vector<bool> built;
};

// Resolves tables for one backend, logging each fallback once per process (untuned shape, a name
// this build does not have or did not build), not per call. A null table: heuristics throughout.
class KernelDispatch {
 public:
  KernelDispatch(std::shared_ptr<const KernelTable> table, VariantSet nfp16, VariantSet nfp8);
  ShapeDispatch resolve(GemmFamily f, int N, int K) const;
  const KernelTable* table() const { return table_.get(); }
  // What resolve() fell back on so far (for tests and summaries), each once.
  std::vector<std::string> notes() const;

 private:
  void note(const std::string& msg, bool warn = true) const;
  std::shared_ptr<const KernelTable> table_;
  VariantSet sets_[2];
  mutable std::mutex mutex_;
  mutable std::vector<std::string> notes_;
};

// "NVIDIA H200" -> "h200" (the vendor prefix dropped, lower case, runs of other characters one
// '-'): the file name of a GPU's table and of `bench kernels` results.
std::string gpu_slug(const std::string& gpu_name);

// Where `--kernel-table auto` looks, in order: $NESTEDFP_KERNEL_TABLE_DIR, then
// bench/kernel-tables and share/nestedfp/kernel-tables in the executable's directory and each of
// its parents (build/<preset>/nestedfp in a checkout, <prefix>/bin/nestedfp when installed).
std::vector<std::string> kernel_table_dirs();

// `--kernel-table` = FILE | auto | none for the GPU named `gpu_name`: the file to load, or "" for
// none (auto without a table for this GPU). `looked` (optional) gets where auto looked.
std::string find_kernel_table(const std::string& spec, const std::string& gpu_name,
                              std::string* looked = nullptr);

// find_kernel_table + load, with one info line saying what was picked (or that none was); null
// for none. Tables are cached per path, so tensor-parallel ranks share one and log it once.
std::shared_ptr<const KernelTable> open_kernel_table(const std::string& spec,
                                                     const std::string& gpu_name);

}  // namespace nestedfp::backend
