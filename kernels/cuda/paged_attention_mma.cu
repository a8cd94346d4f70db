// Prefill attention on tensor cores over the paged KV cache, for f16/bf16 caches and head_dim
// 64, 128 or 256: FlashAttention-2's schedule with `mma.sync.m16n8k16` (f32 accumulation).
//
// Why not the simple kernel (paged_attention.cu) for prompts: it spends one block per (token,
// head) and reads every key once per query row with CUDA-core FMAs; a 512-token prompt of an 8B
// model does ~70 GFLOP of attention, which at CUDA-core speed rivals the whole model's matmuls.
// Here a block takes a tile of query rows of one sequence and one head; each warp owns 16 rows.
// Keys and values come through shared memory a tile at a time (gathered through the block
// table, zero-filled past the last key), Q·Kᵀ and P·V run on tensor cores, and the online
// softmax stays in registers: the S accumulator fragment of two 8-key n-tiles is exactly the A
// fragment of the next 16-key P·V step, so P never leaves the registers.
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16"), with
// g = lane / 4 and q = lane % 4, two 16-bit elements per 32-bit register (lower column first):
//   A 16x16 row-major: a0 = (g, 2q..2q+1)  a1 = (g+8, 2q..)  a2 = (g, 2q+8..)  a3 = (g+8, 2q+8..)
//   B 16x8 (k x n):     b0 = (k 2q..2q+1, n g)                b1 = (k 2q+8..2q+9, n g)
//   C 16x8 f32:         c0,c1 = (g, 2q..2q+1)                 c2,c3 = (g+8, 2q..2q+1)
//
// Same batch metadata as the simple kernel (row_seq is not needed), plus `tiles`: one triple
// (sequence, first flattened row, rows) per block, packed by src/backend/cuda/block_table.rs.
// Masking is the CPU backend's: a query at position p sees keys p - window < j <= p (window 0:
// none); score = softcap * tanh(score / softcap) when softcap > 0. Sinks (gpt-oss; null: none):
// head h's logit sinks[h] joins each of its rows' softmax as a key with no value, so each row's
// online softmax starts from it (max = sink, sum = e^0 = 1). ALiBi (null: none): a row at
// position p adds alibi[h] * (j - p) to its capped score of key j, as the simple kernel does.
//
// kernels/cuda/emulation runs this source on the CPU against a reference (CI, no GPU).
#include "common.cuh"

namespace {

template <typename T> struct Tc;

// Tc<T>: the tensor-core product for storage type T (PTX type name PTX) and the packing of two
// f32 values into one register of T (lower half first), through T's paired type PAIR.
#ifdef CANDOR_WARP_EMULATION  // on the CPU (kernels/cuda/emulation)
#define CANDOR_MMA_BODY(T, PTX) emulated_mma<T>(c, a, b);
#else
#define CANDOR_MMA_BODY(T, PTX)                                                          \
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." PTX "." PTX ".f32 "              \
               "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                          \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
#define CANDOR_TENSOR_CORE_TYPE(T, PTX, PAIR, PACK2)                                      \
  template <> struct Tc<T> {                                                              \
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4],           \
                                               const uint32_t b[2]) {                     \
      CANDOR_MMA_BODY(T, PTX)                                                             \
    }                                                                                     \
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {                 \
      PAIR v = PACK2(lo, hi);                                                             \
      return *reinterpret_cast<uint32_t*>(&v);                                            \
    }                                                                                     \
  };
CANDOR_TENSOR_CORE_TYPE(__nv_bfloat16, "bf16", __nv_bfloat162, __floats2bfloat162_rn)
CANDOR_TENSOR_CORE_TYPE(__half, "f16", __half2, __floats2half2_rn)

