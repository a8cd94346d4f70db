// Index of each row's largest value, picked as the CPU backend and the sampler pick it
// (candor_kernels::argmax): the first of equal values, NaN passed over (the last index when a
// row is all NaN). candle's CUDA argmax keeps the value of the lower thread on ties, which is
// not the lower index, and logits in bf16 tie often (8 bits of mantissa). One block per row,
// a power-of-two number of threads.
#include "common.cuh"

// Fold the candidate (ob, oa) into (best, at): a larger value, or an equal one at a lower
// index; at < 0 means "no value yet" (only NaN seen).
__device__ __forceinline__ void keep_better(float& best, int& at, float ob, int oa) {
  if (oa < 0) return;
  if (at < 0 || ob > best || (ob == best && oa < at)) {
    best = ob;
    at = oa;
  }
}

#define ARGMAX_MAX_THREADS 1024

template <typename T>
__device__ void argmax_rows(const T* __restrict__ x, uint32_t* __restrict__ out, int cols) {
  __shared__ float best_of[ARGMAX_MAX_THREADS];
  __shared__ int at_of[ARGMAX_MAX_THREADS];
  const T* row = x + (size_t)blockIdx.x * cols;
  const int tid = threadIdx.x;
  float best = 0.0f;
  int at = -1;
  for (int i = tid; i < cols; i += blockDim.x) {
    const float v = to_f32(row[i]);
    if (v == v) keep_better(best, at, v, i);  // v != v: NaN
  }
  best_of[tid] = best;
  at_of[tid] = at;
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    __syncthreads();
    if (tid < s) {
      float b = best_of[tid];
      int a = at_of[tid];
      keep_better(b, a, best_of[tid + s], at_of[tid + s]);
      best_of[tid] = b;
      at_of[tid] = a;
    }
  }
  if (tid == 0) out[blockIdx.x] = at_of[0] < 0 ? (uint32_t)(cols - 1) : (uint32_t)at_of[0];
}

#define ARGMAX(T, SUFFIX)                                                                   \
  extern "C" __global__ void argmax_##SUFFIX(const T* x, uint32_t* out, int cols) {        \
    argmax_rows<T>(x, out, cols);                                                           \
  }
CANDOR_FOR_EACH_DTYPE(ARGMAX)
