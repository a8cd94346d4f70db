// Causal attention over the paged KV cache for a flattened batch that mixes prefill chunks and
// decode tokens (the CPU backend's candor_kernels::attention::paged_attention, on the GPU).
//
// One block per (token, head). Keys are visited in tiles with an online softmax (running max and
// sum, rescaled per tile), so any context length runs in fixed shared memory: warps compute the
// tile's scores (lanes split head_dim, so K rows are read coalesced), then every thread
// accumulates P.V for the output dimensions it owns (V rows read coalesced across threads).
// GQA: query head h reads KV head h / (heads / kv_heads). Sliding window: a query at position i
// sees keys i - window < j <= i. Softcap: score = cap * tanh(score / cap). Sinks (gpt-oss; null:
// none): one logit per query head that joins each softmax of the head as a key with no value,
// so the online softmax starts from it (max = sink, sum = e^0 = 1) instead of from nothing.
// ALiBi (BLOOM, MPT; null: none): one slope per query head; a query at position i adds
// slope * (j - i) to its (scaled, capped) score of key j, relative to the query so the bias stays
// small and exact in f32 at any context length (the models' own biases differ from it by a
// constant per row, which the softmax drops). All math in f32.
//
// Long contexts with few blocks (decode of one or a few sequences: tokens × heads blocks cannot
// fill the GPU, and each would walk thousands of keys alone) split each row's keys into ranges,
// one block per (row, head, range) (`paged_attention_split_*`), each writing its partial max,
// sum and unnormalised output; the last block of a (row, head) to finish rescales and sums its
// ranges (counted in `arrivals`, after a fence: the CUDA guide's last-block pattern), so the
// split costs no second launch.
//
// Batch metadata (packed by src/backend/cuda/block_table.rs):
//   row_seq[t]           sequence of token row t (0xffffffff: no sequence; the row is zeroed)
//   seq_meta[3s..3s+3]   q_start, start_pos, offset of the sequence's block table in `tables`
//   tables[]             all block tables, concatenated
#include "common.cuh"

#define ATTN_TILE 64
// 640: DeepSeek's latent heads (multi-head latent attention cached as its latent, 512 wide, and
// the 64 rotary dimensions: 576) fit, not only the widest plain heads (Gemma's 256, 512).
#define ATTN_MAX_HEAD_DIM 640
#define ATTN_MAX_DIMS_PER_THREAD 5  // ATTN_MAX_HEAD_DIM / the 128 threads of a block

// Where a block's query row attends: its output offset, position, first visible key, KV head,
// block table and ALiBi slope (0 without ALiBi: a bias of 0 leaves every score as it is). False
// for a row with no sequence.
struct RowKeys {
  size_t qoff;
  int pos, first, kvh;
  const uint32_t* table;
  float slope;
};

__device__ __forceinline__ bool row_keys(const uint32_t* __restrict__ row_seq,
                                         const uint32_t* __restrict__ seq_meta,
                                         const uint32_t* __restrict__ tables, int t, int h,
                                         int heads, int kv_heads, int head_dim, int window,
                                         const float* __restrict__ alibi, RowKeys& r) {
  r.qoff = ((size_t)t * heads + h) * head_dim;
  const uint32_t s = row_seq[t];
  if (s == 0xffffffffu) return false;
  const int q_start = (int)seq_meta[3 * s], start_pos = (int)seq_meta[3 * s + 1];
  r.table = tables + seq_meta[3 * s + 2];
  r.pos = start_pos + (t - q_start);
  r.first = window > 0 ? max(0, r.pos + 1 - window) : 0;
  r.kvh = h / (heads / kv_heads);
  r.slope = alibi != nullptr ? alibi[h] : 0.0f;
  return true;
}

// Head h's sink logit, -inf for none (a key of weight 0: the softmax as without sinks).
__device__ __forceinline__ float sink_of(const float* __restrict__ sinks, int h) {
  return sinks != nullptr ? sinks[h] : -INFINITY;
}

// The online softmax's start: the sink as a score already seen (its term e^(sink - m) = 1 at
// its own max), or nothing (-inf, 0).
__device__ __forceinline__ void softmax_start(float sink, float& m, float& l) {
  m = sink;
  l = sink > -INFINITY ? 1.0f : 0.0f;
}

