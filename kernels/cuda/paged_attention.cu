// Causal attention over the paged KV cache for a flattened batch that mixes prefill chunks and
// decode tokens (the CPU backend's candor_kernels::attention::paged_attention, on the GPU).
//
// One block per (token, head). Keys are visited in tiles with an online softmax (running max and
// sum, rescaled per tile), so any context length runs in fixed shared memory: warps compute the
// tile's scores (lanes split head_dim, so K rows are read coalesced), then every thread
// accumulates P.V for the output dimensions it owns (V rows read coalesced across threads).
// GQA: query head h reads KV head h / (heads / kv_heads). Sliding window: a query at position i
// sees keys i - window < j <= i. Softcap: score = cap * tanh(score / cap). All math in f32.
//
// Batch metadata (packed by src/backend/cuda/block_table.rs):
//   row_seq[t]           sequence of token row t (0xffffffff: no sequence; the row is zeroed)
//   seq_meta[3s..3s+3]   q_start, start_pos, offset of the sequence's block table in `tables`
//   tables[]             all block tables, concatenated
#include "common.cuh"

#define ATTN_TILE 64
#define ATTN_MAX_HEAD_DIM 512
#define ATTN_MAX_DIMS_PER_THREAD 4  // ATTN_MAX_HEAD_DIM / the 128 threads of a block

template <typename T>
__device__ void attend(const T* __restrict__ q, const T* __restrict__ k_cache,
                       const T* __restrict__ v_cache, T* __restrict__ out,
                       const uint32_t* __restrict__ row_seq, const uint32_t* __restrict__ seq_meta,
                       const uint32_t* __restrict__ tables, int heads, int kv_heads, int head_dim,
                       int block_size, float scale, int window, float softcap) {
  __shared__ float qs[ATTN_MAX_HEAD_DIM];
  __shared__ float p[ATTN_TILE];
  __shared__ size_t slot_of[ATTN_TILE];
  const int t = blockIdx.x, h = blockIdx.y;
  const size_t qoff = ((size_t)t * heads + h) * head_dim;
  const uint32_t s = row_seq[t];
  if (s == 0xffffffffu) {
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) out[qoff + d] = from_f32<T>(0.0f);
    return;
  }
  const int q_start = (int)seq_meta[3 * s], start_pos = (int)seq_meta[3 * s + 1];
  const uint32_t* table = tables + seq_meta[3 * s + 2];
  const int pos = start_pos + (t - q_start);
  const int first = window > 0 ? max(0, pos + 1 - window) : 0;
  const int kvh = h / (heads / kv_heads);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) qs[d] = to_f32(q[qoff + d]);
  __syncthreads();

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  float acc[ATTN_MAX_DIMS_PER_THREAD];
#pragma unroll
  for (int i = 0; i < ATTN_MAX_DIMS_PER_THREAD; ++i) acc[i] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int base = first; base <= pos; base += ATTN_TILE) {
    const int n = min(ATTN_TILE, pos + 1 - base);
    for (int j = warp; j < n; j += warps) {
      const int key = base + j;
      const size_t slot = (size_t)table[key / block_size] * block_size + key % block_size;
      const T* kr = k_cache + (slot * kv_heads + kvh) * head_dim;
      float dot = 0.0f;
      for (int d = lane; d < head_dim; d += 32) dot += qs[d] * to_f32(kr[d]);
      dot = warp_sum(dot) * scale;
      if (softcap > 0.0f) dot = softcap * tanhf(dot / softcap);
      if (lane == 0) {
        p[j] = dot;
        slot_of[j] = slot;
      }
    }
    __syncthreads();
    float tile_max = -INFINITY;
    for (int j = 0; j < n; ++j) tile_max = fmaxf(tile_max, p[j]);
    const float m_new = fmaxf(m, tile_max);
    const float correction = expf(m - m_new);  // 0 on the first tile (m = -inf)
    __syncthreads();  // every thread has read the raw scores
    for (int j = threadIdx.x; j < n; j += blockDim.x) p[j] = expf(p[j] - m_new);
    __syncthreads();
    l *= correction;
#pragma unroll
    for (int i = 0; i < ATTN_MAX_DIMS_PER_THREAD; ++i) acc[i] *= correction;
    for (int j = 0; j < n; ++j) {
      const T* vr = v_cache + (slot_of[j] * kv_heads + kvh) * head_dim;
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
  const float inv = 1.0f / l;
#pragma unroll
  for (int i = 0; i < ATTN_MAX_DIMS_PER_THREAD; ++i) {
    const int d = threadIdx.x + i * blockDim.x;
    if (d < head_dim) out[qoff + d] = from_f32<T>(acc[i] * inv);
  }
}

#define PAGED_ATTENTION(T, SUFFIX)                                                              \
  extern "C" __global__ void paged_attention_##SUFFIX(                                          \
      const T* q, const T* k_cache, const T* v_cache, T* out, const uint32_t* row_seq,         \
      const uint32_t* seq_meta, const uint32_t* tables, int heads, int kv_heads, int head_dim, \
      int block_size, float scale, int window, float softcap) {                                 \
    attend<T>(q, k_cache, v_cache, out, row_seq, seq_meta, tables, heads, kv_heads, head_dim,  \
              block_size, scale, window, softcap);                                              \
  }
CANDOR_FOR_EACH_DTYPE(PAGED_ATTENTION)
