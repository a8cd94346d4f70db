// RMSNorm over rows, optionally fused with the residual add that precedes it in a decoder layer:
// sum = x + residual is written once and normalized from registers-to-memory in the same pass,
// so the pair reads each input once instead of three times.
#include "common.cuh"

// One block per row: out = v * rsqrt(mean(v^2) + eps) * w, v = x (+ residual).
template <typename T>
__device__ void rms_norm_row(const T* __restrict__ x, const T* __restrict__ residual,
                             const T* __restrict__ w, T* __restrict__ sum_out, T* __restrict__ out,
                             int cols, float eps) {
  const size_t base = (size_t)blockIdx.x * cols;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = to_f32(x[base + i]);
    if (residual != nullptr) {
      // The sum is stored in T and normalized as stored, as an unfused pipeline would.
      const T s = from_f32<T>(v + to_f32(residual[base + i]));
      sum_out[base + i] = s;
      v = to_f32(s);
    }
    ss += v * v;
  }
  const float inv = rsqrtf(block_sum(ss) / (float)cols + eps);
  for (int i = threadIdx.x; i < cols; i += blockDim.x) {
    const float v = to_f32(residual != nullptr ? sum_out[base + i] : x[base + i]);
    out[base + i] = from_f32<T>(v * inv * to_f32(w[i]));
  }
}

#define RMS_NORM(T, SUFFIX)                                                                      \
  extern "C" __global__ void rms_norm_##SUFFIX(const T* x, const T* w, T* out, int cols,       \
                                               float eps) {                                     \
    rms_norm_row<T>(x, nullptr, w, nullptr, out, cols, eps);                                    \
  }                                                                                             \
  extern "C" __global__ void add_rms_norm_##SUFFIX(const T* x, const T* residual, const T* w,   \
                                                   T* sum_out, T* out, int cols, float eps) {   \
    rms_norm_row<T>(x, residual, w, sum_out, out, cols, eps);                                   \
  }
CANDOR_FOR_EACH_DTYPE(RMS_NORM)