// The online softmax of the block's query row (`qs`, in shared memory) over keys [lo, hi) of
// its sequence, folded into the running max `m`, sum `l` and unnormalised output `acc` (the
// dimensions threadIdx.x + i * blockDim.x). `p` and `slot_of` are the block's shared tile.
template <typename T>
__device__ void attend_keys(const float* qs, const T* __restrict__ k_cache,
                            const T* __restrict__ v_cache, const RowKeys& r, int kv_heads,
                            int head_dim, int block_size, float scale, float softcap, int lo,
                            int hi, float* p, size_t* slot_of, float& m, float& l,
                            float (&acc)[ATTN_MAX_DIMS_PER_THREAD]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int base = lo; base < hi; base += ATTN_TILE) {
    const int n = min(ATTN_TILE, hi - base);
    for (int j = warp; j < n; j += warps) {
      const int key = base + j;
      const size_t slot = (size_t)r.table[key / block_size] * block_size + key % block_size;
      const T* kr = k_cache + (slot * kv_heads + r.kvh) * head_dim;
      float dot = 0.0f;
      for (int d = lane; d < head_dim; d += 32) dot += qs[d] * to_f32(kr[d]);
      dot = warp_sum(dot) * scale;
      if (softcap > 0.0f) dot = softcap * tanhf(dot / softcap);
      // ALiBi after the cap, as the CPU backend: the distance (<= 0) is an integer, exact as a
      // float, so every path (one pass, key ranges, tensor cores) adds the same bias.
      dot += r.slope * (float)(key - r.pos);
      if (lane == 0) {
        p[j] = dot;
        slot_of[j] = slot;
      }
    }
    __syncthreads();
    float tile_max = -INFINITY;
    for (int j = 0; j < n; ++j) tile_max = fmaxf(tile_max, p[j]);
    const float m_new = fmaxf(m, tile_max);
    const float correction = expf(m - m_new);  // 0 on the first tile without a sink (m = -inf)
    __syncthreads();  // every thread has read the raw scores
    for (int j = threadIdx.x; j < n; j += blockDim.x) p[j] = expf(p[j] - m_new);
    __syncthreads();
    l *= correction;
#pragma unroll
    for (int i = 0; i < ATTN_MAX_DIMS_PER_THREAD; ++i) acc[i] *= correction;
    for (int j = 0; j < n; ++j) {
      const T* vr = v_cache + (slot_of[j] * kv_heads + r.kvh) * head_dim;
      const float pj = p[j];
      l += pj;
#pragma unroll
      for (int i = 0; i < ATTN_MAX_DIMS_PER_THREAD; ++i) {
        const int d = threadIdx.x + i * blockDim.x;
        if (d < head_dim) acc[i] += pj * to_f32(vr[d]);
      }
    }
    m = m_new;
    __syncthreads();  // p and slot_of are refilled by the next tile
  }
}

template <typename T>
__device__ void load_query(const T* __restrict__ q, size_t qoff, int head_dim, float* qs) {
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = to_f32(q[qoff + d]);
  __syncthreads();
}

template <typename T>
__device__ void attend(const T* __restrict__ q, const T* __restrict__ k_cache,
                       const T* __restrict__ v_cache, T* __restrict__ out,
                       const uint32_t* __restrict__ row_seq, const uint32_t* __restrict__ seq_meta,
                       const uint32_t* __restrict__ tables, int heads, int kv_heads, int head_dim,
                       int block_size, float scale, int window, float softcap,
                       const float* __restrict__ sinks, const float* __restrict__ alibi) {
  __shared__ float qs[ATTN_MAX_HEAD_DIM];
  __shared__ float p[ATTN_TILE];
  __shared__ size_t slot_of[ATTN_TILE];
  RowKeys r;
  if (!row_keys(row_seq, seq_meta, tables, blockIdx.x, blockIdx.y, heads, kv_heads, head_dim,
                window, alibi, r)) {
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) out[r.qoff + d] = from_f32<T>(0.0f);
    return;
  }
  load_query(q, r.qoff, head_dim, qs);
  float acc[ATTN_MAX_DIMS_PER_THREAD];
#pragma unroll
  for (int i = 0; i < ATTN_MAX_DIMS_PER_THREAD; ++i) acc[i] = 0.0f;
  float m, l;
  softmax_start(sink_of(sinks, blockIdx.y), m, l);
  attend_keys(qs, k_cache, v_cache, r, kv_heads, head_dim, block_size, scale, softcap, r.first,
              r.pos + 1, p, slot_of, m, l, acc);
  const float inv = 1.0f / l;
#pragma unroll
  for (int i = 0; i < ATTN_MAX_DIMS_PER_THREAD; ++i) {
    const int d = threadIdx.x + i * blockDim.x;
    if (d < head_dim) out[r.qoff + d] = from_f32<T>(acc[i] * inv);
  }
}

// One (row, head)'s ranges, their partials rescaled to the common max and summed:
// out = Σ acc_s e^(m_s - M) / (e^(sink - M) + Σ l_s e^(m_s - M)), M the largest of the m_s and
// the sink: the sink joins the softmax once here, not once per range. A row whose ranges are
// all empty (no sequence) is zero. The partials were written by other blocks of the launch:
// read through L2 (`__ldcg`), never a cache that might predate them.
template <typename T>
__device__ void combine_splits(const float* part_ml, const float* part_acc, T* __restrict__ out,
                               size_t pair, int head_dim, int splits, float sink) {
  const size_t first = pair * splits;
  float m = sink;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, __ldcg(&part_ml[2 * (first + s)]));
  float l = sink > -INFINITY ? expf(sink - m) : 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float ms = __ldcg(&part_ml[2 * (first + s)]);
    if (ms > -INFINITY) l += __ldcg(&part_ml[2 * (first + s) + 1]) * expf(ms - m);
  }
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float ms = __ldcg(&part_ml[2 * (first + s)]);
      if (ms > -INFINITY) o += __ldcg(&part_acc[(first + s) * head_dim + d]) * expf(ms - m);
    }
    out[pair * head_dim + d] = from_f32<T>(l > 0.0f ? o / l : 0.0f);
  }
}

