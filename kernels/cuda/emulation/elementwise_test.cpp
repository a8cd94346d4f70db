// The per-row and elementwise CUDA kernels on the CPU (warp_emulation.h) against plain
// references: RMSNorm alone and fused with the residual add (a block-wide reduction), RoPE in
// both pairings, every GLU activation (gpt-oss's clamped SwiGLU past its clamps), the KV
// scatter (a slot past the cache is skipped) and the row argmax (ties to the first index across
// threads, NaN passed over), and the fused RoPE + KV write of a joined q/k/v product;
// RoPE, GLU and the KV write also with input rows further apart than their length (members of a
// joined projection, read in place).
// Launch shapes as src/backend/cuda/launch.rs makes them. Exit status: failed checks.
#include "warp_emulation.h"

#include "../argmax.cu"
#include "../glu.cu"
#include "../kv_write.cu"
#include "../rms_norm.cu"
#include "../rope.cu"
#include "../rope_kv_write.cu"

#include <cmath>
#include <cstdio>
#include <random>

namespace {

int failures = 0;

void expect(const char* what, double err, double tol) {
  const bool ok = err <= tol;
  failures += !ok;
  std::printf("%s: max error %.2e %s\n", what, err, ok ? "ok" : "FAILED");
}

// launch::per_row: the row's items in whole warps, at most 1024 threads.
unsigned per_row_threads(int items) { return (std::min(items, 1024) + 31) / 32 * 32; }

std::vector<float> random(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

void rms_norm_checks() {
  const int rows = 3, cols = 100;  // 128 threads: the last warp is partly idle
  const auto x = random(rows * cols, 1), r = random(rows * cols, 2), w = random(cols, 3);
  std::vector<float> out(rows * cols), sum(rows * cols), out_fused(rows * cols);
  const float eps = 1e-6f;
  emulate_launch(rows, 1, per_row_threads(cols),
                 [&] { rms_norm_f32(x.data(), w.data(), out.data(), cols, eps); });
  emulate_launch(rows, 1, per_row_threads(cols), [&] {
    add_rms_norm_f32(x.data(), r.data(), w.data(), sum.data(), out_fused.data(), cols, eps);
  });
  double err = 0, err_fused = 0, err_sum = 0;
  for (int i = 0; i < rows; ++i) {
    double ss = 0, ss_fused = 0;
    for (int j = 0; j < cols; ++j) {
      ss += double(x[i * cols + j]) * x[i * cols + j];
      const double s = double(x[i * cols + j]) + r[i * cols + j];
      ss_fused += s * s;
      err_sum = std::max(err_sum, std::fabs(sum[i * cols + j] - s));
    }
    const double inv = 1.0 / std::sqrt(ss / cols + eps), inv_f = 1.0 / std::sqrt(ss_fused / cols + eps);
    for (int j = 0; j < cols; ++j) {
      const int k = i * cols + j;
      err = std::max(err, std::fabs(out[k] - x[k] * inv * w[j]));
      err_fused = std::max(err_fused, std::fabs(out_fused[k] - (double(x[k]) + r[k]) * inv_f * w[j]));
    }
  }
  expect("rms_norm f32", err, 1e-5);
  expect("add_rms_norm f32 (sum)", err_sum, 1e-6);
  expect("add_rms_norm f32 (normed)", err_fused, 1e-5);
}

// `rows` rows of `row` values, `stride` apart (the gaps hold a value no check expects).
std::vector<float> spread_rows(const std::vector<float>& dense, int rows, int row, int stride) {
  std::vector<float> out(size_t(rows) * stride, 1e6f);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < row; ++i) out[size_t(r) * stride + i] = dense[size_t(r) * row + i];
  return out;
}

void rope_checks() {
  const int tokens = 3, heads = 2, head_dim = 16, half = head_dim / 2, row = heads * head_dim;
  const auto x = random(tokens * row, 4);
  const std::vector<uint32_t> pos = {0, 7, 40000};
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i) inv_freq[i] = float(std::pow(10000.0, -2.0 * i / head_dim));
  const float mscale = 1.25f;
  for (int stride : {row, 3 * row + 16})
    for (int interleaved : {0, 1}) {
      const auto in = spread_rows(x, tokens, row, stride);
      std::vector<float> out(x.size());
      emulate_launch(tokens, 1, per_row_threads(heads * half), [&] {
        rope_f32(in.data(), out.data(), pos.data(), inv_freq.data(), heads, head_dim, stride,
                 interleaved, mscale);
      });
      double err = 0;
      for (int t = 0; t < tokens; ++t)
        for (int h = 0; h < heads; ++h)
          for (int i = 0; i < half; ++i) {
            const double angle = double(pos[t]) * double(inv_freq[i]);
            const double c = std::cos(angle) * mscale, s = std::sin(angle) * mscale;
            const size_t base = (size_t(t) * heads + h) * head_dim;
            const size_t lo = base + (interleaved ? 2 * i : i), hi = lo + (interleaved ? 1 : half);
            err = std::max(err, std::fabs(out[lo] - (x[lo] * c - x[hi] * s)));
            err = std::max(err, std::fabs(out[hi] - (x[hi] * c + x[lo] * s)));
          }
      char what[64];
      std::snprintf(what, sizeof what, "rope f32 %s, row stride %d", interleaved ? "interleaved" : "neox",
                    stride);
      expect(what, err, 1e-5);
    }
}

