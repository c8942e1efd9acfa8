// FlashInferAttention: host scheduling (FlashInfer's PrefillPlan) and the FA2 paged batch-prefill
// launch. The only translation unit that includes FlashInfer; CMake gives it FlashInfer's own
// CCCL first on the include path and -static-global-template-stub=false (nvcc 13).
#include <algorithm>
#include <exception>
#include <flashinfer/attention/default_prefill_params.cuh>
#include <flashinfer/attention/mask.cuh>
#include <flashinfer/attention/prefill.cuh>
#include <flashinfer/attention/scheduler.cuh>
#include <flashinfer/attention/variants.cuh>

#include "backend/cuda/attention_flashinfer.hpp"
#include "backend/cuda/kernels.hpp"

namespace nestedfp::cuda {
namespace {

namespace fi = flashinfer;
using Params = fi::BatchPrefillPagedParams<half, half, half, int32_t>;
// No custom mask, no sliding window, no logits soft cap, no ALiBi: plain causal softmax.
using Variant = fi::DefaultAttention<false, false, false, false>;

template <uint32_t kHeadDim, uint32_t kCtaTileQ>
cudaError_t launch(const Params& p, half* tmp_v, float* tmp_s, cudaStream_t stream) {
  // SAME_KV_STRIDES: K and V caches share one layout. No RoPE in the kernel (the engine applies
  // it before write_kv), fp32 Q·K accumulation, no PDL.
  return fi::BatchPrefillWithPagedKVCacheDispatched<
      /*SAME_KV_STRIDES=*/true, kCtaTileQ, kHeadDim, kHeadDim, fi::PosEncodingMode::kNone,
      /*USE_FP16_QK_REDUCTION=*/false, fi::MaskMode::kCausal, Variant, Params>(
      p, tmp_v, tmp_s, /*enable_pdl=*/false, stream);
}

template <uint32_t kHeadDim>
cudaError_t launch_tile(int64_t cta_tile_q, const Params& p, half* tmp_v, float* tmp_s,
                        cudaStream_t stream) {
  // The tile heights FlashInfer's planner picks for head_dim < 512 (FA2DetermineCtaTileQ).
  switch (cta_tile_q) {
    case 16: return launch<kHeadDim, 16>(p, tmp_v, tmp_s, stream);
    case 64: return launch<kHeadDim, 64>(p, tmp_v, tmp_s, stream);
    case 128: return launch<kHeadDim, 128>(p, tmp_v, tmp_s, stream);
    default: return cudaErrorInvalidValue;  // run() rejects other tiles before launching
  }
}

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr size_t align16(size_t n) { return (n + 15) / 16 * 16; }

}  // namespace

struct FlashInferAttention::Plan {
  fi::PrefillPlanInfo info;
};

bool FlashInferAttention::supports(int nq, int nkv, int head_dim) {
  return nq > 0 && nkv > 0 && nq % nkv == 0 && (head_dim == 64 || head_dim == 128);
}

FlashInferAttention::FlashInferAttention(int nq, int nkv, int head_dim, int max_tokens,
                                         int max_seqs, int max_graph_seqs)
    : nq_(nq),
      nkv_(nkv),
      head_dim_(head_dim),
      max_tokens_(max_tokens),
      max_seqs_(max_seqs),
      max_graph_seqs_(max_graph_seqs),
      plan_(std::make_unique<Plan>()) {
  if (!supports(nq, nkv, head_dim))
    cuda_fail(
        "FlashInfer attention: ", nq, " query heads, ", nkv, " KV heads, head_dim ", head_dim,
        " is not built (needs nq % nkv == 0 and head_dim 64 or 128): use attention_reference");
  if (max_tokens < 1 || max_seqs < 1 || max_seqs > max_tokens || max_graph_seqs < 0 ||
      max_graph_seqs > max_seqs)
    cuda_fail("FlashInfer attention: bad limits max_tokens ", max_tokens, ", max_seqs ", max_seqs,
              ", max_graph_seqs ", max_graph_seqs,
              " (need 1 <= max_seqs <= max_tokens and 0 <= max_graph_seqs <= max_seqs)");

  // Workspace bounds from PrefillPlanImpl (scheduler.cuh) for page size 16, head_dim < 512:
  // a grid of P work tiles, P <= max(B, total_tiles_q), where B = 2·SMs / nkv is the grid the
  // planner aims for when it splits KV, and total_tiles_q <= T·g/16 + S (tiles are >= 16 packed
  // rows). KV is only split when the split grid fits B, so partial outputs (split-KV only) need
  // at most B·cta_tile_q/g rows, cta_tile_q <= 128. plan() still rejects, with a clear error, a
  // batch whose exact need exceeds these.
  int dev = 0, sms = 0;
  NFP_CUDA_CHECK(cudaGetDevice(&dev));
  NFP_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t g = nq / nkv, T = max_tokens, S = max_seqs;
  const int64_t B = std::max<int64_t>(1, 2 * int64_t(sms) / nkv);
  const int64_t P = std::max(B, ceil_div(T * g, 16) + S);
  int_bytes_ = 3 * align16(4 * P) + align16(4 * (S + 1)) + align16(4) + align16(4) +
               align16(4 * (T + 1)) + align16(P) + 64;
  const int64_t rows = ceil_div(B * 128, g);
  float_bytes_ = align16(size_t(nq) * rows * head_dim * 4) + align16(size_t(nq) * rows * 4) + 64;

  // Graph plans (decode, padded grid, always split): FlashInfer's own size query for the largest.
  if (max_graph_seqs > 0) {
    std::vector<int32_t> indptr(max_graph_seqs + 1);
    for (int i = 0; i <= max_graph_seqs; ++i) indptr[i] = i;  // 1 query row and 1 page each
    size_t fb = 0, ib = 0;
    cudaError_t e = cudaSuccess;
    try {
      e = fi::PrefillPlanWorkspaceSize<int32_t>(
          fb, ib, indptr.data(), indptr.data(), max_graph_seqs, max_graph_seqs, nq, nkv, head_dim,
          head_dim, kPageSize, /*enable_cuda_graph=*/true, /*sizeof_dtype_o=*/2,
          /*window_left=*/-1, /*fixed_split_size=*/-1, /*disable_split_kv=*/false,
          /*num_colocated_ctas=*/0, /*uniform_q_len=*/1, /*stream=*/nullptr);
    } catch (const std::exception& ex) {
      cuda_fail("FlashInfer attention: sizing the CUDA-graph workspace failed: ", ex.what());
    }
    if (e != cudaSuccess)
      cuda_fail("FlashInfer attention: sizing the CUDA-graph workspace failed: ",
                cudaGetErrorString(e));
    float_bytes_ = std::max(float_bytes_, fb + 64);
    int_bytes_ = std::max(int_bytes_, ib + 64);
  }

  try {
    NFP_CUDA_CHECK(cudaMalloc(&float_ws_, float_bytes_));
    NFP_CUDA_CHECK(cudaMalloc(&int_ws_, int_bytes_));
    NFP_CUDA_CHECK(cudaMallocHost(&int_ws_host_, int_bytes_));
    NFP_CUDA_CHECK(cudaEventCreateWithFlags(&uploaded_, cudaEventDisableTiming));
  } catch (...) {
    cudaFree(float_ws_);
    cudaFree(int_ws_);
    cudaFreeHost(int_ws_host_);
    throw;
  }
}

FlashInferAttention::~FlashInferAttention() {
  // The last plan's upload reads the pinned buffer: let it finish before freeing.
  if (uploaded_) {
    cudaEventSynchronize(uploaded_);
    cudaEventDestroy(uploaded_);
  }
  cudaFree(float_ws_);
  cudaFree(int_ws_);
  cudaFreeHost(int_ws_host_);
}

void FlashInferAttention::plan(const int32_t* q_indptr, const int32_t* kv_indptr,
                               const int32_t* kv_last_page_len, int num_seqs, cudaStream_t stream,
                               bool for_cuda_graph) {
  planned_ = false;
  if (num_seqs < 1 || num_seqs > max_seqs_)
    cuda_fail("FlashInfer attention plan: ", num_seqs, " sequences, expected 1..", max_seqs_,
              " (the max_seqs the object was built for)");
  if (!q_indptr || !kv_indptr || !kv_last_page_len)
    cuda_fail("FlashInfer attention plan: null host array");
  if (q_indptr[0] != 0 || kv_indptr[0] != 0)
    cuda_fail("FlashInfer attention plan: q_indptr[0] = ", q_indptr[0],
              " and kv_indptr[0] = ", kv_indptr[0], ", both must be 0");
  for (int s = 0; s < num_seqs; ++s) {
    const int64_t q_len = int64_t(q_indptr[s + 1]) - q_indptr[s];
    const int64_t pages = int64_t(kv_indptr[s + 1]) - kv_indptr[s];
    const int last = kv_last_page_len[s];
    if (q_len < 1 || pages < 1 || last < 1 || last > kPageSize)
      cuda_fail("FlashInfer attention plan: sequence ", s, " has ", q_len, " query rows, ", pages,
                " pages, last page length ", last, " (need >= 1, >= 1 and 1..", kPageSize, ")");
    const int64_t kv_len = (pages - 1) * kPageSize + last;
    if (q_len > kv_len)
      cuda_fail("FlashInfer attention plan: sequence ", s, " has ", q_len, " query rows but only ",
                kv_len, " keys; this step's keys must be written to the cache and counted");
    if (for_cuda_graph && q_len != 1)
      cuda_fail("FlashInfer attention plan: CUDA-graph plans are for decode batches, but sequence ",
                s, " has ", q_len, " query rows");
  }
  const int total = q_indptr[num_seqs];
  if (total > max_tokens_)
    cuda_fail("FlashInfer attention plan: ", total, " query rows exceed max_tokens ", max_tokens_);
  if (for_cuda_graph && num_seqs > max_graph_seqs_)
    cuda_fail("FlashInfer attention plan: CUDA-graph plan of ", num_seqs,
              " sequences exceeds max_graph_seqs ", max_graph_seqs_,
              " (construct with a larger max_graph_seqs)");

  // The previous plan's upload may still be reading the staging buffer.
  NFP_CUDA_CHECK(cudaEventSynchronize(uploaded_));
  fi::PrefillPlanInfo info;
  cudaError_t e = cudaSuccess;
  try {
    e = fi::PrefillPlan<int32_t>(float_ws_, float_bytes_, int_ws_, int_ws_host_, int_bytes_, info,
                                 const_cast<int32_t*>(q_indptr), const_cast<int32_t*>(kv_indptr),
                                 uint32_t(total), uint32_t(num_seqs), nq_, nkv_, head_dim_,
                                 head_dim_, kPageSize, for_cuda_graph,
                                 /*sizeof_dtype_o=*/2, /*window_left=*/-1, /*fixed_split_size=*/-1,
                                 /*disable_split_kv=*/false, /*num_colocated_ctas=*/0,
                                 /*uniform_q_len=*/for_cuda_graph ? 1 : 0, stream);
  } catch (const std::exception& ex) {
    cuda_fail("FlashInfer attention plan failed for ", num_seqs, " sequences, ", total,
              " query rows (workspaces ", float_bytes_, " + ", int_bytes_, " bytes): ", ex.what());
  }
  if (e != cudaSuccess) cuda_fail("FlashInfer attention plan: CUDA error ", cudaGetErrorString(e));
  NFP_CUDA_CHECK(cudaEventRecord(uploaded_, stream));
  plan_->info = info;
  planned_seqs_ = num_seqs;
  planned_rows_ = total;
  planned_ = true;
}

void FlashInferAttention::run(const PagedKv& cache, const __half* q, const AttnBatch& batch,
                              float softmax_scale, __half* out, cudaStream_t stream) const {
  if (!planned_) cuda_fail("FlashInfer attention run: call plan() for this step first");
  if (batch.num_seqs != planned_seqs_ || batch.total_q != planned_rows_)
    cuda_fail("FlashInfer attention run: batch of ", batch.num_seqs, " sequences / ", batch.total_q,
              " rows, but the plan was for ", planned_seqs_, " / ", planned_rows_);
  if (cache.nkv != nkv_ || cache.head_dim != head_dim_)
    cuda_fail("FlashInfer attention run: cache has ", cache.nkv, " KV heads of dim ",
              cache.head_dim, ", this object was built for ", nkv_, " of dim ", head_dim_);
  if (!cache.k || !cache.v || !q || !out || !batch.q_indptr || !batch.kv_indptr ||
      !batch.kv_indices || !batch.kv_last_page_len)
    cuda_fail("FlashInfer attention run: null device pointer");

  const fi::PrefillPlanInfo& info = plan_->info;
  Params p;
  p.q = const_cast<half*>(q);
  p.paged_kv = fi::paged_kv_t<half, int32_t>(
      nkv_, kPageSize, head_dim_, batch.num_seqs, fi::QKVLayout::kHND, cache.k, cache.v,
      const_cast<int32_t*>(batch.kv_indices), const_cast<int32_t*>(batch.kv_indptr),
      const_cast<int32_t*>(batch.kv_last_page_len));
  p.q_indptr = const_cast<int32_t*>(batch.q_indptr);
  p.o = out;
  p.lse = nullptr;
  p.group_size = fi::uint_fastdiv(uint32_t(nq_ / nkv_));
  p.num_qo_heads = nq_;
  p.q_stride_n = nq_ * head_dim_;
  p.q_stride_h = head_dim_;
  p.window_left = -1;
  p.logits_soft_cap = 0.f;
  p.sm_scale = softmax_scale;
  p.rope_rcp_scale = 1.f;
  p.rope_rcp_theta = 1.f;
  // The schedule plan() uploaded, at the offsets FlashInfer's plan chose.
  auto ip = [&](int64_t off) { return fi::GetPtrFromBaseOffset<int32_t>(int_ws_, off); };
  p.request_indices = ip(info.request_indices_offset);
  p.qo_tile_indices = ip(info.qo_tile_indices_offset);
  p.kv_tile_indices = ip(info.kv_tile_indices_offset);
  p.o_indptr = ip(info.o_indptr_offset);
  p.kv_chunk_size_ptr = ip(info.kv_chunk_size_ptr_offset);
  half* tmp_v = nullptr;
  float* tmp_s = nullptr;
  if (info.split_kv) {
    p.merge_indptr = ip(info.merge_indptr_offset);
    tmp_v = fi::GetPtrFromBaseOffset<half>(float_ws_, info.v_offset);
    tmp_s = fi::GetPtrFromBaseOffset<float>(float_ws_, info.s_offset);
  }
  p.padded_batch_size = uint32_t(info.padded_batch_size);
  p.max_total_num_rows = uint32_t(info.total_num_rows);
  if (info.enable_cuda_graph) {
    p.block_valid_mask = fi::GetPtrFromBaseOffset<bool>(int_ws_, info.block_valid_mask_offset);
    p.total_num_rows = fi::GetPtrFromBaseOffset<uint32_t>(int_ws_, info.total_num_rows_offset);
  }

  if (info.cta_tile_q != 16 && info.cta_tile_q != 64 && info.cta_tile_q != 128)
    cuda_fail("FlashInfer attention run: the plan chose a query tile of ", info.cta_tile_q,
              " rows; this build instantiates 16, 64 and 128 (what the pinned FlashInfer's planner "
              "picks for head_dim < 512): use attention_reference");
  cudaError_t e = cudaSuccess;
  try {
    e = head_dim_ == 64 ? launch_tile<64>(info.cta_tile_q, p, tmp_v, tmp_s, stream)
                        : launch_tile<128>(info.cta_tile_q, p, tmp_v, tmp_s, stream);
  } catch (const std::exception& ex) {  // FlashInfer throws flashinfer::Error
    cuda_fail("FlashInfer attention run (head_dim ", head_dim_, ", query tile ", info.cta_tile_q,
              "): ", ex.what());
  }
  if (e != cudaSuccess)
    cuda_fail("FlashInfer attention run (head_dim ", head_dim_, ", query tile ", info.cta_tile_q,
              "): CUDA error ", cudaGetErrorString(e));
}

std::vector<int64_t> FlashInferAttention::launch_shape() const {
  if (!planned_) return {};
  return plan_->info.ToVector();
}

}  // namespace nestedfp::cuda
