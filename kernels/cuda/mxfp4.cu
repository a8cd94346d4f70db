// MXFP4 weights (gpt-oss's experts, GGUF type 39) kept on the GPU at the file's 17 bytes a
// block of 32 values: an e8m0 scale and 16 bytes of e2m1 codes. candle has no such type, and as
// the Q5_0 blocks they are exactly they take 22 bytes: gpt-oss-120b's experts would need 80 GB
// of an 80 GB H100 instead of 62.
//
// Layout on the device (candor_models::weights::mxfp4::codes_then_scales, at upload): every
// block's 16 code bytes first, row after row ([n, k/2] bytes, so a block's codes are one aligned
// 16-byte load), then the scales ([n, k/32] bytes). Element i of a block is the low nibble of code
// byte i, element i + 16 its high nibble (the file's order).
//
// Two kernels: the product of a decode step's few rows (1 to 8) with the weight, which reads the
// weight once (a warp per pair of weight rows, a lane per block, each block's values times
// every row of x, summed in f32); and the weight expanded to the activation dtype, for larger
// batches, whose product cuBLAS then takes (as candle does for its quantized types).
#include "common.cuh"

constexpr int MXFP4_WARPS = 4;
// Weight rows (output columns) per warp: each x element a lane loads serves both.
constexpr int MXFP4_COLUMNS = 2;

__device__ __forceinline__ float f32_of_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

// Half the scale 2^(e - 127), as ggml's GGML_E8M0_TO_FP32_HALF makes it (e = 0 and 1 give the
// subnormals 2^-128 and 2^-127), since the codes are read as doubled e2m1 values.
__device__ __forceinline__ float e8m0_half(uint8_t e) {
  return f32_of_bits(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

// The doubled e2m1 value of a code (0, 1, 2, 3, 4, 6, 8, 12, bit 3 the sign): the magnitudes
// are the bytes of two words picked by the code's low three bits. Negated as an integer, so
// code 8 is +0 as in ggml's table (a float negation would make it -0).
__device__ __forceinline__ float e2m1_doubled(uint32_t code) {
  const int magnitude = (int)(__byte_perm(0x03020100u, 0x0c080604u, code & 7u) & 0xffu);
  return (float)((code & 8u) ? -magnitude : magnitude);
}

// The 32 values of one block: scale and 16 code bytes.
__device__ __forceinline__ void mxfp4_block(float (&v)[32], const uint4& codes, uint8_t e) {
  const float d = e8m0_half(e);
  uint32_t words[4];
  memcpy(words, &codes, sizeof words);
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const uint32_t byte = (words[j / 4] >> (8 * (j % 4))) & 0xffu;
    v[j] = e2m1_doubled(byte & 0x0fu) * d;
    v[j + 16] = e2m1_doubled(byte >> 4) * d;
  }
}

// The 32 elements of x at p (16-byte aligned: the host checks) in f32, in 16-byte loads.
template <typename T>
__device__ __forceinline__ void load_x_block(const T* __restrict__ p, float (&v)[32]) {
  constexpr int N = Vec16<T>::N;
#pragma unroll
  for (int l = 0; l < 32 / N; ++l) {
    float u[N];
    unpack<T>(load16(p + l * N), u);
#pragma unroll
    for (int i = 0; i < N; ++i) v[l * N + i] = u[i];
  }
}

// y[r, c] = sum_j x[r, j] w[c, j] (+ bias[c]) for the `rows` (1 to R) rows of x, `x_stride`
// elements apart (16-byte aligned rows); y [rows, n] contiguous. Rows past `rows` re-read the
// last real one, columns past n the last weight row (in bounds, never stored), so the loops
// have no branch.
template <typename T, int R>
__device__ void mxfp4_matvec_rows(const uint8_t* __restrict__ codes, const uint8_t* __restrict__ scales,
                                  const T* __restrict__ bias, int has_bias,
                                  const T* __restrict__ x, T* __restrict__ y, int rows, int n, int k,
                                  int x_stride) {
  const int lane = threadIdx.x % 32;
  const int pair = blockIdx.x * MXFP4_WARPS + threadIdx.x / 32;
  const int pairs = (n + MXFP4_COLUMNS - 1) / MXFP4_COLUMNS;
  if (pair >= pairs) return;  // whole warps only: no collective below is left waiting
  const int blocks = k / 32;
  int col[MXFP4_COLUMNS];
#pragma unroll
  for (int c = 0; c < MXFP4_COLUMNS; ++c) col[c] = min(pair * MXFP4_COLUMNS + c, n - 1);
  float acc[MXFP4_COLUMNS][R] = {};
  for (int b = lane; b < blocks; b += 32) {
    float w[MXFP4_COLUMNS][32];
#pragma unroll
    for (int c = 0; c < MXFP4_COLUMNS; ++c) {
      const size_t at = (size_t)col[c] * blocks + b;
      const uint4 q = __ldg(reinterpret_cast<const uint4*>(codes) + at);
      mxfp4_block(w[c], q, __ldg(scales + at));
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float xv[32];
      load_x_block<T>(x + (size_t)min(r, rows - 1) * x_stride + (size_t)b * 32, xv);
#pragma unroll
      for (int i = 0; i < 32; ++i)
#pragma unroll
        for (int c = 0; c < MXFP4_COLUMNS; ++c) acc[c][r] = fmaf(w[c][i], xv[i], acc[c][r]);
    }
  }
#pragma unroll
  for (int c = 0; c < MXFP4_COLUMNS; ++c) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float s = warp_sum(acc[c][r]);
      const int column = pair * MXFP4_COLUMNS + c;
      if (lane == c * R + r && column < n && r < rows) {
        const float bv = has_bias ? to_f32(bias[column]) : 0.0f;
        y[(size_t)r * n + column] = from_f32<T>(__fadd_rn(s, bv));
      }
    }
  }
}

