// Skinny products of decode steps: y = x · Wᵀ (+ bias) for 1 to 8 rows of x, W [n, k] in the
// half-precision activation dtype (f16, bf16). At so few rows the product is one read of W and
// little else, so decode speed is how close that read comes to the memory bandwidth: this kernel
// streams W once in 16-byte loads, each warp owning `MATVEC_COLUMNS` of its rows (the outputs'
// columns), so every x element a warp loads serves those weight rows and every weight element
// serves all R rows of x, summed in f32. A general GEMM (cuBLAS) tiles for reuse these shapes do
// not have; llama.cpp and vLLM keep kernels of this kind for the same reason.
// CANDOR_CUDA_MATMUL=cublas turns it off, so the GPU proof measures one against the other.
//
// x can also be what the op before the product would have written, computed as it is read: the
// FFN's GLU act(gate, up) (the down product; rounded to T as glu.cu leaves it), or the RMSNorm
// of x (+ a residual) (the q/k/v and gate/up products). The norm costs no pass of its own: a row
// normalized is v · g · rsqrt(mean(v²) + eps), so each warp sums v² beside its dot products
// with v · g and scales its sums once at the end (the normalized row is never rounded to T, as
// rms_norm.cu's output would be: a closer result than norm then product, not a bitwise one).
// One launch fewer per use. The q/k/v product can also finish the layer's RoPE and KV write
// (RopeKvOut below), one launch fewer again.
//
// Layout: W rows contiguous (k elements each), x rows `x_stride` elements apart (`up_stride`
// for `up`), residual, sum and y rows contiguous. The host launches this only where k is a whole
// number of 16-byte vectors and every pointer and stride is 16-byte aligned
// (src/backend/cuda/matvec.rs), four warps per block (launch::matvec).
#include "common.cuh"

constexpr int MATVEC_WARPS = 4;

// Output columns (weight rows) per warp: each x element a warp loads serves both.
constexpr int MATVEC_COLUMNS = 2;

// What x is: rows as they are; the gated linear unit act(gate = x, up) (SiLU, GELU-tanh or
// gpt-oss's clamped SwiGLU); the RMSNorm of x; the RMSNorm of x + residual.
enum MatvecInput {
  PLAIN = 0,
  GLU_SILU = 1,
  GLU_GELU = 2,
  NORM = 3,
  ADD_NORM = 4,
  GLU_SWIGLU_OAI = 5,
  GLU_GELU_ERF = 6,
  GLU_RELU2 = 7,
  GLU_RELU = 8,
};

// The GLU inputs and their activations.
constexpr bool is_glu(int In) {
  return In == GLU_SILU || In == GLU_GELU || In == GLU_SWIGLU_OAI || In == GLU_GELU_ERF ||
         In == GLU_RELU2 || In == GLU_RELU;
}
constexpr GluAct glu_act(int In) {
  return In == GLU_SILU         ? GluAct::Silu
         : In == GLU_GELU       ? GluAct::GeluTanh
         : In == GLU_GELU_ERF   ? GluAct::GeluErf
         : In == GLU_RELU2      ? GluAct::Relu2
         : In == GLU_RELU       ? GluAct::Relu
                                : GluAct::SwigluOai;
}

