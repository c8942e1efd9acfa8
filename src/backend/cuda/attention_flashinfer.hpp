#pragma once
// Paged causal attention on FlashInfer's FA2 batch-prefill kernel (flashinfer-python 0.7.2.post1,
// header-only, pinned exactly: upstream does not promise a stable C++ API). One kernel serves
// chunked prefill and decode (one query per sequence), any GQA ratio, head_dim 64 and 128.
//
// Use: construct once per model (allocates all workspaces); plan() once per step on the host,
// shared by every layer; run() per layer. run() neither allocates nor synchronizes, so it can be
// captured into a CUDA graph. The layout contract (PagedKv, AttnBatch) is in ops.hpp.
//
// This header includes no FlashInfer code: only attention_flashinfer.cu compiles it (with its own
// CCCL on the include path), so the rest of the build is unaffected by FlashInfer's requirements.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cuda/ops.hpp"

namespace nestedfp::cuda {

class FlashInferAttention {
 public:
  // Head dims this build instantiates; others throw in the constructor (use attention_reference).
  static bool supports(int nq, int nkv, int head_dim);

  // max_tokens, max_seqs: the largest step (query rows, sequences) plan() will be given.
  // max_graph_seqs: the largest decode batch planned with for_cuda_graph (0: no graph plans).
  // Throws nestedfp::Error for unsupported shapes, or when a workspace cannot be allocated.
  FlashInferAttention(int nq, int nkv, int head_dim, int max_tokens, int max_seqs,
                      int max_graph_seqs = 0);
  ~FlashInferAttention();
  FlashInferAttention(const FlashInferAttention&) = delete;
  FlashInferAttention& operator=(const FlashInferAttention&) = delete;

  // Schedules one step from host copies of AttnBatch's CSR arrays (q_indptr, kv_indptr: num_seqs+1
  // entries; kv_last_page_len: num_seqs) and uploads the schedule into the device workspace on
  // `stream`, which must be the stream run() uses. Validates the arrays (a clear error names the
  // bad sequence). Waits only for the previous plan's upload, never for the kernels.
  //
  // for_cuda_graph: decode batches only (every q_len == 1, num_seqs <= max_graph_seqs). The launch
  // shape then depends on num_seqs alone: a run() captured after such a plan replays correctly
  // after any later graph plan with the same num_seqs (same batch buffers, caches and outputs).
  // Not capturable itself (host work and a host-to-device copy).
  void plan(const int32_t* q_indptr, const int32_t* kv_indptr, const int32_t* kv_last_page_len,
            int num_seqs, cudaStream_t stream, bool for_cuda_graph = false);

  // out[total_q, nq, head_dim] = causal softmax(q·Kᵀ·softmax_scale)·V for the planned batch;
  // q[total_q, nq, head_dim]. `batch` must describe the arrays plan() was given (same num_seqs
  // and total_q are checked). Scores and softmax in fp32; FA2 rounds the softmax weights to fp16
  // for the P·V tensor-core product (fp32 accumulation) and the output to fp16.
  void run(const PagedKv& cache, const __half* q, const AttnBatch& batch, float softmax_scale,
           __half* out, cudaStream_t stream) const;

  // FlashInfer's plan of the last plan() as integers; equal vectors mean an identical launch.
  std::vector<int64_t> launch_shape() const;
  size_t float_workspace_bytes() const { return float_bytes_; }
  size_t int_workspace_bytes() const { return int_bytes_; }

 private:
  struct Plan;  // FlashInfer's PrefillPlanInfo, kept out of this header
  int nq_, nkv_, head_dim_, max_tokens_, max_seqs_, max_graph_seqs_;
  size_t float_bytes_ = 0, int_bytes_ = 0;
  void* float_ws_ = nullptr;        // device: partial outputs and log-sum-exps of split-KV chunks
  void* int_ws_ = nullptr;          // device: the schedule (tile -> sequence, KV chunk, merge)
  void* int_ws_host_ = nullptr;     // pinned staging copy of int_ws_ written by plan()
  cudaEvent_t uploaded_ = nullptr;  // the last plan's staging copy has left int_ws_host_
  std::unique_ptr<Plan> plan_;
  bool planned_ = false;
  int planned_seqs_ = 0, planned_rows_ = 0;
};

}  // namespace nestedfp::cuda
