// The MXFP4 kernels (mxfp4.cu) on the CPU (warp_emulation.h) against a plain reference that
// reads the file's blocks (scale byte, then 16 code bytes) with a lookup table and ldexp: the
// product of 1 to 8 rows on the 1, 2, 4 and 8-row instances, f32, f16 and bf16, with and without
// a bias, on shapes that leave the last warp's columns partly past n and lanes without a block,
// rows of x further apart than their length, every code, and scales from the subnormal
// halves of e = 0 and 1 to 2^8; and the weight expanded to each dtype, bit for bit. The repack is
// mxfp4::codes_then_scales (models/src/weights/mxfp4.rs): codes of every block, then the scales.
// Exit status: failed checks.
#include "warp_emulation.h"

#include "../mxfp4.cu"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

namespace {

int failures = 0;

constexpr int DOUBLED[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// Element i of a file block: code nibble i of the 16 bytes (low nibbles first), times 2^(e-128).
double reference_value(const uint8_t* block, int i) {
  const uint8_t byte = block[1 + i % 16];
  const int code = i < 16 ? byte & 0x0f : byte >> 4;
  return std::ldexp(double(DOUBLED[code]), int(block[0]) - 128);
}

// n rows of k/32 random file blocks; scales mostly near 2^0, some the subnormal halves (e = 0,
// 1), some large (e = 136: values to 3072, sums still within f16).
std::vector<uint8_t> random_blocks(int n, int k, std::mt19937& rng) {
  std::vector<uint8_t> b(size_t(n) * k / 32 * 17);
  std::uniform_int_distribution<int> byte(0, 255), scale(118, 132), pick(0, 19);
  for (size_t i = 0; i < b.size(); i += 17) {
    const int p = pick(rng);
    b[i] = uint8_t(p == 0 ? 0 : p == 1 ? 1 : p == 2 ? 136 : scale(rng));
    for (int j = 1; j < 17; ++j) b[i + j] = uint8_t(byte(rng));
  }
  return b;
}

// The device layout: every block's 16 codes, then every scale.
std::vector<uint8_t> repack(const std::vector<uint8_t>& file) {
  const size_t blocks = file.size() / 17;
  std::vector<uint8_t> out(blocks * 17);
  for (size_t i = 0; i < blocks; ++i) {
    std::memcpy(&out[i * 16], &file[i * 17 + 1], 16);
    out[blocks * 16 + i] = file[i * 17];
  }
  return out;
}

struct Shape {
  int rows, n, k, x_stride;
  bool bias;
};

template <typename T> void run(const std::vector<uint8_t>& dev, const T* bias, int has_bias,
                               const T* x, T* y, Shape s) {
  const size_t blocks = size_t(s.n) * s.k / 32;
  const uint8_t *codes = dev.data(), *scales = dev.data() + blocks * 16;
  const int pairs = (s.n + MXFP4_COLUMNS - 1) / MXFP4_COLUMNS;
  auto launch = [&]<int R>() {
    emulate_launch((pairs + MXFP4_WARPS - 1) / MXFP4_WARPS, 1, MXFP4_WARPS * 32, [&] {
      mxfp4_matvec_rows<T, R>(codes, scales, bias, has_bias, x, y, s.rows, s.n, s.k, s.x_stride);
    });
  };
  if (s.rows == 1) return launch.template operator()<1>();
  if (s.rows == 2) return launch.template operator()<2>();
  if (s.rows <= 4) return launch.template operator()<4>();
  launch.template operator()<8>();
}

template <typename T> void check(const char* type, Shape s, unsigned seed, double tol) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const auto file = random_blocks(s.n, s.k, rng);
  const auto dev = repack(file);
  std::vector<T> b(s.n), x(size_t(s.rows) * s.x_stride, from_f32<T>(1e4f));
  for (auto& v : b) v = from_f32<T>(u(rng));
  for (int r = 0; r < s.rows; ++r)
    for (int i = 0; i < s.k; ++i) x[size_t(r) * s.x_stride + i] = from_f32<T>(u(rng));
  std::vector<T> y(size_t(s.rows) * s.n + 1, from_f32<T>(-7.0f));  // a sentinel past the end
  run<T>(dev, b.data(), int(s.bias), x.data(), y.data(), s);
  double err = 0, scale = 1e-30;
  for (int r = 0; r < s.rows; ++r) {
    for (int c = 0; c < s.n; ++c) {
      double ref = s.bias ? to_f32(b[c]) : 0.0;
      for (int i = 0; i < s.k; ++i) {
        const uint8_t* block = &file[(size_t(c) * s.k + i) / 32 * 17];
        ref += reference_value(block, i % 32) * to_f32(x[size_t(r) * s.x_stride + i]);
      }
      scale = std::max(scale, std::fabs(ref));
      err = std::max(err, std::fabs(to_f32(y[size_t(r) * s.n + c]) - ref));
    }
  }
  err /= scale;
  const bool sentinel = to_f32(y[size_t(s.rows) * s.n]) == -7.0f;
  const bool ok = err <= tol && sentinel;
  failures += !ok;
  std::printf("mxfp4 matvec %s rows %d n %d k %d stride %d bias %d: rel error %.2e%s %s\n", type,
              s.rows, s.n, s.k, s.x_stride, s.bias, err,
              sentinel ? "" : " (wrote past the output)", ok ? "ok" : "FAILED");
}

// The expanded weight: each value exactly the reference's, rounded once to T.
template <typename T> void check_expand(const char* type, int n, int k, unsigned seed) {
  std::mt19937 rng(seed);
  const auto file = random_blocks(n, k, rng);
  const auto dev = repack(file);
  const size_t blocks = size_t(n) * k / 32;
  std::vector<T> out(blocks * 32 + 1, from_f32<T>(-7.0f));
  emulate_launch(3, 1, 64, [&] { mxfp4_expand<T>(dev.data(), dev.data() + blocks * 16, out.data(), blocks); });
  bool same = to_f32(out.back()) == -7.0f;
  for (size_t i = 0; i < blocks * 32 && same; ++i) {
    const T want = from_f32<T>(float(reference_value(&file[i / 32 * 17], int(i % 32))));
    same = std::memcmp(&out[i], &want, sizeof(T)) == 0;
  }
  failures += !same;
  std::printf("mxfp4 expand %s n %d k %d: %s\n", type, n, k, same ? "ok" : "FAILED");
}

template <typename T> void checks(const char* type, double tol) {
  unsigned seed = 1;
  for (int rows = 1; rows <= 8; ++rows) {
    // 37 columns: the last warp's columns partly past n; 3 blocks a row: most lanes idle.
    check<T>(type, {rows, 37, 96, 112, rows % 2 == 1}, seed++, tol);
    // 70 blocks a row: two whole sweeps of the 32 lanes and a part.
    check<T>(type, {rows, 5, 2240, 2240, rows % 2 == 0}, seed++, tol);
  }
  check<T>(type, {1, 1, 32, 32, true}, seed++, tol);
  check<T>(type, {2, 300, 64, 96, false}, seed++, tol);
  check_expand<T>(type, 7, 96, seed++);
  check_expand<T>(type, 33, 2880, seed++);
}

}  // namespace

int main() {
  // Sums in f32 then rounded to T: f32's own error, 2^-11 (f16), 2^-8 (bf16) of the largest.
  checks<float>("f32", 1e-5);
  checks<__half>("f16", 2e-3);
  checks<__nv_bfloat16>("bf16", 1e-2);
  std::printf("%d failed\n", failures);
  return failures != 0;
}