// One GLU entry point on gate and up values in [-amp, amp), contiguous and as the two halves of
// a joined [rows, 2 * cols] gate/up product, against `want(gate, up)` in double precision: the
// largest error relative to max(1, |want|).
template <typename Kernel, typename Want>
void glu_check(const char* name, Kernel kernel, Want want, float amp) {
  // 10 rows of 100: launch::elementwise gives 4 blocks of 256, the last one partly idle.
  const int rows = 10, cols = 100;
  const size_t n = size_t(rows) * cols;
  auto g = random(n, 5), u = random(n, 6);
  for (float& v : g) v *= amp / 2;
  for (float& v : u) v *= amp / 2;
  for (int stride : {cols, 2 * cols}) {
    std::vector<float> joined(size_t(rows) * 2 * cols);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        joined[size_t(r) * 2 * cols + c] = g[size_t(r) * cols + c];
        joined[size_t(r) * 2 * cols + cols + c] = u[size_t(r) * cols + c];
      }
    const float* gp = stride == cols ? g.data() : joined.data();
    const float* up = stride == cols ? u.data() : joined.data() + cols;
    std::vector<float> out(n);
    emulate_launch(4, 1, 256, [&] { kernel(gp, up, out.data(), n, cols, stride, stride); });
    double err = 0;
    for (size_t i = 0; i < n; ++i) {
      const double w = want(double(g[i]), double(u[i]));
      err = std::max(err, std::fabs(out[i] - w) / std::max(1.0, std::fabs(w)));
    }
    char what[96];
    std::snprintf(what, sizeof what, "%s f32, %s", name,
                  stride == cols ? "contiguous" : "halves of a joined product");
    expect(what, err, 1e-5);
  }
}

void glu_checks() {
  glu_check(
      "glu silu", glu_silu_f32, [](double g, double u) { return g / (1.0 + std::exp(-g)) * u; },
      2.0f);
  glu_check(
      "glu gelu_tanh", glu_gelu_tanh_f32,
      [](double g, double u) {
        return 0.5 * g * (1.0 + std::tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) * u;
      },
      2.0f);
  glu_check(
      "glu gelu_erf", glu_gelu_erf_f32,
      [](double g, double u) { return 0.5 * g * (1.0 + std::erf(g / std::sqrt(2.0))) * u; },
      4.0f);
  glu_check(
      "glu relu2", glu_relu2_f32, [](double g, double u) { return std::max(g, 0.0) * std::max(g, 0.0) * u; },
      4.0f);
  glu_check("glu relu", glu_relu_f32, [](double g, double u) { return std::max(g, 0.0) * u; }, 4.0f);
  // gpt-oss's clamped SwiGLU, on values past its clamp (gate above 7, up beyond ±7).
  glu_check(
      "glu swiglu_oai", glu_swiglu_oai_f32,
      [](double g, double u) {
        g = std::min(g, 7.0);
        u = std::clamp(u, -7.0, 7.0);
        return g / (1.0 + std::exp(-1.702 * g)) * (u + 1.0);
      },
      10.0f);
}

