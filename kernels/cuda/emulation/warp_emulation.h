// Runs a CUDA kernel's source on the CPU, so the logic of the tensor-core kernels (fragment
// layouts, masking, the online softmax) is tested where there is no GPU (CI, development
// machines): one fiber per CUDA thread of a block, blocks in turn, __syncthreads as a barrier
// of the block, and the warp collectives the kernels use (__shfl_xor_sync, mma.sync) through
// per-warp exchange slots and barriers. `emulated_mma` rebuilds the whole A, B and C tiles
// from the 32 lanes' registers following the PTX ISA's fragment layouts of mma.m16n8k16 and
// multiplies them in f32, so a kernel that loads fragments the wrong way computes the wrong
// answer here as it would on the GPU.
//
// Fibers, not OS threads: a barrier of 128 OS threads on a 2-core machine is a storm of futex
// wake-ups (the paged-attention test took five minutes, mostly in the kernel; 10 s now).
// Fibers switch in user space, in a fixed order, so a run is also the same every time. On
// x86-64 the switch is a few instructions of our own (below); elsewhere, or with
// -DCANDOR_FIBERS_UCONTEXT, glibc's ucontext does it.
//
// Include this first, then the .cu file, compiled as C++20 by the host compiler with the CUDA
// headers on the include path (scripts/test-cuda-emulated.sh).
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <ucontext.h>

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
// Set by the scheduler before it resumes a fiber: every read after a switch sees the running
// fiber's own index (the switch is an opaque call, so no read is kept across it).
inline EmulatedDim3 threadIdx, blockIdx;
inline EmulatedDim3 blockDim, gridDim;

