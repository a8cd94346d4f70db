// Scatter the new tokens' K and V rows ([tokens, kv_heads * head_dim]) into one layer of the
// paged cache ([slots, kv_heads * head_dim]) at their slots. The host validates the slots; a slot
// past the cache is skipped here as well, so a bad one can never write outside the buffer. A
// token's k (v) row starts `k_stride` (`v_stride`) elements after the previous one: v is read in
// place from a joined q/k/v product.
#include "common.cuh"

#define KV_WRITE(T, SUFFIX)                                                                     \
  extern "C" __global__ void kv_write_##SUFFIX(const T* k, const T* v, T* k_cache, T* v_cache,  \
                                               const uint32_t* slots, int row, int k_stride,    \
                                               int v_stride, uint32_t num_slots) {              \
    const uint32_t slot = slots[blockIdx.x];                                                    \
    if (slot >= num_slots) return;                                                              \
    const size_t k_src = (size_t)blockIdx.x * k_stride, v_src = (size_t)blockIdx.x * v_stride;  \
    const size_t dst = (size_t)slot * row;                                                      \
    for (int i = threadIdx.x; i < row; i += blockDim.x) {                                       \
      k_cache[dst + i] = k[k_src + i];                                                          \
      v_cache[dst + i] = v[v_src + i];                                                          \
    }                                                                                           \
  }
CANDOR_FOR_EACH_DTYPE(KV_WRITE)
