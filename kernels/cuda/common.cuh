// Shared helpers of candor's CUDA kernels: conversions between the storage types (f32, f16, bf16)
// and f32, in which every kernel accumulates (the CPU backend's semantics), block reductions and
// the GLU activations.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// 16-byte vectors of a storage type: loads through the read-only path and their elements in
// f32 (matvec.cu's rows and weights, mxfp4.cu's activation blocks).
// Elements of T in 16 bytes (8 f16 / bf16).
template <typename T> struct Vec16 {
  static constexpr int N = 16 / sizeof(T);
};

// Through the read-only data path (ld.global.nc): no input is written by the kernel that reads
// it. Explicit, because nvcc infers it only where it can prove that no store of the kernel
// aliases the load, which the RoPE + KV write stores (through a struct) defeat.
template <typename T> __device__ __forceinline__ uint4 load16(const T* __restrict__ p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}

// memcpy between registers, not pointer casts: well defined in C++ (the emulator's host
// compiler relies on strict aliasing) and the same register moves in nvcc's output.
template <typename T>
__device__ __forceinline__ void unpack(const uint4& raw, float (&v)[16 / sizeof(T)]) {
  T e[16 / sizeof(T)];
  memcpy(e, &raw, sizeof raw);
#pragma unroll
  for (int i = 0; i < Vec16<T>::N; ++i) v[i] = to_f32(e[i]);
}

template <typename T>
__device__ __forceinline__ void store16(T* __restrict__ p, const T (&e)[16 / sizeof(T)]) {
  uint4 raw;
  memcpy(&raw, e, sizeof raw);
  *reinterpret_cast<uint4*>(p) = raw;
}

// The gated linear units' activations (glu.cu, and matvec.cu's fused GLU).
__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

// gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
__device__ __forceinline__ float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

// The exact GELU (transformers' `gelu`, GPT-NeoX): 0.5 x (1 + erf(x / sqrt(2))).
__device__ __forceinline__ float gelu_erf(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

// gpt-oss's clamped SwiGLU of a gate and an up value, the up factor included: with
// g = min(gate, 7) and u = clamp(up, -7, 7), g sigmoid(1.702 g) (u + 1). The model's constants,
// in the CPU kernel's order of operations (candor_kernels::activation::swiglu_oai).
__device__ __forceinline__ float swiglu_oai(float gate, float up) {
  const float g = fminf(gate, 7.0f), u = fminf(fmaxf(up, -7.0f), 7.0f);
  return g / (1.0f + expf(-1.702f * g)) * (u + 1.0f);
}

// A gated linear unit's activation, as candor_models::backend::Activation lists them, and the
// whole unit act(gate, up): SiLU and GELU times up, the clamped SwiGLU as above.
enum class GluAct { Silu, GeluTanh, SwigluOai, GeluErf, Relu2, Relu };

template <GluAct A> __device__ __forceinline__ float glu_unit(float gate, float up) {
  if constexpr (A == GluAct::Silu) {
    return silu(gate) * up;
  } else if constexpr (A == GluAct::GeluTanh) {
    return gelu_tanh(gate) * up;
  } else if constexpr (A == GluAct::GeluErf) {
    return gelu_erf(gate) * up;
  } else if constexpr (A == GluAct::Relu2) {
    const float r = fmaxf(gate, 0.0f);
    return __fmul_rn(__fmul_rn(r, r), up);
  } else if constexpr (A == GluAct::Relu) {
    return __fmul_rn(fmaxf(gate, 0.0f), up);
  } else {
    return swiglu_oai(gate, up);
  }
}

// RoPE's rotation of the pair (a, b) at position `pos` by frequency `freq`, scaled by `mscale`
// (1 unless the RoPE scaling has an attention factor), into (ra, rb). The angle is formed in
// double precision as the CPU kernel forms it: pos * freq exceeds 1e5 rad at long contexts,
// where an f32 angle loses the low bits that decide the rotation. Each product is rounded on its
// own, as the CPU computes them: left to itself nvcc fuses some into multiply-adds, and not
// necessarily the same ones in each kernel, so rope.cu, rope_kv_write.cu and matvec.cu's fused
// RoPE would not give the same bits.
__device__ __forceinline__ void rope_rotate(double pos, float freq, float mscale, float a, float b,
                                            float& ra, float& rb) {
  double s, c;
  sincos(pos * (double)freq, &s, &c);
  const float cs = (float)c * mscale, sn = (float)s * mscale;
  ra = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
  rb = __fadd_rn(__fmul_rn(b, cs), __fmul_rn(a, sn));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block, returned to every thread. blockDim.x must be a multiple of 32
// (the host launch configuration guarantees it).
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_sum(v);
  __syncthreads();  // `partial` may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  return warp_sum(lane < warps ? partial[lane] : 0.0f);
}

// Instantiate `NAME_f32`, `NAME_f16` and `NAME_bf16` extern "C" entry points of a templated
// kernel body `NAME<T>(ARGS...)`. The host picks the one for the activation dtype.
#define CANDOR_FOR_EACH_DTYPE(MACRO) \
  MACRO(float, f32)                  \
  MACRO(__half, f16)                 \
  MACRO(__nv_bfloat16, bf16)