// The R rows of x a product reads, and how to make them: pointers and strides; for the RMSNorm
// inputs, each row's sum of squares so far (`ss`, this lane's share) and, in one warp of the
// grid, where the sum x + residual is written (`sum_out`, else null).
template <typename T, int R, int In> struct XRows {
  static constexpr int V = Vec16<T>::N;
  const T* __restrict__ x;
  const T* __restrict__ up;        // GLU: the up rows
  const T* __restrict__ residual;  // ADD_NORM
  const T* __restrict__ norm;      // NORM, ADD_NORM: the weight, k elements
  T* __restrict__ sum_out;         // ADD_NORM, one warp: x + residual
  int rows, k, x_stride, up_stride;
  float ss[R];

  // Real row of instance row r: rows past `rows` re-read the last real one.
  __device__ __forceinline__ size_t real(int r) const { return min(r, rows - 1); }

  // Row r's 16 bytes at element e as the product reads them. Every (r, e) of the row is read
  // once per warp, so the RMSNorm inputs count their squares here.
  __device__ __forceinline__ void load(float (&xv)[V], int r, int e) {
    unpack<T>(load16(x + real(r) * x_stride + e), xv);
    if constexpr (is_glu(In)) {
      float u[V];
      unpack<T>(load16(up + real(r) * up_stride + e), u);
#pragma unroll
      for (int i = 0; i < V; ++i) xv[i] = to_f32(from_f32<T>(glu_unit<glu_act(In)>(xv[i], u[i])));
    }
    if constexpr (In == ADD_NORM) {
      // The sum as the fused add stores it (in T), and normalized as stored.
      float q[V];
      T s[V];
      unpack<T>(load16(residual + real(r) * k + e), q);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        s[i] = from_f32<T>(xv[i] + q[i]);
        xv[i] = to_f32(s[i]);
      }
      if (sum_out != nullptr && r < rows) store16(sum_out + (size_t)r * k + e, s);
    }
    if constexpr (In == NORM || In == ADD_NORM) {
      float g[V];
      unpack<T>(load16(norm + e), g);
#pragma unroll
      for (int i = 0; i < V; ++i) {
        ss[r] = fmaf(xv[i], xv[i], ss[r]);
        xv[i] *= g[i];
      }
    }
  }

  // What each of row r's dot products is multiplied by at the end: its inverse RMS (this warp
  // holding the whole row's squares once summed across lanes), else 1.
  __device__ __forceinline__ float scale(int r, float eps) const {
    if constexpr (In == NORM || In == ADD_NORM) {
      return rsqrtf(warp_sum(ss[r]) / (float)k + eps);
    } else {
      return 1.0f;
    }
  }
};

// One sweep's products: the lane's 16 bytes of each weight row of the warp (`wraw`, as
// loaded) times the matching 16 bytes of every row of x, at element `e`, into `acc[c][r]`.
template <typename T, int R, int In>
__device__ __forceinline__ void matvec_sweep(float (&acc)[MATVEC_COLUMNS][R],
                                             const uint4 (&wraw)[MATVEC_COLUMNS],
                                             XRows<T, R, In>& xs, int e) {
  constexpr int V = Vec16<T>::N;
  float wv[MATVEC_COLUMNS][V];
#pragma unroll
  for (int c = 0; c < MATVEC_COLUMNS; ++c) unpack<T>(wraw[c], wv[c]);
#pragma unroll
  for (int r = 0; r < R; ++r) {
    float xv[V];
    xs.load(xv, r, e);
#pragma unroll
    for (int c = 0; c < MATVEC_COLUMNS; ++c)
#pragma unroll
      for (int i = 0; i < V; ++i) acc[c][r] = fmaf(wv[c][i], xv[i], acc[c][r]);
  }
}

// Where a product's columns go, and which columns each warp computes (a "pair": the
// MATVEC_COLUMNS weight rows it streams together).
//
// RowsOut: y, [rows, n] row-major; pair p is columns 2p and 2p + 1.
template <typename T> struct RowsOut {
  T* __restrict__ y;
  int n;

  __device__ __forceinline__ int pairs() const { return (n + MATVEC_COLUMNS - 1) / MATVEC_COLUMNS; }
  // The weight row member c of pair p reads: columns past n re-read the last row (in bounds,
  // never stored) so the loop has no branch.
  __device__ __forceinline__ int weight_row(int p, int c) const {
    return min(p * MATVEC_COLUMNS + c, n - 1);
  }
  // Every lane holds every sum; lane c * R + r stores (r, column c of the pair), bias added
  // (not fused with the scale's product into a multiply-add: RopeKvOut rounds as this does).
  template <int R>
  __device__ __forceinline__ void store(const float (&acc)[MATVEC_COLUMNS][R], int p, int lane,
                                        int rows, const T* __restrict__ bias, int has_bias) const {
#pragma unroll
    for (int c = 0; c < MATVEC_COLUMNS; ++c) {
      const int col = p * MATVEC_COLUMNS + c;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (lane == c * R + r && col < n && r < rows) {
          const float b = has_bias ? to_f32(bias[col]) : 0.0f;
          y[(size_t)r * n + col] = from_f32<T>(__fadd_rn(acc[c][r], b));
        }
      }
    }
  }
};

