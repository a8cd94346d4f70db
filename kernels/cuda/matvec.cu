// Skinny products of decode steps: y = x · Wᵀ (+ bias) for 1 to 8 rows of x, W [n, k] in
// the half-precision activation dtype (f16, bf16). At so few rows the product is one read of W and little else, so
// decode speed is how close that read comes to the memory bandwidth: this kernel streams W once
// in 16-byte loads, each warp owning `C` of its rows (the outputs' columns), so every x element
// a warp loads serves C weight rows and every weight element serves all R rows of x, summed in
// f32. A general GEMM (cuBLAS) tiles for reuse these shapes do not have; llama.cpp and vLLM
// keep kernels of this kind for the same reason. CANDOR_CUDA_MATMUL=cublas turns it off, so the
// GPU proof measures one against the other.
//
// Layout: W rows contiguous (k elements each), x rows `x_stride` elements apart, y [R, n]
// contiguous. The host launches this only where k is a whole number of 16-byte vectors and W,
// x and x_stride are 16-byte aligned (src/backend/cuda/matvec.rs), four warps per block
// (launch::matvec).
#include "common.cuh"

constexpr int MATVEC_WARPS = 4;

// 16 bytes of T (8 f16 / bf16) as loaded, and element i of them as f32.
template <typename T> struct Vec16 {
  static constexpr int N = 16 / sizeof(T);
};

template <typename T> __device__ __forceinline__ uint4 load16(const T* __restrict__ p) {
  return *reinterpret_cast<const uint4*>(p);
}

template <typename T>
__device__ __forceinline__ void unpack(const uint4& raw, float (&v)[16 / sizeof(T)]) {
  // memcpy between registers, not a pointer cast: well defined in C++ (the emulator's host
  // compiler relies on strict aliasing) and the same register moves in nvcc's output.
  T e[16 / sizeof(T)];
  memcpy(e, &raw, sizeof raw);
#pragma unroll
  for (int i = 0; i < Vec16<T>::N; ++i) v[i] = to_f32(e[i]);
}

// What x is: rows as they are, or the gated linear unit act(gate) * up of two row sets (the
// FFN's down projection reads the GLU of the joined gate/up product without it being written
// out first: one launch fewer per layer), rounded to T as glu.cu rounds it, so the product is
// the same as GLU then matvec.
enum MatvecInput { PLAIN = 0, GLU_SILU = 1, GLU_GELU = 2 };

template <typename T, int In>
__device__ __forceinline__ void load_x(float (&xv)[16 / sizeof(T)], const T* __restrict__ x,
                                       const T* __restrict__ up, size_t x_at, size_t up_at) {
  unpack<T>(load16(x + x_at), xv);
  if constexpr (In != PLAIN) {
    float u[Vec16<T>::N];
    unpack<T>(load16(up + up_at), u);
#pragma unroll
    for (int i = 0; i < Vec16<T>::N; ++i) {
      const float g = In == GLU_SILU ? silu(xv[i]) : gelu_tanh(xv[i]);
      xv[i] = to_f32(from_f32<T>(g * u[i]));
    }
  }
}

// Output columns (weight rows) per warp: each x element a warp loads serves both.
constexpr int MATVEC_COLUMNS = 2;

// One sweep's products: the lane's 16 bytes of each of the C weight rows (`wraw`, as loaded)
// times the matching 16 bytes of every row of x, at element `e`, into `acc[c][r]`.
template <typename T, int R, int In>
__device__ __forceinline__ void matvec_sweep(float (&acc)[MATVEC_COLUMNS][R],
                                             const uint4 (&wraw)[MATVEC_COLUMNS],
                                             const T* __restrict__ x, const T* __restrict__ up,
                                             int rows, int x_stride, int up_stride, int e) {
  constexpr int V = Vec16<T>::N;
  float wv[MATVEC_COLUMNS][V];
#pragma unroll
  for (int c = 0; c < MATVEC_COLUMNS; ++c) unpack<T>(wraw[c], wv[c]);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const size_t real = min(r, rows - 1);
    float xv[V];
    load_x<T, In>(xv, x, up, real * x_stride + e, real * up_stride + e);
#pragma unroll
    for (int c = 0; c < MATVEC_COLUMNS; ++c)
#pragma unroll
      for (int i = 0; i < V; ++i) acc[c][r] = fmaf(wv[c][i], xv[i], acc[c][r]);
  }
}

