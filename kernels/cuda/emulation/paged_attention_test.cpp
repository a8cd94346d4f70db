// Both paged-attention kernels on the CPU (warp_emulation.h) against a double-precision
// reference of the CPU backend's semantics: paged keys through scattered block tables, causal
// masks, sliding windows, softcap, GQA, tiles cut mid-sequence, prompts after cached history.
// The tensor-core kernel (paged_attention_mma.cu) at every head size it is instantiated for in
// bf16 and f16; the simple one (paged_attention.cu) in f32 at a head size the tensor-core kernel
// has no instance for, and in bf16 on the window/softcap case; and the simple one's key ranges
// (long-context decode) with their combination. Each also with attention sinks (gpt-oss: a
// logit per head in every softmax, with no value) and with ALiBi (BLOOM, MPT: slope * (j - i)
// on each score). Exit status: failed cases.
#include "warp_emulation.h"

#include "../paged_attention.cu"
#include "../paged_attention_mma.cu"

#include <cmath>
#include <cstdio>
#include <random>

namespace {

template <typename T>
using Kernel = void (*)(const T*, const T*, const T*, T*, const uint32_t*, const uint32_t*,
                        const uint32_t*, int, int, int, float, int, float, const float*,
                        const float*);

struct Seq {
  int q_len, start;  // new query rows, tokens already cached before them
};

struct Case {
  std::vector<Seq> seqs;
  int heads, kv_heads, window;
  float softcap;
  bool sinks = false;  // a sink logit per head, else none (a null pointer to the kernels)
  bool alibi = false;  // an ALiBi slope per head, else none (a null pointer)
};

constexpr int BLOCK_SIZE = 16;

// Largest |kernel - reference| over the largest |reference| (1 at least).
template <typename T>
using Simple = void (*)(const T*, const T*, const T*, T*, const uint32_t*, const uint32_t*,
                        const uint32_t*, int, int, int, int, float, int, float, const float*,
                        const float*);

template <typename T>
using Split = void (*)(const T*, const T*, const T*, float*, float*, T*, unsigned*,
                       const uint32_t*, const uint32_t*, const uint32_t*, int, int, int, int,
                       float, int, float, const float*, const float*, int);

// Which kernel a run launches: the tensor-core one over tiles of `tile_rows`, the simple one
// (one block of 128 threads per row and head), or with `split_keys`, the simple one's key
// ranges of that many keys, combined by the last block of each (row, head).
template <typename T> struct Launch {
  Kernel<T> mma = nullptr;
  int tile_rows = 0;
  Simple<T> simple = nullptr;
  int split_keys = 0;
  Split<T> split = nullptr;
};

template <typename T> double run(const Case& c, int head_dim, Launch<T> launch) {
  const int tile_rows = launch.mma ? launch.tile_rows : 1;
  const int D = head_dim, kvh_n = c.kv_heads, heads = c.heads;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  int blocks = 1;
  for (const Seq& s : c.seqs) blocks += (s.start + s.q_len + BLOCK_SIZE - 1) / BLOCK_SIZE;
  std::vector<T> k_cache((size_t)blocks * BLOCK_SIZE * kvh_n * D), v_cache(k_cache.size());
  for (size_t i = 0; i < k_cache.size(); ++i) {
    k_cache[i] = T(uniform(rng));
    v_cache[i] = T(uniform(rng));
  }
  // Tables hand out blocks from the top down, so no sequence's blocks are contiguous.
  std::vector<uint32_t> meta, tables, tiles, row_seq;
  std::vector<std::vector<uint32_t>> table_of;
  int next_block = blocks, q_start = 0;
  for (size_t si = 0; si < c.seqs.size(); ++si) {
    const Seq& s = c.seqs[si];
    std::vector<uint32_t> t((s.start + s.q_len + BLOCK_SIZE - 1) / BLOCK_SIZE);
    for (uint32_t& b : t) b = --next_block;
    meta.insert(meta.end(), {uint32_t(q_start), uint32_t(s.start), uint32_t(tables.size())});
    tables.insert(tables.end(), t.begin(), t.end());
    table_of.push_back(t);
    row_seq.insert(row_seq.end(), s.q_len, uint32_t(si));
    for (int first = q_start; first < q_start + s.q_len; first += tile_rows)
      tiles.insert(tiles.end(), {uint32_t(si), uint32_t(first),
                                 uint32_t(std::min(tile_rows, q_start + s.q_len - first))});
    q_start += s.q_len;
  }
  std::vector<T> q((size_t)q_start * heads * D), out(q.size(), T(1e4f));
  for (T& v : q) v = T(uniform(rng));
  const float scale = 1.0f / std::sqrt(float(D));
  // Sinks spread over [-1, 5): from below every score to the weight of ~150 keys at the top
  // score, so they matter at short and long contexts alike.
  std::vector<float> sink_values;
  if (c.sinks)
    for (int h = 0; h < heads; ++h) sink_values.push_back(2.0f + 3.0f * uniform(rng));
  const float* sinks = c.sinks ? sink_values.data() : nullptr;
  // ALiBi's geometric slopes 2^(-8(h+1)/heads) (BLOOM's for a power of two): from a few keys'
  // reach (head 0, a bias of -1 per key or so) to nearly flat, so a wrong sign, a distance
  // from the wrong key or a slope from the wrong head changes the output far past tolerance.
  std::vector<float> alibi_values;
  if (c.alibi)
    for (int h = 0; h < heads; ++h)
      alibi_values.push_back(std::exp2(-8.0f * float(h + 1) / float(heads)));
  const float* alibi = c.alibi ? alibi_values.data() : nullptr;
  if (launch.split_keys > 0) {
    // As the host: ranges cover the most keys a row sees (its context, or its window).
    int longest = 0;
    for (const Seq& s : c.seqs) longest = std::max(longest, s.start + s.q_len);
    if (c.window > 0) longest = std::min(longest, c.window);
    const int splits = (longest + launch.split_keys - 1) / launch.split_keys;
    const size_t parts = (size_t)q_start * heads * splits;
    // Garbage where nothing should be read: every partial is written by its block.
    std::vector<float> ml(2 * parts, 7e7f), acc(parts * D, 7e7f);
    // Zeroed once, as the host allocates them; each launch must leave them zero again. Two
    // launches: the second on the counts the first left, over garbage output.
    std::vector<unsigned> arrivals((size_t)q_start * heads, 0);
    for (int pass = 0; pass < 2; ++pass) {
      std::fill(out.begin(), out.end(), T(1e4f));
      emulate_launch(
          q_start, heads, 128,
          [&] {
            launch.split(q.data(), k_cache.data(), v_cache.data(), ml.data(), acc.data(),
                         out.data(), arrivals.data(), row_seq.data(), meta.data(), tables.data(),
                         heads, kvh_n, D, BLOCK_SIZE, scale, c.window, c.softcap, sinks,
                         alibi, launch.split_keys);
          },
          splits);
      for (unsigned a : arrivals) {
        if (a != 0) {
          std::printf("split: an arrival count left at %u\n", a);
          return 1e9;
        }
      }
    }
  } else if (launch.simple) {
    emulate_launch(q_start, heads, 128, [&] {
      launch.simple(q.data(), k_cache.data(), v_cache.data(), out.data(), row_seq.data(),
                    meta.data(), tables.data(), heads, kvh_n, D, BLOCK_SIZE, scale, c.window,
                    c.softcap, sinks, alibi);
    });
  } else {
    emulate_launch(tiles.size() / 3, heads, tile_rows * 2, [&] {
      launch.mma(q.data(), k_cache.data(), v_cache.data(), out.data(), meta.data(),
                 tables.data(), tiles.data(), heads, kvh_n, BLOCK_SIZE, scale, c.window,
                 c.softcap, sinks, alibi);
    });
  }

  auto at = [&](const std::vector<T>& cache, size_t si, int key, int kvh, int d) {
    const size_t slot = (size_t)table_of[si][key / BLOCK_SIZE] * BLOCK_SIZE + key % BLOCK_SIZE;
    return double(float(cache[(slot * kvh_n + kvh) * D + d]));
  };
  double worst = 0.0, largest = 1.0;
  for (size_t si = 0; si < c.seqs.size(); ++si) {
    const Seq& s = c.seqs[si];
    for (int r = 0; r < s.q_len; ++r) {
      const int row = int(meta[3 * si]) + r, pos = s.start + r;
      for (int h = 0; h < heads; ++h) {
        const int kvh = h / (heads / kvh_n);
        const T* qr = &q[((size_t)row * heads + h) * D];
        std::vector<int> keys;
        std::vector<double> p;
        for (int key = 0; key <= pos; ++key) {
          if (c.window > 0 && key <= pos - c.window) continue;
          double dot = 0.0;
          for (int d = 0; d < D; ++d) dot += double(float(qr[d])) * at(k_cache, si, key, kvh, d);
          dot *= scale;
          if (c.softcap > 0.0f) dot = c.softcap * std::tanh(dot / c.softcap);
          // ALiBi after the cap: key - pos <= 0, farther keys biased down.
          if (alibi) dot += double(alibi[h]) * double(key - pos);
          keys.push_back(key);
          p.push_back(dot);
        }
        // The sink joins the max and the sum, never the output.
        double m = *std::max_element(p.begin(), p.end());
        if (sinks) m = std::max(m, double(sinks[h]));
        double l = sinks ? std::exp(sinks[h] - m) : 0.0;
        for (double& v : p) l += (v = std::exp(v - m));
        for (int d = 0; d < D; ++d) {
          double want = 0.0;
          for (size_t i = 0; i < keys.size(); ++i) want += p[i] * at(v_cache, si, keys[i], kvh, d);
          want /= l;
          const double got = float(out[((size_t)row * heads + h) * D + d]);
          worst = std::max(worst, std::fabs(got - want));
          largest = std::max(largest, std::fabs(want));
        }
      }
    }
  }
  return worst / largest;
}

template <typename T> struct Instances;
template <> struct Instances<float> {
  static constexpr const char* name = "f32";
  static constexpr double tolerance = 1e-4;
  static constexpr Simple<float> simple = paged_attention_f32;
  static constexpr Split<float> split = paged_attention_split_f32;
};
template <> struct Instances<__nv_bfloat16> {
  static Kernel<__nv_bfloat16> mma(int d) {
    return d == 64 ? paged_attention_mma_bf16_d64
                   : d == 128 ? paged_attention_mma_bf16_d128 : paged_attention_mma_bf16_d256;
  }
  static constexpr const char* name = "bf16";
  static constexpr double tolerance = 5e-3;
  static constexpr Simple<__nv_bfloat16> simple = paged_attention_bf16;
  static constexpr Split<__nv_bfloat16> split = paged_attention_split_bf16;
};
template <> struct Instances<__half> {
  static Kernel<__half> mma(int d) {
    return d == 64 ? paged_attention_mma_f16_d64
                   : d == 128 ? paged_attention_mma_f16_d128 : paged_attention_mma_f16_d256;
  }
  static constexpr const char* name = "f16";
  static constexpr double tolerance = 1e-3;
};

// The host's tile size per head size (src/backend/cuda/launch.rs, mma_attention_rows).
int tile_rows(int head_dim) { return head_dim == 256 ? 32 : 64; }

// P is rounded to T before P·V on tensor cores (bf16: 8 bits of mantissa); the tolerances are
// tight enough that one key too many or too few in a row's softmax (~1/context) fails.
int report(const char* kernel, const char* type, const Case& c, size_t index, int d, double err,
           double tol) {
  const bool ok = err < tol;
  std::printf("case %zu %s %s head_dim %d%s%s: relative error %.5f %s\n", index, kernel, type,
              d, c.sinks ? " sinks" : "", c.alibi ? " alibi" : "", err, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

template <typename T> int check_mma(const Case& c, size_t index) {
  int failures = 0;
  for (int d : {64, 128, 256}) {
    const double err = run<T>(c, d, {Instances<T>::mma(d), tile_rows(d), nullptr});
    failures +=
        report("tensor-core", Instances<T>::name, c, index, d, err, Instances<T>::tolerance);
  }
  return failures;
}

// One block per row and head makes the simple kernel slow to emulate (a thread barrier per
// key tile): a head size the tensor-core kernel lacks, in f32 everywhere.
template <typename T> int check_simple(const Case& c, size_t index, int d) {
  const double err = run<T>(c, d, {nullptr, 0, Instances<T>::simple});
  return report("simple", Instances<T>::name, c, index, d, err, Instances<T>::tolerance);
}

// The simple kernel's keys cut into ranges of `split_keys` (launch::attention_key_splits):
// ranges that end mid-tile, ranges past a row's position or before its window (empty), and the
// combination of their partials by each (row, head)'s last block, twice on the same counts.
template <typename T> int check_split(const Case& c, size_t index, int d, int split_keys) {
  const double err =
      run<T>(c, d, {nullptr, 0, nullptr, split_keys, Instances<T>::split});
  char kernel[48];
  std::snprintf(kernel, sizeof kernel, "split by %d keys", split_keys);
  return report(kernel, Instances<T>::name, c, index, d, err, Instances<T>::tolerance);
}

}  // namespace

int main() {
  const std::vector<Case> cases = {
      // A prompt longer than a tile, and a decode token deep in its context (1-row tile).
      {{{150, 0}, {1, 300}}, 8, 2, 0, 0.0f},
      // A chunk after cached tokens, Llama-8B head grouping.
      {{{40, 77}}, 32, 8, 0, 0.0f},
      // Sliding window and softcap (Gemma), one KV head.
      {{{70, 10}, {1, 200}}, 4, 1, 32, 50.0f},
      // Tile edges: 65 rows (a full tile and one row), then 33 rows after history mid-block.
      {{{65, 3}, {33, 45}}, 4, 2, 0, 0.0f},
      // A window shorter than the chunk: early key steps are masked for the later rows.
      {{{33, 45}}, 2, 1, 40, 0.0f},
      // Sinks (gpt-oss): a prompt longer than a tile beside a decode token; a window shorter
      // than the chunk (rows that see none of a key step keep the sink as their max), with a
      // softcap. Kept small: the sink is one start value, and CI runs this on two cores.
      {{{70, 0}, {1, 150}}, 4, 2, 0, 0.0f, true},
      {{{33, 45}}, 2, 1, 40, 50.0f, true},
      // ALiBi: prompts over several tiles beside a decode token deep in its context, with GQA
      // (the slope is the query head's, not the KV head's); tile edges after history mid-block
      // (the distance is each row's own, not its tile's first row's); and with a window,
      // softcap and sinks at once (the bias after the cap, the sink unbiased).
      {{{150, 0}, {1, 300}}, 8, 2, 0, 0.0f, false, true},
      {{{65, 3}, {33, 45}}, 4, 2, 0, 0.0f, false, true},
      {{{70, 10}, {1, 200}}, 4, 1, 32, 50.0f, true, true},
  };
  int failures = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    failures += check_mma<__nv_bfloat16>(cases[i], i);
    failures += check_mma<__half>(cases[i], i);
    failures += check_simple<float>(cases[i], i, 80);
  }
  // The simple kernel's half-precision loads, with the window and softcap of Gemma's 256.
  failures += check_simple<__nv_bfloat16>(cases[2], 2, 256);
  // Long-context decode cut into key ranges: a decode token at 300 with a prompt beside it
  // (its short rows leave later ranges empty), ranges of 64 (whole tiles) and 100 (ending
  // mid-tile); with a window of 32, ranges of 16 and 20 keys from each row's first visible key.
  failures += check_split<float>(cases[0], 0, 80, 64);
  failures += check_split<float>(cases[0], 0, 80, 100);
  failures += check_split<float>(cases[2], 2, 80, 16);
  failures += check_split<__nv_bfloat16>(cases[2], 2, 256, 20);
  // ... with sinks, which join each (row, head)'s combination once, not once per range.
  failures += check_split<float>(cases[5], 5, 80, 100);
  failures += check_split<__nv_bfloat16>(cases[6], 6, 256, 20);
  // ... with ALiBi, whose distances in a range are from the row's position, not the range's
  // first key.
  failures += check_split<float>(cases[7], 7, 80, 100);
  failures += check_split<__nv_bfloat16>(cases[9], 9, 256, 20);
  // DeepSeek's latent heads (576: five dimensions per thread, the last one for 64 threads
  // only), all query heads on the one latent KV head, whole and cut into ranges.
  const Case latent = {{{20, 0}, {1, 90}}, 4, 1, 0, 0.0f};
  failures += check_simple<__nv_bfloat16>(latent, cases.size(), 576);
  failures += check_split<float>(latent, cases.size(), 576, 64);
  std::printf("%s\n", failures == 0 ? "all cases match" : "FAILURES");
  return failures;
}