// RopeKvOut: the columns of a joined q/k/v product (`q_width` of q heads, then `kv_width` of k
// heads and `kv_width` of v heads, heads `head_dim` wide), finished as rope_kv_write.cu finishes
// them: the q heads rotated into `q` ([rows, q_width]), the k heads rotated and the v heads
// written into the paged cache at each row's slot (a slot past `num_slots` writes nothing). The
// columns a rotation pairs (2i and 2i + 1 of a head, or i and i + head_dim/2 for neox) are one
// warp's pair, so the warp that sums them rotates them: the product's output is never written
// out or read back, and the layer has one launch fewer. Each value is first rounded to T as the
// product's output would be, so the result is bitwise that of the product then rope_kv_write.
template <typename T> struct RopeKvOut {
  static_assert(MATVEC_COLUMNS == 2, "a warp's pair of columns is a rotation's pair");
  T* __restrict__ q;
  T* __restrict__ k_cache;
  T* __restrict__ v_cache;
  const uint32_t* __restrict__ positions;  // per row
  const uint32_t* __restrict__ slots;      // per row
  const float* __restrict__ inv_freq;      // head_dim / 2
  int q_width, kv_width, head_dim, interleaved;
  float mscale;
  uint32_t num_slots;

  __device__ __forceinline__ int pairs() const { return (q_width + 2 * kv_width) / 2; }
  // v's columns are paired as k's (and not rotated).
  __device__ __forceinline__ int weight_row(int p, int c) const {
    if (interleaved) return 2 * p + c;
    const int half = head_dim / 2;
    return (p / half) * head_dim + p % half + c * half;
  }
  // Lane r finishes row r's pair.
  template <int R>
  __device__ __forceinline__ void store(const float (&acc)[MATVEC_COLUMNS][R], int p, int lane,
                                        int rows, const T* __restrict__ bias, int has_bias) const {
    const int col_a = weight_row(p, 0), col_b = weight_row(p, 1);
    const float bias_a = has_bias ? to_f32(bias[col_a]) : 0.0f;
    const float bias_b = has_bias ? to_f32(bias[col_b]) : 0.0f;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (lane != r || r >= rows) continue;
      const float a = to_f32(from_f32<T>(__fadd_rn(acc[0][r], bias_a)));
      const float b = to_f32(from_f32<T>(__fadd_rn(acc[1][r], bias_b)));
      const uint32_t slot = slots[r];
      const size_t cache_row = (size_t)slot * kv_width;
      if (col_a >= q_width + kv_width) {  // v
        if (slot < num_slots) {
          v_cache[cache_row + col_a - q_width - kv_width] = from_f32<T>(a);
          v_cache[cache_row + col_b - q_width - kv_width] = from_f32<T>(b);
        }
        continue;
      }
      const int d = col_a % head_dim;
      float ra, rb;
      rope_rotate((double)positions[r], inv_freq[interleaved ? d / 2 : d], mscale, a, b, ra, rb);
      if (col_a < q_width) {
        q[(size_t)r * q_width + col_a] = from_f32<T>(ra);
        q[(size_t)r * q_width + col_b] = from_f32<T>(rb);
      } else if (slot < num_slots) {
        k_cache[cache_row + col_a - q_width] = from_f32<T>(ra);
        k_cache[cache_row + col_b - q_width] = from_f32<T>(rb);
      }
    }
  }
};

