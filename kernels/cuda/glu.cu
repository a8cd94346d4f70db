// Gated linear unit: out = act(gate, up), in f32: SiLU, GELU (tanh approximation), exact GELU or
// (squared) ReLU of gate times up, or gpt-oss's clamped SwiGLU (the activations are in common.cuh: matvec.cu
// applies them too, fused into the down product).
#include "common.cuh"

// Rows of `cols` elements; gate's rows start `gate_stride` elements apart, up's `up_stride` (a
// joined gate/up product's halves are read in place); the output is contiguous.
template <typename T, GluAct A>
__device__ void glu_rows(const T* __restrict__ gate, const T* __restrict__ up, T* __restrict__ out,
                         size_t n, int cols, int gate_stride, int up_stride) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    const float g = to_f32(gate[r * gate_stride + c]), u = to_f32(up[r * up_stride + c]);
    out[i] = from_f32<T>(glu_unit<A>(g, u));
  }
}

// glu_<act>_<dtype>: one entry point per activation (src/backend/cuda/kernels.rs, `glu_name`).
#define GLU_ENTRY(NAME, ACT, T)                                                                 \
  extern "C" __global__ void NAME(const T* gate, const T* up, T* out, size_t n, int cols,       \
                                  int gate_stride, int up_stride) {                             \
    glu_rows<T, ACT>(gate, up, out, n, cols, gate_stride, up_stride);                           \
  }
#define GLU(T, SUFFIX)                                           \
  GLU_ENTRY(glu_silu_##SUFFIX, GluAct::Silu, T)                  \
  GLU_ENTRY(glu_gelu_tanh_##SUFFIX, GluAct::GeluTanh, T)         \
  GLU_ENTRY(glu_swiglu_oai_##SUFFIX, GluAct::SwigluOai, T)      \
  GLU_ENTRY(glu_gelu_erf_##SUFFIX, GluAct::GeluErf, T)          \
  GLU_ENTRY(glu_relu2_##SUFFIX, GluAct::Relu2, T)              \
  GLU_ENTRY(glu_relu_##SUFFIX, GluAct::Relu, T)
CANDOR_FOR_EACH_DTYPE(GLU)
