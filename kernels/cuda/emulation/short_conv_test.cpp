// short_conv.cu on the CPU (warp_emulation.h) against a plain reference: rows split in pieces
// over the K and V halves of cache layers (the last piece partly used, as LFM2's tiny test
// model's 96 channels in rows of 32), taps before a sequence's start (NO_ROW), slots scattered
// over the cache, with and without a bias, in f32 (the host kernel's bits: exact) and bf16.
// Exit status: failed checks.
#include "warp_emulation.h"

#include "../short_conv.cu"

#include <cmath>
#include <cstdio>
#include <random>
#include <type_traits>
#include <vector>

namespace {

int failures = 0;

// The entry point of T's type.
template <typename T>
void short_conv(const T* const* h, int piece, const uint32_t* slots, const uint32_t* taps,
                const float* w, const float* bias, int has_bias, int kernel, int width, size_t n,
                T* out) {
  if constexpr (std::is_same_v<T, float>) {
    short_conv_f32(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], piece, slots, taps, w, bias,
                   has_bias, kernel, width, n, out);
  } else {
    short_conv_bf16(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], piece, slots, taps, w, bias,
                    has_bias, kernel, width, n, out);
  }
}

void expect(const char* what, double err, double tol) {
  const bool ok = err <= tol;
  failures += !ok;
  std::printf("%s: max error %.2e %s\n", what, err, ok ? "ok" : "FAILED");
}

template <typename T> void check(const char* type, int width, int piece, bool with_bias, double tol) {
  const int kernel = 3, tokens = 7, num_slots = 40;
  const int halves_used = (width + piece - 1) / piece;
  std::mt19937 rng(width * 31 + piece + with_bias);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  // Cache halves, each [num_slots, piece].
  std::vector<std::vector<T>> halves(SHORT_CONV_MAX_PIECES, std::vector<T>(size_t(num_slots) * piece));
  for (auto& h : halves)
    for (T& v : h) v = from_f32<T>(u(rng));
  std::vector<float> w(size_t(kernel) * width), bias(width);
  for (float& v : w) v = u(rng);
  for (float& v : bias) v = u(rng);
  // Two sequences: one of 4 new tokens from position 0 (its first taps before the start), one
  // of 3 new tokens after 2 cached ones. Rows: sequence 2's two cached rows, then the 7 new.
  const std::vector<uint32_t> slots = {17, 3, 25, 9, 33, 0, 38, 12, 21};
  const uint32_t NO = 0xffffffffu;
  const std::vector<uint32_t> taps = {NO, NO, 2, NO, 2, 3, 2, 3, 4, 3, 4, 5,   // sequence 1
                                      0, 1, 6, 1, 6, 7, 6, 7, 8};             // sequence 2
  std::vector<T> out(size_t(tokens) * width);
  const size_t n = out.size();
  const T* h[SHORT_CONV_MAX_PIECES];
  for (int p = 0; p < SHORT_CONV_MAX_PIECES; ++p) h[p] = halves[p].data();
  emulate_launch(3, 1, 128, [&] {
    short_conv<T>(h, piece, slots.data(), taps.data(), w.data(),
                              with_bias ? bias.data() : w.data(), with_bias, kernel, width, n,
                              out.data());
  });
  double err = 0;
  for (int t = 0; t < tokens; ++t)
    for (int c = 0; c < width; ++c) {
      float want = with_bias ? bias[c] : 0.0f;
      for (int j = 0; j < kernel; ++j) {
        const uint32_t r = taps[t * kernel + j];
        if (r == NO) continue;
        want += w[size_t(j) * width + c] *
                to_f32(halves[c / piece][size_t(slots[r]) * piece + c % piece]);
      }
      const double got = to_f32(out[size_t(t) * width + c]);
      err = std::max(err, std::fabs(got - to_f32(from_f32<T>(want))) / std::max(1.0, std::fabs(double(want))));
    }
  char what[96];
  std::snprintf(what, sizeof what, "short_conv %s, %d channels in pieces of %d (%d halves)%s",
                type, width, piece, halves_used, with_bias ? ", bias" : "");
  expect(what, err, tol);
}

}  // namespace

int main() {
  for (bool b : {false, true}) {
    check<float>("f32", 96, 32, b, 0.0);
    check<float>("f32", 2048, 512, b, 0.0);
    check<float>("f32", 250, 32, b, 0.0);  // all eight halves, the last partly used
    check<__nv_bfloat16>("bf16", 96, 32, b, 1e-2);
  }
  std::printf("%s\n", failures == 0 ? "all checks pass" : "FAILURES");
  return failures;
}