// R: rows the instance computes, `xs.rows` (1..R) of them real: the others re-read the last
// real row (from cache) and are never stored, so four instances (R = 1, 2, 4, 8) cover every
// count.
template <typename T, int R, int In, typename Out>
__device__ void matvec_rows(const T* __restrict__ w, const T* __restrict__ bias, int has_bias,
                            XRows<T, R, In> xs, const Out& out, float eps,
                            T* __restrict__ sum_out) {
  constexpr int C = MATVEC_COLUMNS;
  // Sweeps of the row (32 lanes × 16 bytes each) whose weight loads are issued together before
  // any is used: memory-bound code needs many bytes in flight (about 30 KB per SM to cover
  // HBM's latency at 4.8 TB/s), and a 4096-wide product has only ~16 warps per SM to carry
  // them. Fewer at more rows, where each sweep also loads x for every row (registers).
  constexpr int U = R <= 2 ? 4 : 2;
  constexpr int V = Vec16<T>::N;
  constexpr int STEP = 32 * V;
  const int k = xs.k;
  const int lane = threadIdx.x % 32;
  const int pair = blockIdx.x * MATVEC_WARPS + threadIdx.x / 32;
  if (pair >= out.pairs()) return;  // the whole warp: no shuffle below waits for it
  // One warp of the grid writes the sum x + residual as it reads it.
  xs.sum_out = pair == 0 ? sum_out : nullptr;
#pragma unroll
  for (int r = 0; r < R; ++r) xs.ss[r] = 0.0f;
  const T* w_rows[C];
#pragma unroll
  for (int c = 0; c < C; ++c) w_rows[c] = w + (size_t)out.weight_row(pair, c) * k;
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
    for (int u = 0; u < U; ++u) matvec_sweep<T, R, In>(acc, wraw[u], xs, e0 + u * STEP);
  }
  for (; e0 < k; e0 += STEP) {
    uint4 wraw[C];
#pragma unroll
    for (int c = 0; c < C; ++c) wraw[c] = load16(w_rows[c] + e0);
    matvec_sweep<T, R, In>(acc, wraw, xs, e0);
  }

  float scale[R];
#pragma unroll
  for (int r = 0; r < R; ++r) scale[r] = xs.scale(r, eps);
#pragma unroll
  for (int c = 0; c < C; ++c)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[c][r] = warp_sum(acc[c][r]) * scale[r];
  out.template store<R>(acc, pair, lane, xs.rows, bias, has_bias);
}

// matvec_<dtype>_r<R> (x as it is), matvec_glu_{silu,gelu_tanh,swiglu_oai,gelu_erf,relu2,relu}_<dtype>_r<R>
// (the GLU of `x` and `up`), matvec_rms_norm_<dtype>_r<R> (the RMSNorm of x by `norm`) and
// matvec_add_rms_norm_<dtype>_r<R> (of x + `residual`, the sum written to `sum_out`): one entry
// point per R, so each keeps its accumulators in registers. Pointers an entry point does not
// read (no bias, no up, ...) may be any valid pointer.
#define MATVEC_ENTRY(NAME, IN, T, R)                                                              \
  extern "C" __global__ void __launch_bounds__(MATVEC_WARPS * 32)                                 \
      NAME(const T* w, const T* bias, int has_bias, const T* x, const T* up, const T* residual,    \
           const T* norm, T* sum_out, T* y, int rows, int n, int k, int x_stride, int up_stride,  \
           float eps) {                                                                           \
    XRows<T, R, IN> xs{x, up, residual, norm, nullptr, rows, k, x_stride, up_stride, {}};         \
    matvec_rows<T, R, IN>(w, bias, has_bias, xs, RowsOut<T>{y, n}, eps, sum_out);                 \
  }