void kv_write_checks() {
  const int row = 40, num_slots = 6;
  const auto k = random(3 * row, 7), v = random(3 * row, 8);
  // Contiguous; then k contiguous (RoPE's output) and v read in place from a joined product.
  for (int v_stride : {row, 3 * row}) {
    const auto v_in = spread_rows(v, 3, row, v_stride);
    std::vector<float> kc(num_slots * row, -9.0f), vc(num_slots * row, -9.0f);
    const std::vector<uint32_t> slots = {4, 1, 99};  // the last one is past the cache
    emulate_launch(3, 1, per_row_threads(row), [&] {
      kv_write_f32(k.data(), v_in.data(), kc.data(), vc.data(), slots.data(), row, row, v_stride,
                   num_slots);
    });
    double err = 0;
    for (int s = 0; s < num_slots; ++s)
      for (int i = 0; i < row; ++i) {
        const int src = s == 4 ? 0 : s == 1 ? 1 : -1;
        const float want_k = src < 0 ? -9.0f : k[src * row + i];
        const float want_v = src < 0 ? -9.0f : v[src * row + i];
        err = std::max(err, double(std::fabs(kc[s * row + i] - want_k) + std::fabs(vc[s * row + i] - want_v)));
      }
    char what[80];
    std::snprintf(what, sizeof what, "kv_write f32 (slot past the cache skipped), v stride %d", v_stride);
    expect(what, err, 0.0);
  }
}

// RoPE of one head row (`head_dim` values at `x`) into `out`, in double precision.
void reference_rope(const float* x, float* out, int head_dim, double pos, const std::vector<float>& inv_freq,
                    int interleaved, float mscale) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const double angle = pos * double(inv_freq[i]);
    const double c = std::cos(angle) * mscale, s = std::sin(angle) * mscale;
    const int lo = interleaved ? 2 * i : i, hi = lo + (interleaved ? 1 : half);
    out[lo] = float(x[lo] * c - x[hi] * s);
    out[hi] = float(x[hi] * c + x[lo] * s);
  }
}

