// The skinny decode product (matvec.cu) on CPU threads (warp_emulation.h) against a plain
// reference: every row count it is instantiated for (1 to 8), each storage type, with and
// without a bias, on shapes that leave the last warp's columns and the last 16-byte sweep of
// each row partly empty, and with x rows further apart than their length. Launch shape as
// launch::matvec makes it. Exit status: failed checks.
#include "warp_emulation.h"

#include "../matvec.cu"

#include <cmath>
#include <cstdio>
#include <random>

namespace {

int failures = 0;

template <typename T> T from_float(float v) { return from_f32<T>(v); }

template <typename T> struct Case {
  int rows, n, k, x_stride;
  bool bias;
};

template <typename T, int R>
void launch(const T* w, const T* bias, int has_bias, const T* x, T* y, int n, int k,
            int x_stride) {
  constexpr int C = R <= 2 ? 2 : 4;
  const int warps = (n + C - 1) / C;
  emulate_launch((warps + MATVEC_WARPS - 1) / MATVEC_WARPS, 1, MATVEC_WARPS * 32,
                 [&] { matvec_rows<T, R>(w, bias, has_bias, x, y, n, k, x_stride); });
}

template <typename T>
void run(int rows, const T* w, const T* bias, int has_bias, const T* x, T* y, int n, int k,
         int x_stride) {
  switch (rows) {
    case 1: return launch<T, 1>(w, bias, has_bias, x, y, n, k, x_stride);
    case 2: return launch<T, 2>(w, bias, has_bias, x, y, n, k, x_stride);
    case 3: return launch<T, 3>(w, bias, has_bias, x, y, n, k, x_stride);
    case 4: return launch<T, 4>(w, bias, has_bias, x, y, n, k, x_stride);
    case 5: return launch<T, 5>(w, bias, has_bias, x, y, n, k, x_stride);
    case 6: return launch<T, 6>(w, bias, has_bias, x, y, n, k, x_stride);
    case 7: return launch<T, 7>(w, bias, has_bias, x, y, n, k, x_stride);
    default: return launch<T, 8>(w, bias, has_bias, x, y, n, k, x_stride);
  }
}

template <typename T> void check(const char* type, int rows, int n, int k, int x_stride, bool bias,
                                 unsigned seed, double tol) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  // Inputs in T; the reference reads the same rounded values.
  std::vector<T> w(size_t(n) * k), b(n), x(size_t(rows) * x_stride, from_float<T>(1e4f));
  for (auto& v : w) v = from_float<T>(u(rng));
  for (auto& v : b) v = from_float<T>(u(rng));
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < k; ++i) x[size_t(r) * x_stride + i] = from_float<T>(u(rng));
  // A sentinel past the output: a store out of bounds shows.
  std::vector<T> y(size_t(rows) * n + 1, from_float<T>(-7.0f));
  run<T>(rows, w.data(), b.data(), bias, x.data(), y.data(), n, k, x_stride);
  double err = 0, scale = 1;
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < n; ++c) {
      double ref = bias ? to_f32(b[c]) : 0.0;
      for (int i = 0; i < k; ++i)
        ref += double(to_f32(w[size_t(c) * k + i])) * to_f32(x[size_t(r) * x_stride + i]);
      scale = std::max(scale, std::fabs(ref));
      err = std::max(err, std::fabs(to_f32(y[size_t(r) * n + c]) - ref));
    }
  }
  err /= scale;
  const bool sentinel = to_f32(y[size_t(rows) * n]) == -7.0f;
  const bool ok = err <= tol && sentinel;
  failures += !ok;
  std::printf("matvec %s rows %d n %d k %d stride %d bias %d: rel error %.2e%s %s\n", type, rows,
              n, k, x_stride, bias, err, sentinel ? "" : " (wrote past y)", ok ? "ok" : "FAILED");
}

template <typename T> void checks(const char* type, int vec, double tol) {
  unsigned seed = 1;
  for (int rows = 1; rows <= 8; ++rows) {
    // 37 columns: the last warp's columns partly past n. k = 33 vectors: the last sweep of
    // 32 lanes has one busy lane. x rows one vector further apart than their length.
    const int k = 33 * vec;
    check<T>(type, rows, 37, k, k + vec, rows % 2 == 1, seed++, tol);
  }
  // One column, one vector per row, both with and without a bias; more columns than a block.
  check<T>(type, 1, 1, vec, vec, true, seed++, tol);
  check<T>(type, 3, 1, vec, vec, false, seed++, tol);
  check<T>(type, 2, 300, 4 * vec, 4 * vec, true, seed++, tol);
}

}  // namespace

int main() {
  checks<float>("f32", 4, 1e-5);
  // Rounding of the output to the storage type: 2^-11 (f16), 2^-8 (bf16) of the largest value.
  checks<__half>("f16", 8, 2e-3);
  checks<__nv_bfloat16>("bf16", 8, 1e-2);
  std::printf("%d failed\n", failures);
  return failures != 0;
}
