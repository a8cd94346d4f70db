// The skinny decode product (matvec.cu) on the CPU (warp_emulation.h) against a plain
// reference: every row count it takes (1 to 8, on the 1, 2, 4 and 8-row instances), both storage
// types, with and without a bias, x as it is, the GLU of two row sets (SiLU, GELU and gpt-oss's
// clamped SwiGLU, past its clamps) or the RMSNorm of x (+ a residual, the sum written out; 1 and 2
// rows), on shapes that leave the last warp's columns and the last 16-byte sweep of each row partly
// empty, rows long enough for whole trips of several sweeps before the last ones, and with input
// rows further apart than their length. Launch shape as launch::matvec makes it.
// The q/k/v product finished by RoPE and the KV write (RopeKvOut) against the product then
// rope_kv_write.cu, bit for bit. Exit status: failed checks.
#include "warp_emulation.h"

#include "../matvec.cu"
#include "../rope_kv_write.cu"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

namespace {

int failures = 0;

// What a product reads (the pointers its entry points take).
template <typename T> struct Inputs {
  const T *w, *bias;
  int has_bias;
  const T *x, *up, *residual, *norm;
  T* sum_out;
  int rows, k, x_stride;
  float eps;
};

// One launch as launch::matvec shapes it: a warp per pair of the `n` columns, MATVEC_WARPS
// warps a block; the instance it picks: the next power of two of the rows.
template <typename T, int In, typename Out> void run(const Inputs<T>& a, const Out& out, int n) {
  const int warps = (n + MATVEC_COLUMNS - 1) / MATVEC_COLUMNS;
  auto launch = [&]<int R>() {
    emulate_launch((warps + MATVEC_WARPS - 1) / MATVEC_WARPS, 1, MATVEC_WARPS * 32, [&] {
      XRows<T, R, In> xs{a.x, a.up, a.residual, a.norm, nullptr, a.rows, a.k, a.x_stride,
                         a.x_stride, {}};
      matvec_rows<T, R, In>(a.w, a.bias, a.has_bias, xs, out, a.eps, a.sum_out);
    });
  };
  if (a.rows == 1) return launch.template operator()<1>();
  if (a.rows == 2) return launch.template operator()<2>();
  if (a.rows <= 4) return launch.template operator()<4>();
  launch.template operator()<8>();
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
  // The clamped SwiGLU's gate and up also past its clamp (±7).
  const float amp = In == GLU_SWIGLU_OAI ? 10.0f : 1.0f;
  for (int r = 0; r < s.rows; ++r) {
    for (int i = 0; i < s.k; ++i) {
      x[size_t(r) * s.x_stride + i] = from_f32<T>(2 * amp * u(rng));
      up[size_t(r) * s.x_stride + i] = from_f32<T>(amp * u(rng));
    }
  }
  // Sentinels past the outputs: a store out of bounds shows.
  std::vector<T> y(size_t(s.rows) * s.n + 1, from_f32<T>(-7.0f));
  std::vector<T> sum(size_t(s.rows) * s.k + 1, from_f32<T>(-7.0f));
  const Inputs<T> in{w.data(),   b.data(), int(s.bias), x.data(), up.data(),  res.data(),
                     g.data(),   sum.data(), s.rows,    s.k,      s.x_stride, eps};
  run<T, In>(in, RowsOut<T>{y.data(), s.n}, s.n);
  double err = 0, scale = 1;
  bool sums_ok = true;
  for (int r = 0; r < s.rows; ++r) {
    // The row as the product reads it.
    std::vector<double> xr(s.k);
    double ss = 0;
    for (int i = 0; i < s.k; ++i) {
      const size_t at = size_t(r) * s.x_stride + i;
      float xi = to_f32(x[at]);
      if (In == GLU_SILU || In == GLU_GELU || In == GLU_GELU_ERF) {
        const float a = In == GLU_SILU ? silu(xi) : In == GLU_GELU ? gelu_tanh(xi) : gelu_erf(xi);
        xi = to_f32(from_f32<T>(a * to_f32(up[at])));  // rounded as glu.cu leaves it
      }
      if (In == GLU_RELU2) {
        const float r = std::max(xi, 0.0f);
        xi = to_f32(from_f32<T>(r * r * to_f32(up[at])));
      }
      if (In == GLU_RELU) xi = to_f32(from_f32<T>(std::max(xi, 0.0f) * to_f32(up[at])));
      if (In == GLU_SWIGLU_OAI) xi = to_f32(from_f32<T>(swiglu_oai(xi, to_f32(up[at]))));
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

// A joined q/k/v product's shape: `heads` q heads, `kv_heads` k and v heads.
struct QkvShape {
  int rows, heads, kv_heads, head_dim, k;
  bool bias;
  int interleaved;
};

template <typename T> bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// The product finished by RoPE and the KV write (RopeKvOut) against the product (RowsOut) then
// rope_kv_write.cu on its output: the same bits in q, both caches and the residual sums. The
// rows' slots are scattered, and with 2+ rows the last one's is past the cache (nothing
// written, though the buffers extend past `num_slots` so that a store there would show).
template <typename T, int In> void check_rope_kv(const char* type, const char* input, QkvShape s,
                                                 unsigned seed) {
  const int q_width = s.heads * s.head_dim, kv_width = s.kv_heads * s.head_dim;
  const int n = q_width + 2 * kv_width, num_slots = 2 * s.rows + 1;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto random = [&](size_t len, float shift) {
    std::vector<T> v(len);
    for (auto& e : v) e = from_f32<T>(shift + u(rng));
    return v;
  };
  const auto w = random(size_t(n) * s.k, 0), b = random(n, 0), g = random(s.k, 1);
  const auto x = random(size_t(s.rows) * s.k, 0), res = random(size_t(s.rows) * s.k, 0);
  std::vector<uint32_t> positions(s.rows), slots(s.rows);
  for (int r = 0; r < s.rows; ++r) {
    positions[r] = 100000 + 37 * r;  // angles far past 2π: the f64 angle matters
    slots[r] = (2 * r + 1) % num_slots;
  }
  if (s.rows > 1) slots.back() = num_slots + 1;
  std::vector<float> inv_freq(s.head_dim / 2);
  for (size_t i = 0; i < inv_freq.size(); ++i)
    inv_freq[i] = float(std::pow(10000.0, -2.0 * i / s.head_dim));
  const float mscale = 1.25f, eps = 1e-5f;
  const T sentinel = from_f32<T>(-7.0f);
  // Reference: the product's rows, then rope_kv_write.cu reading them as views.
  std::vector<T> y(size_t(s.rows) * n), sum_ref(size_t(s.rows) * s.k + 1, sentinel);
  std::vector<T> q_ref(size_t(s.rows) * q_width + 1, sentinel);
  std::vector<T> kc_ref(size_t(num_slots + 2) * kv_width, sentinel), vc_ref = kc_ref;
  const Inputs<T> ref_in{w.data(), b.data(),   int(s.bias), x.data(), x.data(), res.data(),
                         g.data(), sum_ref.data(), s.rows,  s.k,      s.k,      eps};
  run<T, In>(ref_in, RowsOut<T>{y.data(), n}, n);
  emulate_launch(s.rows, 1, 128, [&] {
    rope_kv_write_token<T>(y.data(), y.data() + q_width, y.data() + q_width + kv_width,
                           q_ref.data(), kc_ref.data(), vc_ref.data(), positions.data(),
                           slots.data(), inv_freq.data(), s.heads, s.kv_heads, s.head_dim, n, n,
                           n, s.interleaved, mscale, num_slots);
  });
  // Fused.
  std::vector<T> sum(sum_ref.size(), sentinel), q(q_ref.size(), sentinel);
  std::vector<T> kc(kc_ref.size(), sentinel), vc(vc_ref.size(), sentinel);
  const Inputs<T> in{w.data(), b.data(),   int(s.bias), x.data(), x.data(), res.data(),
                     g.data(), sum.data(), s.rows,      s.k,      s.k,      eps};
  const RopeKvOut<T> out{q.data(), kc.data(),     vc.data(), positions.data(), slots.data(),
                         inv_freq.data(), q_width, kv_width, s.head_dim, s.interleaved, mscale,
                         uint32_t(num_slots)};
  run<T, In>(in, out, n);
  const bool q_ok = same_bits(q, q_ref), k_ok = same_bits(kc, kc_ref), v_ok = same_bits(vc, vc_ref);
  const bool sums_ok = same_bits(sum, sum_ref);
  const bool ok = q_ok && k_ok && v_ok && sums_ok;
  failures += !ok;
  std::printf("matvec rope_kv %s %s %s rows %d heads %d/%d head_dim %d k %d bias %d: q %s, k cache %s, v cache %s, sums %s %s\n",
              type, input, s.interleaved ? "interleaved" : "neox", s.rows, s.heads, s.kv_heads,
              s.head_dim, s.k, s.bias, q_ok ? "same" : "DIFFER", k_ok ? "same" : "DIFFER",
              v_ok ? "same" : "DIFFER", sums_ok ? "same" : "DIFFER", ok ? "ok" : "FAILED");
}

template <typename T, int In> void rope_kv_checks(const char* type, const char* input) {
  unsigned seed = 100;
  const int max_rows = In == NORM || In == ADD_NORM ? 2 : 8;
  for (int interleaved : {0, 1}) {
    for (int rows = 1; rows <= max_rows; ++rows)
      check_rope_kv<T, In>(type, input, {rows, 4, 2, 16, 264, rows % 2 == 1, interleaved}, seed++);
    // Heads of 128 (the 8B's) on rows of whole trips of sweeps.
    check_rope_kv<T, In>(type, input, {max_rows, 2, 1, 128, 2056, true, interleaved}, seed++);
  }
}

template <typename T> void all_inputs(const char* type, double tol) {
  checks<T, PLAIN>(type, "x", tol);
  checks<T, GLU_SILU>(type, "glu silu", tol);
  checks<T, GLU_GELU>(type, "glu gelu", tol);
  checks<T, GLU_SWIGLU_OAI>(type, "glu swiglu_oai", tol);
  checks<T, GLU_GELU_ERF>(type, "glu gelu_erf", tol);
  checks<T, GLU_RELU2>(type, "glu relu2", tol);
  checks<T, GLU_RELU>(type, "glu relu", tol);
  checks<T, NORM>(type, "rms_norm", tol);
  checks<T, ADD_NORM>(type, "add_rms_norm", tol);
  rope_kv_checks<T, PLAIN>(type, "x");
  rope_kv_checks<T, NORM>(type, "rms_norm");
  rope_kv_checks<T, ADD_NORM>(type, "add_rms_norm");
}

}  // namespace

int main() {
  // Rounding of the output to the storage type: 2^-11 (f16), 2^-8 (bf16) of the largest value.
  all_inputs<__half>("f16", 2e-3);
  all_inputs<__nv_bfloat16>("bf16", 1e-2);
  std::printf("%d failed\n", failures);
  return failures != 0;
}
