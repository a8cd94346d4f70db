// Runs a CUDA kernel's source on CPU threads, so the logic of the tensor-core kernels (fragment
// layouts, masking, the online softmax) is tested where there is no GPU (CI, development
// machines): one std::thread per CUDA thread of a block, blocks in turn, __syncthreads as a
// barrier of the block, and the warp collectives the kernels use (__shfl_xor_sync, mma.sync)
// through per-warp exchange slots and barriers. `emulated_mma` rebuilds the whole A, B and C
// tiles from the 32 lanes' registers following the PTX ISA's fragment layouts of
// mma.m16n8k16 and multiplies them in f32, so a kernel that loads fragments the wrong way
// computes the wrong answer here as it would on the GPU.
//
// Include this first, then the .cu file, compiled as C++20 by the host compiler with the CUDA
// headers on the include path (scripts/test-cuda-emulated.sh). Speed is of no concern.
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

// Kernel qualifiers mean nothing on the host; `__shared__` variables become statics, shared by
// the threads of the one block that runs at a time.
#undef __shared__
#define __shared__ static
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __launch_bounds__
#define __launch_bounds__(x)
#define CANDOR_WARP_EMULATION 1

using std::max;
using std::min;
// Device math intrinsics the kernels use that the host library lacks.
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
// Rounded single operations (never fused into a multiply-add): the host compiles `a * b` so
// without FMA flags anyway.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }

struct EmulatedDim3 {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local EmulatedDim3 threadIdx, blockIdx;
inline EmulatedDim3 blockDim, gridDim;

namespace warp_emulation {
constexpr int MAX_WARPS = 32;
inline std::barrier<>* block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline float shfl_slot[MAX_WARPS][32];
inline uint32_t a_slot[MAX_WARPS][32][4], b_slot[MAX_WARPS][32][2];
inline float c_slot[MAX_WARPS][32][4];

inline void warp_sync() { warp_barriers[threadIdx.x / 32]->arrive_and_wait(); }

template <typename T> float element(uint32_t reg, int upper) {
  const uint16_t bits = upper ? uint16_t(reg >> 16) : uint16_t(reg & 0xffffu);
  T v;
  std::memcpy(&v, &bits, sizeof bits);
  return float(v);
}
}  // namespace warp_emulation

inline void __syncthreads() { warp_emulation::block_barrier->arrive_and_wait(); }

// Device-wide memory operations: blocks run one after another here, so ordering is given; the
// atomics and fences only have to be well-defined between a block's threads.
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  return std::atomic_ref<unsigned>(*p).fetch_add(v);
}
inline float __ldcg(const float* p) { return *p; }
// prmt.b32 in its default mode: byte i of the result is byte (s >> 4i) & 7 of y:x, or, where
// bit 3 of that selector is set, that byte's sign bit replicated.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t both = (uint64_t(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) {
    const unsigned sel = (s >> (4 * i)) & 0xfu;
    unsigned byte = unsigned(both >> (8 * (sel & 7u))) & 0xffu;
    if (sel & 8u) byte = (byte & 0x80u) ? 0xffu : 0u;
    r |= byte << (8 * i);
  }
  return r;
}
template <typename T> inline T __ldg(const T* p) { return *p; }

inline float __shfl_xor_sync(unsigned, float v, int mask) {
  using namespace warp_emulation;
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  shfl_slot[w][l] = v;
  warp_sync();
  const float r = shfl_slot[w][l ^ mask];
  warp_sync();
  return r;
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: c += A (16x16) * B (16x8), with g = lane / 4
// and q = lane % 4 and the lower half of each register the lower column:
//   A: a0 = (g, 2q..2q+1), a1 = (g+8, 2q..), a2 = (g, 2q+8..), a3 = (g+8, 2q+8..)
//   B: b0 = (k 2q..2q+1, n g), b1 = (k 2q+8..2q+9, n g)
//   C: c0, c1 = (g, 2q..2q+1), c2, c3 = (g+8, 2q..2q+1)
template <typename T> void emulated_mma(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  using namespace warp_emulation;
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  std::memcpy(a_slot[w][l], a, sizeof a_slot[w][l]);
  std::memcpy(b_slot[w][l], b, sizeof b_slot[w][l]);
  std::memcpy(c_slot[w][l], c, sizeof c_slot[w][l]);
  warp_sync();
  if (l == 0) {
    float A[16][16], B[16][8], C[16][8];
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane / 4, q = lane % 4;
      for (int e = 0; e < 2; ++e) {
        A[g][2 * q + e] = element<T>(a_slot[w][lane][0], e);
        A[g + 8][2 * q + e] = element<T>(a_slot[w][lane][1], e);
        A[g][2 * q + 8 + e] = element<T>(a_slot[w][lane][2], e);
        A[g + 8][2 * q + 8 + e] = element<T>(a_slot[w][lane][3], e);
        B[2 * q + e][g] = element<T>(b_slot[w][lane][0], e);
        B[2 * q + 8 + e][g] = element<T>(b_slot[w][lane][1], e);
        C[g][2 * q + e] = c_slot[w][lane][e];
        C[g + 8][2 * q + e] = c_slot[w][lane][2 + e];
      }
    }
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 8; ++j)
        for (int k = 0; k < 16; ++k) C[i][j] += A[i][k] * B[k][j];
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane / 4, q = lane % 4;
      for (int e = 0; e < 2; ++e) {
        c_slot[w][lane][e] = C[g][2 * q + e];
        c_slot[w][lane][2 + e] = C[g + 8][2 * q + e];
      }
    }
  }
  warp_sync();
  std::memcpy(c, c_slot[w][l], sizeof c_slot[w][l]);
  warp_sync();
}

// Run `kernel` over a (gx, gy, gz) grid of blocks of `threads` threads (a multiple of 32): the
// block's threads run together, one block after another.
inline void emulate_launch(unsigned gx, unsigned gy, unsigned threads,
                           const std::function<void()>& kernel, unsigned gz = 1) {
  using namespace warp_emulation;
  blockDim.x = threads;
  gridDim.x = gx;
  gridDim.y = gy;
  gridDim.z = gz;
  std::barrier<> block(threads);
  block_barrier = &block;
  warp_barriers.clear();
  for (unsigned w = 0; w < threads / 32; ++w)
    warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
  std::vector<std::thread> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      threadIdx.x = t;
      for (unsigned bz = 0; bz < gz; ++bz) {
        for (unsigned by = 0; by < gy; ++by) {
          for (unsigned bx = 0; bx < gx; ++bx) {
            blockIdx.x = bx;
            blockIdx.y = by;
            blockIdx.z = bz;
            kernel();
            block.arrive_and_wait();  // the block is done before the next reuses __shared__
          }
        }
      }
    });
  }
  for (auto& w : workers) w.join();
}
