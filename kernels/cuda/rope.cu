// Rotary position embedding of [tokens, heads, head_dim] rows at per-token positions, for both
// pairings: neox (i with i + d/2) and interleaved (2i with 2i + 1), as the CPU kernel rotates
// (rope_rotate). A token's input row starts `in_stride` elements after the previous one (a joined
// q/k/v product's q or k heads are read in place); the output is contiguous.
#include "common.cuh"

template <typename T>
__device__ void rope_rows(const T* __restrict__ x, T* __restrict__ out,
                          const uint32_t* __restrict__ positions, const float* __restrict__ inv_freq,
                          int heads, int head_dim, int in_stride, int interleaved,
                          float mscale) {
  const int half = head_dim / 2;
  const size_t base = (size_t)blockIdx.x * heads * head_dim;
  const size_t in_base = (size_t)blockIdx.x * in_stride;
  const double pos = (double)positions[blockIdx.x];
  for (int idx = threadIdx.x; idx < heads * half; idx += blockDim.x) {
    const int h = idx / half, i = idx % half;
    const size_t at = (size_t)h * head_dim + (interleaved ? 2 * i : i);
    const size_t lo = base + at, hi = lo + (interleaved ? 1 : half);
    const size_t in_lo = in_base + at, in_hi = in_lo + (interleaved ? 1 : half);
    float ra, rb;
    rope_rotate(pos, inv_freq[i], mscale, to_f32(x[in_lo]), to_f32(x[in_hi]), ra, rb);
    out[lo] = from_f32<T>(ra);
    out[hi] = from_f32<T>(rb);
  }
}

#define ROPE(T, SUFFIX)                                                                        \
  extern "C" __global__ void rope_##SUFFIX(const T* x, T* out, const uint32_t* positions,     \
                                           const float* inv_freq, int heads, int head_dim,    \
                                           int in_stride, int interleaved, float mscale) {    \
    rope_rows<T>(x, out, positions, inv_freq, heads, head_dim, in_stride, interleaved,        \
                 mscale);                                                                     \
  }
CANDOR_FOR_EACH_DTYPE(ROPE)