// Two adjacent 16-bit elements as one register (the address is 4-byte aligned: even offsets).
template <typename T> __device__ __forceinline__ uint32_t pair(const T* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Two elements of different rows as one register, `lo` in the lower half.
template <typename T> __device__ __forceinline__ uint32_t pair_of(T lo, T hi) {
  const uint32_t l = *reinterpret_cast<const uint16_t*>(&lo);
  const uint32_t h = *reinterpret_cast<const uint16_t*>(&hi);
  return l | (h << 16);
}

// Rows of `D` elements in shared memory are padded by 8 elements (16 bytes) so the 8 rows a
// fragment load touches fall in different banks.
template <int D> constexpr int kPadded = D + 8;

// Copy `rows` rows of D elements into shared memory (row stride kPadded<D>), 16 bytes per
// thread per step; `src(r)` is row r's global address or nullptr for a row of zeros.
template <typename T, int D, typename Src>
__device__ __forceinline__ void load_rows(T* dst, int rows, Src src) {
  constexpr int CHUNKS = D / 8;  // 16-byte chunks per row
  for (int i = threadIdx.x; i < rows * CHUNKS; i += blockDim.x) {
    const int r = i / CHUNKS, c = i % CHUNKS;
    const T* s = src(r);
    uint4 v = make_uint4(0, 0, 0, 0);
    if (s != nullptr) v = *reinterpret_cast<const uint4*>(s + c * 8);
    *reinterpret_cast<uint4*>(dst + r * kPadded<D> + c * 8) = v;
  }
}

// BQ query rows (BQ / 16 warps) by BK keys per step.
template <typename T, int D, int BQ, int BK>
__device__ void attend_mma(const T* __restrict__ q, const T* __restrict__ k_cache,
                           const T* __restrict__ v_cache, T* __restrict__ out,
                           const uint32_t* __restrict__ seq_meta,
                           const uint32_t* __restrict__ tables,
                           const uint32_t* __restrict__ tiles, int heads, int kv_heads,
                           int block_size, float scale, int window, float softcap,
                           const float* __restrict__ sinks, const float* __restrict__ alibi) {
  static_assert(D % 16 == 0 && BK % 16 == 0 && BQ % 16 == 0, "mma tile multiples");
  __shared__ __align__(16) T qs[BQ * kPadded<D>];
  __shared__ __align__(16) T ks[BK * kPadded<D>];
  __shared__ __align__(16) T vs[BK * kPadded<D>];

  const int h = blockIdx.y;
  const uint32_t* tile = tiles + 3 * blockIdx.x;
  const int s = (int)tile[0], row0 = (int)tile[1], rows = (int)tile[2];
  const int q_start = (int)seq_meta[3 * s], start_pos = (int)seq_meta[3 * s + 1];
  const uint32_t* table = tables + seq_meta[3 * s + 2];
  const int kvh = h / (heads / kv_heads);
  const int pos0 = start_pos + (row0 - q_start);  // position of the tile's first row
  const int pos_last = pos0 + rows - 1;
  const int key_first = window > 0 ? max(0, pos0 + 1 - window) : 0;

  load_rows<T, D>(qs, BQ, [&](int r) -> const T* {
    return r < rows ? q + ((size_t)(row0 + r) * heads + h) * D : nullptr;
  });

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, qd = lane % 4;
  const int wr = warp * 16;  // the warp's first row in the tile
  // Positions of this thread's two rows (g and g + 8 of the warp); rows past the tile are
  // masked entirely.
  const int my_row[2] = {wr + g, wr + g + 8};
  int my_pos[2];
  bool my_valid[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    my_valid[i] = my_row[i] < rows;
    my_pos[i] = pos0 + my_row[i];
  }
  const int warp_pos_max = pos0 + min(wr + 15, rows - 1);
  const int warp_key_min = window > 0 ? max(0, pos0 + wr + 1 - window) : 0;

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  // This thread's share of each row's sum (quad-reduced at the end): the sink's term, e^0 at
  // the sink's own max, is one share's only, so it counts once per row.
  const float sink = sinks != nullptr ? sinks[h] : -INFINITY;
  const float sink_share = sink > -INFINITY && qd == 0 ? 1.0f : 0.0f;
  float m[2] = {sink, sink};
  float l[2] = {sink_share, sink_share};
  // The head's ALiBi slope; 0 without ALiBi, a bias of 0 that leaves the scores as they are.
  const float slope = alibi != nullptr ? alibi[h] : 0.0f;

  for (int base = key_first; base <= pos_last; base += BK) {
    __syncthreads();  // the previous step's K/V reads are done (and Q is loaded, first time)
    auto key_row = [&](const T* cache) {
      return [=](int r) -> const T* {
        const int key = base + r;
        if (key > pos_last) return nullptr;
        const size_t slot = (size_t)table[key / block_size] * block_size + key % block_size;
        return cache + (slot * kv_heads + kvh) * D;
      };
    };
    load_rows<T, D>(ks, BK, key_row(k_cache));
    load_rows<T, D>(vs, BK, key_row(v_cache));
    __syncthreads();

    // A warp whose rows see none of these keys skips the arithmetic (causal and window edges).
    if (wr >= rows || base > warp_pos_max || base + BK - 1 < warp_key_min) continue;

    // S = Q Kᵀ for the warp's 16 rows and BK keys.
    float sc[BK / 8][4];
#pragma unroll
    for (int n = 0; n < BK / 8; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const T* qa = qs + (wr + g) * kPadded<D> + kk * 16 + 2 * qd;
      const uint32_t a[4] = {pair(qa), pair(qa + 8 * kPadded<D>), pair(qa + 8),
                             pair(qa + 8 * kPadded<D> + 8)};
#pragma unroll
      for (int n = 0; n < BK / 8; ++n) {
        const T* kb = ks + (n * 8 + g) * kPadded<D> + kk * 16 + 2 * qd;
        const uint32_t b[2] = {pair(kb), pair(kb + 8)};
        Tc<T>::mma(sc[n], a, b);
      }
    }

    // Scale, softcap, ALiBi, mask; the rows' new maxima over the quad that shares them.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < BK / 8; ++n) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int i = c / 2;
        const int key = base + n * 8 + 2 * qd + (c % 2);
        float v = sc[n][c] * scale;
        if (softcap > 0.0f) v = softcap * tanhf(v / softcap);
        // ALiBi after the cap, the distance (<= 0 where visible) an exact integer: the bias the
        // simple kernel and the CPU backend add.
        v += slope * (float)(key - my_pos[i]);
        const bool visible = my_valid[i] && key <= my_pos[i] &&
                             (window <= 0 || key > my_pos[i] - window);
        v = visible ? v : -INFINITY;
        sc[n][c] = v;
        tile_max[i] = fmaxf(tile_max[i], v);
      }
    }
    float corr[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      tile_max[i] = fmaxf(tile_max[i], __shfl_xor_sync(0xffffffffu, tile_max[i], 1));
      tile_max[i] = fmaxf(tile_max[i], __shfl_xor_sync(0xffffffffu, tile_max[i], 2));
      const float m_new = fmaxf(m[i], tile_max[i]);
      // A row that has seen no visible key (nor a sink) keeps m = -inf: nothing to rescale,
      // p = 0.
      corr[i] = m_new == -INFINITY ? 1.0f : expf(m[i] - m_new);
      m[i] = m_new;
      l[i] *= corr[i];
    }
#pragma unroll
    for (int n = 0; n < BK / 8; ++n) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int i = c / 2;
        const float p = sc[n][c] == -INFINITY ? 0.0f : expf(sc[n][c] - m[i]);
        sc[n][c] = p;
        l[i] += p;
      }
    }
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      o[n][0] *= corr[0];
      o[n][1] *= corr[0];
      o[n][2] *= corr[1];
      o[n][3] *= corr[1];
    }

    // O += P V, 16 keys per step: P's A fragment is two S n-tiles, rounded to T.