// The weight [n, k] as values of T, row-major: a thread per block.
template <typename T>
__device__ void mxfp4_expand(const uint8_t* __restrict__ codes, const uint8_t* __restrict__ scales,
                             T* __restrict__ out, size_t total_blocks) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total_blocks;
       i += (size_t)gridDim.x * blockDim.x) {
    float v[32];
    mxfp4_block(v, __ldg(reinterpret_cast<const uint4*>(codes) + i), __ldg(scales + i));
#pragma unroll
    for (int j = 0; j < 32; ++j) out[i * 32 + j] = from_f32<T>(v[j]);
  }
}

// mxfp4_matvec_<dtype>_r<R> (R = 1, 2, 4, 8: the host picks the next power of two of the rows)
// and mxfp4_expand_<dtype>.
#define MXFP4_MATVEC(T, SUFFIX, R)                                                                \
  extern "C" __global__ void __launch_bounds__(MXFP4_WARPS * 32)                                  \
      mxfp4_matvec_##SUFFIX##_r##R(const uint8_t* codes, const uint8_t* scales, const T* bias,     \
                                  int has_bias, const T* x, T* y, int rows, int n, int k,         \
                                  int x_stride) {                                                 \
    mxfp4_matvec_rows<T, R>(codes, scales, bias, has_bias, x, y, rows, n, k, x_stride);           \
  }
#define MXFP4(T, SUFFIX)                                                                          \
  MXFP4_MATVEC(T, SUFFIX, 1)                                                                      \
  MXFP4_MATVEC(T, SUFFIX, 2)                                                                      \
  MXFP4_MATVEC(T, SUFFIX, 4)                                                                      \
  MXFP4_MATVEC(T, SUFFIX, 8)                                                                      \
  extern "C" __global__ void mxfp4_expand_##SUFFIX(const uint8_t* codes, const uint8_t* scales,   \
                                                   T* out, size_t total_blocks) {                 \
    mxfp4_expand<T>(codes, scales, out, total_blocks);                                            \
  }
CANDOR_FOR_EACH_DTYPE(MXFP4)