// <name>_rope_kv_<dtype>_r<R>: a joined q/k/v product finished by RoPE and the KV write
// (RopeKvOut), for x as it is and the RMSNorm inputs (the products before attention).
#define MATVEC_ROPE_KV_ENTRY(NAME, IN, T, R)                                                      \
  extern "C" __global__ void __launch_bounds__(MATVEC_WARPS * 32)                                 \
      NAME(const T* w, const T* bias, int has_bias, const T* x, const T* residual, const T* norm,  \
           T* sum_out, T* q, T* k_cache, T* v_cache, const uint32_t* positions,                  \
           const uint32_t* slots, const float* inv_freq, int rows, int k, int x_stride,           \
           int q_width, int kv_width, int head_dim, int interleaved, float mscale,                \
           uint32_t num_slots, float eps) {                                                       \
    XRows<T, R, IN> xs{x, x, residual, norm, nullptr, rows, k, x_stride, x_stride, {}};           \
    const RopeKvOut<T> out{q,        k_cache,  v_cache,  positions,   slots, inv_freq,            \
                           q_width,  kv_width, head_dim, interleaved, mscale, num_slots};         \
    matvec_rows<T, R, IN>(w, bias, has_bias, xs, out, eps, sum_out);                              \
  }
#define MATVEC_ROWS(T, SUFFIX, R)                                           \
  MATVEC_ENTRY(matvec_##SUFFIX##_r##R, PLAIN, T, R)                         \
  MATVEC_ENTRY(matvec_glu_silu_##SUFFIX##_r##R, GLU_SILU, T, R)             \
  MATVEC_ENTRY(matvec_glu_gelu_tanh_##SUFFIX##_r##R, GLU_GELU, T, R)        \
  MATVEC_ENTRY(matvec_glu_swiglu_oai_##SUFFIX##_r##R, GLU_SWIGLU_OAI, T, R) \
  MATVEC_ENTRY(matvec_glu_gelu_erf_##SUFFIX##_r##R, GLU_GELU_ERF, T, R)     \
  MATVEC_ENTRY(matvec_glu_relu2_##SUFFIX##_r##R, GLU_RELU2, T, R)           \
  MATVEC_ENTRY(matvec_glu_relu_##SUFFIX##_r##R, GLU_RELU, T, R)             \
  MATVEC_ROPE_KV_ENTRY(matvec_rope_kv_##SUFFIX##_r##R, PLAIN, T, R)
// The RMSNorm inputs for 1 and 2 rows only (launch::MATVEC_MAX_NORM_ROWS): from 4 rows their
// extra registers (the residual, the sums of squares, the sum's stores) cut the warps an SM
// holds, and with them the bytes in flight, by more than a separate norm launch costs.
#define MATVEC_NORM_ROWS(T, SUFFIX, R)                                              \
  MATVEC_ENTRY(matvec_rms_norm_##SUFFIX##_r##R, NORM, T, R)                         \
  MATVEC_ENTRY(matvec_add_rms_norm_##SUFFIX##_r##R, ADD_NORM, T, R)                 \
  MATVEC_ROPE_KV_ENTRY(matvec_rms_norm_rope_kv_##SUFFIX##_r##R, NORM, T, R)         \
  MATVEC_ROPE_KV_ENTRY(matvec_add_rms_norm_rope_kv_##SUFFIX##_r##R, ADD_NORM, T, R)
#define MATVEC(T, SUFFIX)        \
  MATVEC_ROWS(T, SUFFIX, 1)      \
  MATVEC_ROWS(T, SUFFIX, 2)      \
  MATVEC_ROWS(T, SUFFIX, 4)      \
  MATVEC_ROWS(T, SUFFIX, 8)      \
  MATVEC_NORM_ROWS(T, SUFFIX, 1) \
  MATVEC_NORM_ROWS(T, SUFFIX, 2)
// Half precision only: f32 models (the tiny test fixtures, dequantized GGUF) are not the ones
// whose decode speed matters, and each instance adds to the build.
MATVEC(__half, f16)
MATVEC(__nv_bfloat16, bf16)