namespace warp_emulation {
constexpr int MAX_WARPS = 32;
inline float shfl_slot[MAX_WARPS][32];
inline uint32_t a_slot[MAX_WARPS][32][4], b_slot[MAX_WARPS][32][2];
inline float c_slot[MAX_WARPS][32][4];

// A fiber's saved state: where its stack pointer was when it switched away.
#if defined(__x86_64__) && !defined(CANDOR_FIBERS_UCONTEXT)
// glibc's swapcontext saves the FPU environment and makes a sigprocmask system call on every
// switch, half of the emulation's time. On x86-64 a switch is six callee-saved registers and
// the stack pointer (System V ABI); the signal mask and FPU control words never change here.
struct Context {
  void* sp = nullptr;
};
extern "C" void candor_fiber_switch(void** save_sp, void* resume_sp);
asm(R"(
  .text
  .p2align 4
  .globl candor_fiber_switch
  .type candor_fiber_switch, @function
candor_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size candor_fiber_switch, .-candor_fiber_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
inline void switch_to(Context& from, Context& to) { candor_fiber_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};
inline void switch_to(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

// The fibers of the running block, the scheduler's context they yield to, and which one runs.
inline Context scheduler;
inline std::vector<Context> fibers;
inline std::vector<char> finished;
inline unsigned running = 0;
// Arrivals at any barrier: a full round of the fibers without one (and without a fiber
// finishing) is a deadlock, a barrier some threads never reach, reported instead of spinning.
inline uint64_t arrivals = 0;

inline void yield() { switch_to(fibers[running], scheduler); }

// A barrier of `expected` fibers: the last to arrive opens the next generation and runs on;
// the others yield until it has.
struct Barrier {
  unsigned expected = 0, arrived = 0;
  uint64_t generation = 0;
  void arrive_and_wait() {
    ++arrivals;
    const uint64_t mine = generation;
    if (++arrived == expected) {
      arrived = 0;
      ++generation;
      return;
    }
    while (generation == mine) yield();
  }
};
inline Barrier block_barrier;
inline std::vector<Barrier> warp_barriers;

inline void warp_sync() { warp_barriers[threadIdx.x / 32].arrive_and_wait(); }

template <typename T> float element(uint32_t reg, int upper) {
  const uint16_t bits = upper ? uint16_t(reg >> 16) : uint16_t(reg & 0xffffu);
  T v;
  std::memcpy(&v, &bits, sizeof bits);
  return float(v);
}
}  // namespace warp_emulation

inline void __syncthreads() { warp_emulation::block_barrier.arrive_and_wait(); }

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

namespace warp_emulation {
// Stack of each fiber: the kernels' per-thread arrays and emulated_mma's tiles are a few KiB;
// the pages are only touched as used.
constexpr size_t FIBER_STACK = 256 * 1024;
inline std::vector<std::unique_ptr<char[]>> stacks;
inline const std::function<void()>* launched = nullptr;

// A fiber's whole life: the kernel, then back to the scheduler for good.
[[noreturn]] inline void fiber_main() {
  (*launched)();
  finished[running] = 1;
  yield();
  std::abort();  // a finished fiber is never resumed
}

// A fresh fiber on `stack` that starts in fiber_main.
inline void start_fiber(Context& fiber, char* stack) {
#if defined(__x86_64__) && !defined(CANDOR_FIBERS_UCONTEXT)
  // The frame candor_fiber_switch pops: six registers, then fiber_main as the return address,
  // at a 16-byte boundary so fiber_main starts with the stack a call would leave.
  auto top = reinterpret_cast<uintptr_t>(stack + FIBER_STACK) & ~uintptr_t(15);
  auto* frame = reinterpret_cast<void**>(top - 16);
  frame[0] = reinterpret_cast<void*>(&fiber_main);
  frame[1] = nullptr;
  fiber.sp = frame - 6;
  std::memset(fiber.sp, 0, 6 * sizeof(void*));
#else
  if (getcontext(&fiber.uc) != 0) {
    std::perror("getcontext");
    std::abort();
  }
  fiber.uc.uc_stack.ss_sp = stack;
  fiber.uc.uc_stack.ss_size = FIBER_STACK;
  fiber.uc.uc_link = nullptr;
  makecontext(&fiber.uc, reinterpret_cast<void (*)()>(&fiber_main), 0);
#endif
}

// Run one block's fibers to the end, round-robin from the first.
inline void run_block(unsigned threads) {
  block_barrier = Barrier{threads};
  for (auto& w : warp_barriers) w = Barrier{32};
  for (unsigned t = 0; t < threads; ++t) {
    start_fiber(fibers[t], stacks[t].get());
    finished[t] = 0;
  }
  unsigned left = threads;
  while (left > 0) {
    const uint64_t before = arrivals;
    const unsigned left_before = left;
    for (unsigned t = 0; t < threads; ++t) {
      if (finished[t]) continue;
      running = t;
      threadIdx.x = t;
      switch_to(scheduler, fibers[t]);
      if (finished[t]) --left;
    }
    if (left > 0 && arrivals == before && left == left_before) {
      std::fprintf(stderr, "deadlock: %u threads wait at a barrier the others never reach\n",
                   left);
      std::abort();
    }
  }
}
}  // namespace warp_emulation

// Run `kernel` over a (gx, gy, gz) grid of blocks of `threads` threads (a multiple of 32): the
// block's threads run together, one block after another.
inline void emulate_launch(unsigned gx, unsigned gy, unsigned threads,
                           const std::function<void()>& kernel, unsigned gz = 1) {
  using namespace warp_emulation;
  blockDim.x = threads;
  gridDim.x = gx;
  gridDim.y = gy;
  gridDim.z = gz;
  while (stacks.size() < threads) stacks.push_back(std::make_unique<char[]>(FIBER_STACK));
  fibers.resize(threads);
  finished.resize(threads);
  warp_barriers.resize(threads / 32);
  launched = &kernel;
  for (unsigned bz = 0; bz < gz; ++bz) {
    for (unsigned by = 0; by < gy; ++by) {
      for (unsigned bx = 0; bx < gx; ++bx) {
        blockIdx.x = bx;
        blockIdx.y = by;
        blockIdx.z = bz;
        run_block(threads);
      }
    }
  }
}
