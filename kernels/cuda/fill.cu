// Deterministic uniform fill for dummy weights (`--load-format dummy`), made on the device so an
// 8B model needs no 16 GB upload. Value i is a pure function of (seed, i): the same SplitMix64
// hash as candor_models::weights::synthetic, with rounding-exact f32 steps (no FMA contraction),
// so the CPU and the GPU build bit-identical dummy models.
#include "common.cuh"

__device__ __forceinline__ float uniform_at(uint64_t seed, uint64_t i, float lo, float hi) {
  uint64_t z = seed ^ (i * 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  const float u = (float)(z >> 40) * (1.0f / 16777216.0f);  // 24 bits: exact in f32
  return __fadd_rn(lo, __fmul_rn(__fsub_rn(hi, lo), u));
}

#define FILL(T, SUFFIX)                                                                         \
  extern "C" __global__ void fill_uniform_##SUFFIX(T* out, size_t n, uint64_t seed, float lo,   \
                                                   float hi) {                                  \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;                       \
         i += (size_t)gridDim.x * blockDim.x)                                                   \
      out[i] = from_f32<T>(uniform_at(seed, i, lo, hi));                                        \
  }
CANDOR_FOR_EACH_DTYPE(FILL)
