// The skinny decode product (matvec.cu) on CPU threads (warp_emulation.h) against a plain
// reference: every row count it takes (1 to 8, on the 1, 2, 4 and 8-row instances), both
// storage types, with and without a bias, x as it is, the GLU of two row sets (SiLU and GELU)
// or the RMSNorm of x (+ a residual, the sum written out; 1 and 2 rows), on shapes that leave the last warp's columns and the last 16-byte sweep of each row
// partly empty, rows long enough for whole trips of several sweeps before the last ones, and
// with input rows further apart than their length. Launch shape as launch::matvec makes it.
// Exit status: failed checks.
#include "warp_emulation.h"

#include "../matvec.cu"

#include <cmath>
#include <cstdio>
#include <random>

namespace {

int failures = 0;

template <typename T, int R, int In>
void launch(const T* w, const T* bias, int has_bias, const T* x, const T* up, const T* residual,
            const T* norm, T* sum_out, T* y, int rows, int n, int k, int x_stride, float eps) {
  const int warps = (n + MATVEC_COLUMNS - 1) / MATVEC_COLUMNS;
  emulate_launch((warps + MATVEC_WARPS - 1) / MATVEC_WARPS, 1, MATVEC_WARPS * 32, [&] {
    XRows<T, R, In> xs{x, up, residual, norm, nullptr, rows, k, x_stride, x_stride, {}};
    matvec_rows<T, R, In>(w, bias, has_bias, xs, y, n, eps, sum_out);
  });
}

// The instance launch::matvec picks: the next power of two of the rows.
template <typename T, int In, typename... Args> void run(int rows, Args... args) {
  if (rows == 1) return launch<T, 1, In>(args...);
  if (rows == 2) return launch<T, 2, In>(args...);
  if (rows <= 4) return launch<T, 4, In>(args...);
  launch<T, 8, In>(args...);
}

struct Shape {
  int rows, n, k, x_stride;
  bool bias;
};

template <typename T, int In>
void check(const char* type, const char* input, Shape s, unsigned seed, double tol) {
  constexpr bool norm = In == NORM || In == ADD_NORM;
  const float eps = 1e-5f;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  // Inputs in T; the reference reads the same rounded values. The gaps between rows hold a
  // value no check expects.
  std::vector<T> w(size_t(s.n) * s.k), b(s.n), g(s.k), res(size_t(s.rows) * s.k);
  std::vector<T> x(size_t(s.rows) * s.x_stride, from_f32<T>(1e4f)), up(x.size(), from_f32<T>(1e4f));
  for (auto& v : w) v = from_f32<T>(u(rng));
  for (auto& v : b) v = from_f32<T>(u(rng));
  for (auto& v : g) v = from_f32<T>(1.0f + 0.5f * u(rng));
  for (auto& v : res) v = from_f32<T>(u(rng));
  for (int r = 0; r < s.rows; ++r) {
    for (int i = 0; i < s.k; ++i) {
      x[size_t(r) * s.x_stride + i] = from_f32<T>(2 * u(rng));
      up[size_t(r) * s.x_stride + i] = from_f32<T>(u(rng));
    }
  }
  // Sentinels past the outputs: a store out of bounds shows.
  std::vector<T> y(size_t(s.rows) * s.n + 1, from_f32<T>(-7.0f));
  std::vector<T> sum(size_t(s.rows) * s.k + 1, from_f32<T>(-7.0f));
  run<T, In>(s.rows, w.data(), b.data(), int(s.bias), x.data(), up.data(), res.data(), g.data(),
             sum.data(), y.data(), s.rows, s.n, s.k, s.x_stride, eps);
  double err = 0, scale = 1;
  bool sums_ok = true;
  for (int r = 0; r < s.rows; ++r) {
    // The row as the product reads it.
    std::vector<double> xr(s.k);
    double ss = 0;
    for (int i = 0; i < s.k; ++i) {
      const size_t at = size_t(r) * s.x_stride + i;
      float xi = to_f32(x[at]);
      if (In == GLU_SILU || In == GLU_GELU) {
        const float a = In == GLU_SILU ? silu(xi) : gelu_tanh(xi);
        xi = to_f32(from_f32<T>(a * to_f32(up[at])));  // rounded as glu.cu leaves it
      }
      if (In == ADD_NORM) {
        const T sumi = from_f32<T>(xi + to_f32(res[size_t(r) * s.k + i]));  // as stored
        sums_ok &= to_f32(sum[size_t(r) * s.k + i]) == to_f32(sumi);
        xi = to_f32(sumi);
      }
      xr[i] = xi;
      ss += double(xi) * xi;
    }
    if (norm) {
      const double inv = 1.0 / std::sqrt(ss / s.k + eps);
      for (int i = 0; i < s.k; ++i) xr[i] *= inv * to_f32(g[i]);  // not rounded to T: see matvec.cu
    }
    for (int c = 0; c < s.n; ++c) {
      double ref = s.bias ? to_f32(b[c]) : 0.0;
      for (int i = 0; i < s.k; ++i) ref += double(to_f32(w[size_t(c) * s.k + i])) * xr[i];
      scale = std::max(scale, std::fabs(ref));
      err = std::max(err, std::fabs(to_f32(y[size_t(r) * s.n + c]) - ref));
    }
  }
  err /= scale;
  const bool sentinel = to_f32(y[size_t(s.rows) * s.n]) == -7.0f &&
                        to_f32(sum[size_t(s.rows) * s.k]) == -7.0f;
  const bool ok = err <= tol && sentinel && sums_ok;
  failures += !ok;
  std::printf("matvec %s %s rows %d n %d k %d stride %d bias %d: rel error %.2e%s%s %s\n", type,
              input, s.rows, s.n, s.k, s.x_stride, s.bias, err, sentinel ? "" : " (wrote past an output)",
              sums_ok ? "" : " (wrong sums)", ok ? "ok" : "FAILED");
}

template <typename T, int In> void checks(const char* type, const char* input, double tol) {
  unsigned seed = 1;
  // The RMSNorm inputs have instances for 1 and 2 rows only.
  const int max_rows = In == NORM || In == ADD_NORM ? 2 : 8;
  for (int rows = 1; rows <= max_rows; ++rows) {
    // 37 columns: the last warp's columns partly past n. k = 33 vectors: the last sweep of
    // 32 lanes has one busy lane. Rows one vector further apart than their length.
    check<T, In>(type, input, {rows, 37, 264, 272, rows % 2 == 1}, seed++, tol);
    // k = 8 sweeps of 32 lanes and a part: whole trips of 4 (and 2) sweeps, then the rest.
    check<T, In>(type, input, {rows, 5, 2056, 2056, rows % 2 == 0}, seed++, tol);
  }
  // One column, one vector per row; more columns than a block.
  check<T, In>(type, input, {1, 1, 8, 8, true}, seed++, tol);
  check<T, In>(type, input, {std::min(3, max_rows), 1, 8, 8, false}, seed++, tol);
  check<T, In>(type, input, {2, 300, 32, 64, true}, seed++, tol);
}

template <typename T> void all_inputs(const char* type, double tol) {
  checks<T, PLAIN>(type, "x", tol);
  checks<T, GLU_SILU>(type, "glu silu", tol);
  checks<T, GLU_GELU>(type, "glu gelu", tol);
  checks<T, NORM>(type, "rms_norm", tol);
  checks<T, ADD_NORM>(type, "add_rms_norm", tol);
}

}  // namespace

int main() {
  // Rounding of the output to the storage type: 2^-11 (f16), 2^-8 (bf16) of the largest value.
  all_inputs<__half>("f16", 2e-3);
  all_inputs<__nv_bfloat16>("bf16", 1e-2);
  std::printf("%d failed\n", failures);
  return failures != 0;
}