// R: rows the instance computes, `rows` (1..R) of them real: the others re-read the last
// real row (from cache) and are never stored, so four instances (R = 1, 2, 4, 8) cover every
// count at little PTX for the driver to compile.
template <typename T, int R, int In>
__device__ void matvec_rows(const T* __restrict__ w, const T* __restrict__ bias, int has_bias,
                            const T* __restrict__ x, const T* __restrict__ up,
                            T* __restrict__ y, int rows, int n, int k, int x_stride,
                            int up_stride) {
  constexpr int C = MATVEC_COLUMNS;
  // Sweeps of the row (32 lanes × 16 bytes each) whose weight loads are issued together before
  // any is used: memory-bound code needs many bytes in flight (about 30 KB per SM to cover
  // HBM's latency at 4.8 TB/s), and a 4096-wide product has only ~16 warps per SM to carry
  // them. Fewer at more rows, where each sweep also loads x for every row (registers).
  constexpr int U = R <= 2 ? 4 : 2;
  constexpr int V = Vec16<T>::N;
  constexpr int STEP = 32 * V;
  const int lane = threadIdx.x % 32;
  const int col0 = (blockIdx.x * MATVEC_WARPS + threadIdx.x / 32) * C;
  if (col0 >= n) return;  // the whole warp: no shuffle below waits for it
  // Columns past n re-read the last row (in bounds, never stored) so the loop has no branch.
  const T* w_rows[C];
#pragma unroll
  for (int c = 0; c < C; ++c) w_rows[c] = w + (size_t)min(col0 + c, n - 1) * k;
  float acc[C][R];
#pragma unroll
  for (int c = 0; c < C; ++c)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[c][r] = 0.0f;

  // Whole trips of U sweeps: every weight load of the trip issued first (raw, 4 registers
  // each), then the arithmetic; then the last sweeps one at a time.
  int e0 = lane * V;
  for (; e0 + (U - 1) * STEP < k; e0 += U * STEP) {
    uint4 wraw[U][C];
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int c = 0; c < C; ++c) wraw[u][c] = load16(w_rows[c] + e0 + u * STEP);
#pragma unroll
    for (int u = 0; u < U; ++u)
      matvec_sweep<T, R, In>(acc, wraw[u], x, up, rows, x_stride, up_stride, e0 + u * STEP);
  }
  for (; e0 < k; e0 += STEP) {
    uint4 wraw[C];
#pragma unroll
    for (int c = 0; c < C; ++c) wraw[c] = load16(w_rows[c] + e0);
    matvec_sweep<T, R, In>(acc, wraw, x, up, rows, x_stride, up_stride, e0);
  }

#pragma unroll
  for (int c = 0; c < C; ++c)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[c][r] = warp_sum(acc[c][r]);
  // Every lane holds every sum; lane c * R + r stores (r, col0 + c).
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int col = col0 + c;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (lane == c * R + r && col < n && r < rows) {
        const float b = has_bias ? to_f32(bias[col]) : 0.0f;
        y[(size_t)r * n + col] = from_f32<T>(acc[c][r] + b);
      }
    }
  }
}

// matvec_<dtype>_r<R> (x as it is) and matvec_glu_{silu,gelu_tanh}_<dtype>_r<R> (x the GLU of
// `x` and `up`): one entry point per R, so each keeps its accumulators in registers.
// `bias` is read only when has_bias, `up` only by the GLU entry points (the host passes some
// valid pointer otherwise).
#define MATVEC_ENTRY(NAME, IN, T, R)                                                           \
  extern "C" __global__ void __launch_bounds__(MATVEC_WARPS * 32)                              \
      NAME(const T* w, const T* bias, int has_bias, const T* x, const T* up, T* y, int rows,   \
           int n, int k, int x_stride, int up_stride) {                                        \
    matvec_rows<T, R, IN>(w, bias, has_bias, x, up, y, rows, n, k, x_stride, up_stride);       \
  }
#define MATVEC_ROWS(T, SUFFIX, R)                                    \
  MATVEC_ENTRY(matvec_##SUFFIX##_r##R, PLAIN, T, R)                  \
  MATVEC_ENTRY(matvec_glu_silu_##SUFFIX##_r##R, GLU_SILU, T, R)      \
  MATVEC_ENTRY(matvec_glu_gelu_tanh_##SUFFIX##_r##R, GLU_GELU, T, R)
#define MATVEC(T, SUFFIX)   \
  MATVEC_ROWS(T, SUFFIX, 1) \
  MATVEC_ROWS(T, SUFFIX, 2) \
  MATVEC_ROWS(T, SUFFIX, 4) \
  MATVEC_ROWS(T, SUFFIX, 8)
// Half precision only: f32 models (the tiny test fixtures, dequantized GGUF) are not the ones
// whose decode speed matters, and each instance costs the driver's JIT time at start-up.
MATVEC(__half, f16)
MATVEC(__nv_bfloat16, bf16)