void rope_kv_write_checks() {
  // GQA (4 query heads, 2 KV heads) as views of a joined [tokens, (4 + 2 + 2) heads] product.
  const int tokens = 3, heads = 4, kv_heads = 2, head_dim = 16, num_slots = 6;
  const int row = (heads + 2 * kv_heads) * head_dim, kv_row = kv_heads * head_dim;
  const auto joined = random(size_t(tokens) * row, 10);
  const float* q = joined.data();
  const float* k = q + heads * head_dim;
  const float* v = k + kv_row;
  const std::vector<uint32_t> pos = {5, 6, 40000}, slots = {4, 1, 99};  // 99: past the cache
  std::vector<float> inv_freq(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) inv_freq[i] = float(std::pow(10000.0, -2.0 * i / head_dim));
  for (int interleaved : {0, 1}) {
    std::vector<float> q_out(size_t(tokens) * heads * head_dim), kc(num_slots * kv_row, -9.0f),
        vc(num_slots * kv_row, -9.0f);
    const int items = std::max((heads + kv_heads) * head_dim / 2, kv_row);
    emulate_launch(tokens, 1, per_row_threads(items), [&] {
      rope_kv_write_f32(q, k, v, q_out.data(), kc.data(), vc.data(), pos.data(), slots.data(),
                        inv_freq.data(), heads, kv_heads, head_dim, row, row, row, interleaved,
                        1.25f, num_slots);
    });
    double err = 0;
    std::vector<float> want(head_dim);
    for (int t = 0; t < tokens; ++t) {
      for (int h = 0; h < heads; ++h) {
        reference_rope(q + size_t(t) * row + h * head_dim, want.data(), head_dim, pos[t], inv_freq,
                       interleaved, 1.25f);
        for (int d = 0; d < head_dim; ++d)
          err = std::max(err, double(std::fabs(q_out[(size_t(t) * heads + h) * head_dim + d] - want[d])));
      }
    }
    for (int s = 0; s < num_slots; ++s) {
      const int t = s == 4 ? 0 : s == 1 ? 1 : -1;
      for (int h = 0; h < kv_heads; ++h) {
        if (t >= 0)
          reference_rope(k + size_t(t) * row + h * head_dim, want.data(), head_dim, pos[t], inv_freq,
                         interleaved, 1.25f);
        for (int d = 0; d < head_dim; ++d) {
          const int at = s * kv_row + h * head_dim + d;
          const float want_k = t < 0 ? -9.0f : want[d];
          const float want_v = t < 0 ? -9.0f : v[size_t(t) * row + h * head_dim + d];
          err = std::max(err, double(std::fabs(kc[at] - want_k) + std::fabs(vc[at] - want_v)));
        }
      }
    }
    expect(interleaved ? "rope_kv_write f32 interleaved (joined q/k/v, GQA)"
                       : "rope_kv_write f32 neox (joined q/k/v, GQA)",
           err, 1e-5);
  }
}

// candor_kernels::argmax: the first of equal values, NaN passed over, the last index if all NaN.
uint32_t reference_argmax(const float* row, int cols) {
  int best = 0;
  for (int i = 0; i < cols; ++i)
    if (row[i] > row[best] || row[best] != row[best]) best = i;
  return uint32_t(best);
}

void argmax_checks() {
  const float nan = std::nanf(""), inf = INFINITY;
  for (int cols : {300, 5000}) {  // 512 and 1024 threads (launch::per_row_pow2)
    const int rows = 5;
    auto x = random(size_t(rows) * cols, 9);
    float* r = x.data();
    // Row 0: the maximum twice; the later index belongs to a lower thread when cols > 1024.
    r[70] = r[cols > 1030 ? 1030 : cols - 1] = 9.0f;
    // Row 1: NaN where the maximum would be, and around it.
    r += cols;
    r[3] = 8.0f;
    r[5] = nan;
    r[cols - 1] = nan;
    r[0] = nan;
    // Row 2: all NaN. Row 3: all -inf. Row 4: only the last value is a number.
    r += cols;
    for (int i = 0; i < cols; ++i) r[i] = nan;
    r += cols;
    for (int i = 0; i < cols; ++i) r[i] = -inf;
    r += cols;
    for (int i = 0; i < cols; ++i) r[i] = i + 1 < cols ? nan : -1.0f;
    std::vector<uint32_t> out(rows, 12345);
    const unsigned threads = cols > 512 ? 1024 : 512;
    emulate_launch(rows, 1, threads, [&] { argmax_f32(x.data(), out.data(), cols); });
    int wrong = 0;
    for (int i = 0; i < rows; ++i) {
      const uint32_t want = reference_argmax(x.data() + size_t(i) * cols, cols);
      if (out[i] != want) {
        std::printf("  row %d: %u, want %u\n", i, out[i], want);
        ++wrong;
      }
    }
    char what[64];
    std::snprintf(what, sizeof what, "argmax f32, %d columns (rows wrong)", cols);
    expect(what, wrong, 0.0);
  }
}

}  // namespace

int main() {
  rms_norm_checks();
  rope_checks();
  glu_checks();
  kv_write_checks();
  argmax_checks();
  rope_kv_write_checks();
  std::printf("%s\n", failures == 0 ? "all checks pass" : "FAILURES");
  return failures;
}
