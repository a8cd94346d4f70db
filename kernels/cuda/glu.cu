// Gated linear unit: out = act(gate) * up, with SiLU or GELU (tanh approximation), in f32.
#include "common.cuh"

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
__device__ __forceinline__ float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

#define GLU(T, SUFFIX)                                                                          \
  extern "C" __global__ void glu_silu_##SUFFIX(const T* gate, const T* up, T* out, size_t n) {  \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;                       \
         i += (size_t)gridDim.x * blockDim.x)                                                   \
      out[i] = from_f32<T>(silu(to_f32(gate[i])) * to_f32(up[i]));                              \
  }                                                                                             \
  extern "C" __global__ void glu_gelu_tanh_##SUFFIX(const T* gate, const T* up, T* out,        \
                                                    size_t n) {                                 \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;                       \
         i += (size_t)gridDim.x * blockDim.x)                                                   \
      out[i] = from_f32<T>(gelu_tanh(to_f32(gate[i])) * to_f32(up[i]));                         \
  }
CANDOR_FOR_EACH_DTYPE(GLU)