// Range blockIdx.z of `split_keys` keys of the row's visible keys [first, pos] (the host makes
// gridDim.z × split_keys cover the longest visible span of the batch): partial max and sum at
// part_ml[2 * i], [2 * i + 1] and unnormalised output at part_acc[i * head_dim], i = (row *
// heads + head) * gridDim.z + range. An empty range (past a shorter row's keys, or a row with
// no sequence) leaves max -inf and sum 0. The last of the (row, head)'s blocks to count itself
// in `arrivals[row * heads + head]` combines the ranges into `out` and sets the count back to
// 0 for the next launch (the host zeroes the counts once, when it allocates them).
template <typename T>
__device__ void attend_split(const T* __restrict__ q, const T* __restrict__ k_cache,
                             const T* __restrict__ v_cache, float* part_ml, float* part_acc,
                             T* __restrict__ out, unsigned* __restrict__ arrivals,
                             const uint32_t* __restrict__ row_seq,
                             const uint32_t* __restrict__ seq_meta,
                             const uint32_t* __restrict__ tables, int heads, int kv_heads,
                             int head_dim, int block_size, float scale, int window, float softcap,
                             const float* __restrict__ sinks, const float* __restrict__ alibi,
                             int split_keys) {
  __shared__ float qs[ATTN_MAX_HEAD_DIM];
  __shared__ float p[ATTN_TILE];
  __shared__ size_t slot_of[ATTN_TILE];
  __shared__ bool last;
  const size_t pair = (size_t)blockIdx.x * heads + blockIdx.y;
  const size_t part = pair * gridDim.z + blockIdx.z;
  float acc[ATTN_MAX_DIMS_PER_THREAD];
#pragma unroll
  for (int i = 0; i < ATTN_MAX_DIMS_PER_THREAD; ++i) acc[i] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  RowKeys r;
  if (row_keys(row_seq, seq_meta, tables, blockIdx.x, blockIdx.y, heads, kv_heads, head_dim,
               window, alibi, r)) {
    const int lo = r.first + (int)blockIdx.z * split_keys;
    const int hi = min(r.pos + 1, lo + split_keys);
    if (lo < hi) {
      load_query(q, r.qoff, head_dim, qs);
      attend_keys(qs, k_cache, v_cache, r, kv_heads, head_dim, block_size, scale, softcap, lo,
                  hi, p, slot_of, m, l, acc);
    }
  }
  if (threadIdx.x == 0) {
    part_ml[2 * part] = m;
    part_ml[2 * part + 1] = l;
  }
#pragma unroll
  for (int i = 0; i < ATTN_MAX_DIMS_PER_THREAD; ++i) {
    const int d = threadIdx.x + i * blockDim.x;
    if (d < head_dim) part_acc[part * head_dim + d] = acc[i];
  }
  // Every thread's partials visible to the whole device before the block counts itself.
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&arrivals[pair], 1u) == gridDim.z - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  combine_splits<T>(part_ml, part_acc, out, pair, head_dim, gridDim.z,
                    sink_of(sinks, blockIdx.y));
  if (threadIdx.x == 0) arrivals[pair] = 0;
}

// Argument order as src/backend/cuda/kernels.rs pushes it (AttentionScalars::push_simple, then
// the sinks and the ALiBi slopes); `sinks` and `alibi` are each null or `heads` floats.
#define PAGED_ATTENTION(T, SUFFIX)                                                              \
  extern "C" __global__ void paged_attention_##SUFFIX(                                          \
      const T* q, const T* k_cache, const T* v_cache, T* out, const uint32_t* row_seq,         \
      const uint32_t* seq_meta, const uint32_t* tables, int heads, int kv_heads, int head_dim, \
      int block_size, float scale, int window, float softcap, const float* sinks,              \
      const float* alibi) {                                                                     \
    attend<T>(q, k_cache, v_cache, out, row_seq, seq_meta, tables, heads, kv_heads, head_dim,  \
              block_size, scale, window, softcap, sinks, alibi);                                \
  }                                                                                             \
  extern "C" __global__ void paged_attention_split_##SUFFIX(                                    \
      const T* q, const T* k_cache, const T* v_cache, float* part_ml, float* part_acc, T* out,  \
      unsigned* arrivals, const uint32_t* row_seq, const uint32_t* seq_meta,                    \
      const uint32_t* tables, int heads, int kv_heads, int head_dim, int block_size,            \
      float scale, int window, float softcap, const float* sinks, const float* alibi,           \
      int split_keys) {                                                                         \
    attend_split<T>(q, k_cache, v_cache, part_ml, part_acc, out, arrivals, row_seq, seq_meta,   \
                    tables, heads, kv_heads, head_dim, block_size, scale, window, softcap,      \
                    sinks, alibi, split_keys);                                                  \
  }
CANDOR_FOR_EACH_DTYPE(PAGED_ATTENTION)
