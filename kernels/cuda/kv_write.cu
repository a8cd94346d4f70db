// Scatter the new tokens' K and V rows ([tokens, kv_heads * head_dim]) into one layer of the
// paged cache ([slots, kv_heads * head_dim]) at their slots. The host validates the slots; a slot
// past the cache is skipped here as well, so a bad one can never write outside the buffer.
#include "common.cuh"

#define KV_WRITE(T, SUFFIX)                                                                     \
  extern "C" __global__ void kv_write_##SUFFIX(const T* k, const T* v, T* k_cache, T* v_cache,  \
                                               const uint32_t* slots, int row,                  \
                                               uint32_t num_slots) {                            \
    const uint32_t slot = slots[blockIdx.x];                                                    \
    if (slot >= num_slots) return;                                                              \
    const size_t src = (size_t)blockIdx.x * row, dst = (size_t)slot * row;                     \
    for (int i = threadIdx.x; i < row; i += blockDim.x) {                                       \
      k_cache[dst + i] = k[src + i];                                                            \
      v_cache[dst + i] = v[src + i];                                                            \
    }                                                                                           \
  }
CANDOR_FOR_EACH_DTYPE(KV_WRITE)
