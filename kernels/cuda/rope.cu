// Rotary position embedding of [tokens, heads, head_dim] rows at per-token positions, for both
// pairings: neox (i with i + d/2) and interleaved (2i with 2i + 1). Like the CPU kernel, the
// angle is formed in double precision: pos * freq exceeds 1e5 rad at long contexts, where an
// f32 angle loses the low bits that decide the rotation. A token's input row starts `in_stride`
// elements after the previous one (a joined q/k/v product's q or k heads are read in place); the
// output is contiguous.
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
    double s, c;
    sincos(pos * (double)inv_freq[i], &s, &c);
    const float cs = (float)c * mscale, sn = (float)s * mscale;
    const size_t at = (size_t)h * head_dim + (interleaved ? 2 * i : i);
    const size_t lo = base + at, hi = lo + (interleaved ? 1 : half);
    const size_t in_lo = in_base + at, in_hi = in_lo + (interleaved ? 1 : half);
    const float a = to_f32(x[in_lo]), b = to_f32(x[in_hi]);
    out[lo] = from_f32<T>(a * cs - b * sn);
    out[hi] = from_f32<T>(b * cs + a * sn);
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
