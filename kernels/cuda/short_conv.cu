// LFM2's short convolution read straight from the paged cache (candor_kernels::conv::short_conv
// on the host, models/src/short_conv.rs for the layout): each token's output channel c is
// bias[c] + sum over the kernel's taps j (oldest first) of w[j][c] times channel c of the tapped
// row. A row's `width` channels lie in pieces of `piece` values: piece p in the K (p even) or V
// (p odd) half of cache layer p / 2, at the row's slot. Taps name rows of `slots` (NO_ROW: a
// position before the sequence, adding nothing); the host checked every tap and slot. Sums in
// f32 in the host kernel's order, each product and sum rounded on its own (no fused
// multiply-add), so f32 caches give the host's bits.
#include "common.cuh"

// The most pieces a row may span: four cache layers (LFM2's rows span two of LFM2-1.2B's).
#define SHORT_CONV_MAX_PIECES 8

template <typename T>
__device__ void short_conv_rows(const T* const* halves, int piece, const uint32_t* __restrict__ slots,
                                const uint32_t* __restrict__ taps, const float* __restrict__ w,
                                const float* __restrict__ bias, int has_bias, int kernel, int width,
                                size_t n, T* __restrict__ out) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const size_t t = i / width;
    const int c = (int)(i % width);
    const T* src = halves[c / piece];
    const int off = c % piece;
    float acc = has_bias ? bias[c] : 0.0f;
    for (int j = 0; j < kernel; ++j) {
      const uint32_t r = taps[t * kernel + j];
      if (r == 0xffffffffu) continue;
      const float x = to_f32(src[(size_t)slots[r] * piece + off]);
      acc = __fadd_rn(acc, __fmul_rn(w[(size_t)j * width + c], x));
    }
    out[i] = from_f32<T>(acc);
  }
}

// short_conv_<dtype>: the cache halves h0..h7 in row order (K of the first cache layer, its V,
// K of the next ...; unused ones may be any valid pointer), `n` = tokens * width outputs.
#define SHORT_CONV(T, SUFFIX)                                                                    \
  extern "C" __global__ void short_conv_##SUFFIX(                                                \
      const T* h0, const T* h1, const T* h2, const T* h3, const T* h4, const T* h5, const T* h6, \
      const T* h7, int piece, const uint32_t* slots, const uint32_t* taps, const float* w,        \
      const float* bias, int has_bias, int kernel, int width, size_t n, T* out) {               \
    const T* halves[SHORT_CONV_MAX_PIECES] = {h0, h1, h2, h3, h4, h5, h6, h7};                   \
    short_conv_rows<T>(halves, piece, slots, taps, w, bias, has_bias, kernel, width, n, out);    \
  }
CANDOR_FOR_EACH_DTYPE(SHORT_CONV)
