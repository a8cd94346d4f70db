// A layer's RoPE and KV write in one launch: for each token (one block), the rotated q heads
// (to `q_out`, contiguous [tokens, heads, head_dim]), and the rotated k heads with the v heads
// written into the paged cache at the token's slot. Three launches per layer otherwise (RoPE of
// q, RoPE of k, the KV write). q, k and v are rows at their own strides (views of a joined
// q/k/v product). Rotation as rope.cu (rope_rotate, both pairings); slots as kv_write.cu (a
// slot past the cache writes nothing; the host validates them too).
#include "common.cuh"

template <typename T>
__device__ void rope_kv_write_token(const T* __restrict__ q, const T* __restrict__ k,
                                    const T* __restrict__ v, T* __restrict__ q_out,
                                    T* __restrict__ k_cache, T* __restrict__ v_cache,
                                    const uint32_t* __restrict__ positions,
                                    const uint32_t* __restrict__ slots,
                                    const float* __restrict__ inv_freq, int heads, int kv_heads,
                                    int head_dim, int q_stride, int k_stride, int v_stride,
                                    int interleaved, float mscale, uint32_t num_slots) {
  const int half = head_dim / 2;
  const size_t t = blockIdx.x;
  const double pos = (double)positions[t];
  const uint32_t slot = slots[t];
  const bool write = slot < num_slots;
  const int kv_row = kv_heads * head_dim;
  const int q_pairs = heads * half, pairs = q_pairs + (write ? kv_heads * half : 0);
  for (int idx = threadIdx.x; idx < pairs; idx += blockDim.x) {
    const bool is_q = idx < q_pairs;
    const int j = is_q ? idx : idx - q_pairs;
    const int h = j / half, i = j % half;
    const size_t at = (size_t)h * head_dim + (interleaved ? 2 * i : i);
    const size_t other = interleaved ? 1 : half;
    const T* src = is_q ? q + t * q_stride : k + t * k_stride;
    T* dst = is_q ? q_out + t * heads * head_dim : k_cache + (size_t)slot * kv_row;
    float ra, rb;
    rope_rotate(pos, inv_freq[i], mscale, to_f32(src[at]), to_f32(src[at + other]), ra, rb);
    dst[at] = from_f32<T>(ra);
    dst[at + other] = from_f32<T>(rb);
  }
  if (write)
    for (int d = threadIdx.x; d < kv_row; d += blockDim.x)
      v_cache[(size_t)slot * kv_row + d] = v[t * v_stride + d];
}

#define ROPE_KV_WRITE(T, SUFFIX)                                                                \
  extern "C" __global__ void rope_kv_write_##SUFFIX(                                           \
      const T* q, const T* k, const T* v, T* q_out, T* k_cache, T* v_cache,                     \
      const uint32_t* positions, const uint32_t* slots, const float* inv_freq, int heads,       \
      int kv_heads, int head_dim, int q_stride, int k_stride, int v_stride, int interleaved,    \
      float mscale, uint32_t num_slots) {                                                       \
    rope_kv_write_token<T>(q, k, v, q_out, k_cache, v_cache, positions, slots, inv_freq, heads, \
                           kv_heads, head_dim, q_stride, k_stride, v_stride, interleaved,       \
                           mscale, num_slots);                                                  \
  }
CANDOR_FOR_EACH_DTYPE(ROPE_KV_WRITE)