#pragma unroll
    for (int j = 0; j < BK / 16; ++j) {
      const uint32_t a[4] = {Tc<T>::pack(sc[2 * j][0], sc[2 * j][1]),
                             Tc<T>::pack(sc[2 * j][2], sc[2 * j][3]),
                             Tc<T>::pack(sc[2 * j + 1][0], sc[2 * j + 1][1]),
                             Tc<T>::pack(sc[2 * j + 1][2], sc[2 * j + 1][3])};
      const T* v0 = vs + (j * 16 + 2 * qd) * kPadded<D> + g;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        const T* vn = v0 + n * 8;
        const uint32_t b[2] = {pair_of(vn[0], vn[kPadded<D>]),
                               pair_of(vn[8 * kPadded<D>], vn[9 * kPadded<D>])};
        Tc<T>::mma(o[n], a, b);
      }
    }
  }

  // Each row's sum over its quad, then O / l.
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!my_valid[i]) continue;
    const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
    T* dst = out + ((size_t)(row0 + my_row[i]) * heads + h) * D + 2 * qd;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      *reinterpret_cast<uint32_t*>(dst + n * 8) =
          Tc<T>::pack(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
    }
  }
}

}  // namespace

// Entry points per storage type and head size; the host picks BQ/BK to match
// (launch.rs, `mma_attention_tile`): (64, 64) for head_dim 64, (64, 32) for 128, (32, 16) for
// 256, which keeps the three shared tiles under the 48 KiB of static shared memory. `sinks` and
// `alibi` are each null or `heads` floats.
#define PAGED_ATTENTION_MMA(T, SUFFIX, D, BQ, BK)                                               \
  extern "C" __global__ void __launch_bounds__(BQ * 2)                                          \
      paged_attention_mma_##SUFFIX##_d##D(                                                      \
          const T* q, const T* k_cache, const T* v_cache, T* out, const uint32_t* seq_meta,    \
          const uint32_t* tables, const uint32_t* tiles, int heads, int kv_heads,             \
          int block_size, float scale, int window, float softcap, const float* sinks,           \
          const float* alibi) {                                                                 \
    attend_mma<T, D, BQ, BK>(q, k_cache, v_cache, out, seq_meta, tables, tiles, heads,         \
                             kv_heads, block_size, scale, window, softcap, sinks, alibi);       \
  }

PAGED_ATTENTION_MMA(__half, f16, 64, 64, 64)
PAGED_ATTENTION_MMA(__half, f16, 128, 64, 32)
PAGED_ATTENTION_MMA(__half, f16, 256, 32, 16)
PAGED_ATTENTION_MMA(__nv_bfloat16, bf16, 64, 64, 64)
PAGED_ATTENTION_MMA(__nv_bfloat16, bf16, 128, 64, 32)
PAGED_ATTENTION_MMA(__nv_bfloat16, bf16, 256, 32, 16)
