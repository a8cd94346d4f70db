// Gated linear unit: out = act(gate) * up, with SiLU or GELU (tanh approximation), in f32
// (the activations are in common.cuh: matvec.cu applies them too, fused into the down product).
#include "common.cuh"

// Rows of `cols` elements; gate's rows start `gate_stride` elements apart, up's `up_stride` (a
// joined gate/up product's halves are read in place); the output is contiguous.
template <typename T, bool Gelu>
__device__ void glu_rows(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out,
                         size_t n, int cols, int gate_stride, int up_stride) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    const float g = to_f32(gate[r * gate_stride + c]);
    out[i] = from_f32<T>((Gelu ? gelu_tanh(g) : silu(g)) * to_f32(up[r * up_stride + c]));
  }
}

#define GLU(T, SUFFIX)                                                                          \
  extern "C" __global__ void glu_silu_##SUFFIX(const T* gate, const T* up, T* out, size_t n,    \
                                               int cols, int gate_stride, int up_stride) {      \
    glu_rows<T, false>(gate, up, out, n, cols, gate_stride, up_stride);                         \
  }                                                                                             \
  extern "C" __global__ void glu_gelu_tanh_##SUFFIX(const T* gate, const T* up, T* out,        \
                                                    size_t n, int cols, int gate_stride,        \
                                                    int up_stride) {                            \
    glu_rows<T, true>(gate, up, out, n, cols, gate_stride, up_stride);                          \
  }
CANDOR_FOR_EACH_DTYPE(GLU)
