//! Operands of the AMX bf16 product (`amx`): activations as bf16 rows, and weight rows as B
//! tiles (16 weight rows × 32 values of K per tile, bf16 pairs of consecutive K in each row's
//! 32-bit lane: AMX's "VNNI" layout).
//!
//! Weights come from the VNNI panels (`panel::repack`, 8 rows with their quants in lanes and
//! scale/min per 16 values), so every GGUF format is decoded by code the VNNI kernels already
//! test; a 16-row B tile is two panels, each value widened to f32 as scale·q − min (one fused
//! rounding: the products are exact, so this is the value `formats::dequantize` gives) and
//! rounded to bf16 (nearest even).
use super::amx::B_TILE_BYTES;
use super::panel;
use std::arch::x86_64::*;

/// Bytes of the B tiles of 16 weight rows of `k` values.
pub fn b_tiles_bytes(k: usize) -> usize {
    k / 32 * B_TILE_BYTES
}

/// The B tiles (`k / 32` of them) of the 16 weight rows held by panels `lo` (rows 0..8) and
/// `hi` (8..16), into `out`.
///
/// # Safety
/// The CPU must have AVX-512 VNNI and BF16; `lo` and `hi` must be `panel::panel_bytes(k)` long and
/// `out` `b_tiles_bytes(k)`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
pub unsafe fn b_tiles(lo: &[u8], hi: &[u8], k: usize, out: &mut [u8]) {
    debug_assert!(lo.len() == panel::panel_bytes(k) && hi.len() == lo.len());
    debug_assert!(out.len() == b_tiles_bytes(k));
    let block = panel::panel_bytes(32);
    // Lane l of a panel vector's first (last) 16 values belongs to row l/4 (4 + l/4).
    let spread_lo = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    let spread_hi = _mm512_add_epi32(spread_lo, _mm512_set1_epi32(4));
    // After conversion, 32-bit lane j of a panel's vector is the pair j%2 of row j/2; a tile
    // row takes one pair of all 16 rows, 8 from each panel.
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for b in 0..k / 32 {
        let src = [lo.as_ptr().add(b * block), hi.as_ptr().add(b * block)];
        let dst = out.as_mut_ptr().add(b * B_TILE_BYTES);
        // Per panel p and half h (values 0..16, 16..32): scale and min spread over the lanes
        // of rows 0..4 (index 0) and 4..8 (index 1). Plain loops and helper functions with
        // this function's features: closures here were not inlined (a call per vector).
        let mut scale = [[[_mm512_setzero_ps(); 2]; 2]; 2];
        let mut min = scale;
        for p in 0..2 {
            for h in 0..2 {
                let s = field(src[p], h);
                let m = field(src[p], 2 + h);
                scale[p][h] = [
                    _mm512_permutexvar_ps(spread_lo, s),
                    _mm512_permutexvar_ps(spread_hi, s),
                ];
                min[p][h] = [
                    _mm512_permutexvar_ps(spread_lo, m),
                    _mm512_permutexvar_ps(spread_hi, m),
                ];
            }
        }
        for v in 0..8 {
            let h = v / 4;
            let mut z = [_mm512_setzero_si512(); 2];
            for p in 0..2 {
                let q = _mm256_loadu_si256(src[p].add(32 * v) as *const __m256i);
                let rows_lo = widen(_mm256_castsi256_si128(q), scale[p][h][0], min[p][h][0]);
                let rows_hi = widen(
                    _mm256_extracti128_si256::<1>(q),
                    scale[p][h][1],
                    min[p][h][1],
                );
                z[p] =
                    std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(rows_hi, rows_lo));
            }
            let pair0 = _mm512_permutex2var_epi32(z[0], even, z[1]);
            let pair1 = _mm512_permutex2var_epi32(z[0], odd, z[1]);
            _mm512_storeu_si512(dst.add(128 * v) as *mut __m512i, pair0);
            _mm512_storeu_si512(dst.add(128 * v + 64) as *mut __m512i, pair1);
        }
    }
}

/// f32 field `i` (scale or min of the 8 rows, for values 0..16 or 16..32) of the panel block at
/// `p`, in the low half of a vector.
///
/// # Safety
/// As `b_tiles`; `p` points at a panel block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
unsafe fn field(p: *const u8, i: usize) -> __m512 {
    _mm512_castps256_ps512(_mm256_loadu_ps(p.add(256 + 32 * i) as *const f32))
}

/// 16 quant bytes as f32 values `scale·q − min` (one rounding).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
fn widen(bytes: __m128i, scale: __m512, min: __m512) -> __m512 {
    let q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
    _mm512_fmsub_ps(q, scale, min)
}

/// The 32 f32 at `src` rounded to bf16 (nearest even) at `dst`.
///
/// # Safety
/// The CPU must have AVX-512 VNNI and BF16; `src` and `dst` hold 32 values.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
unsafe fn round_32(src: *const f32, dst: *mut u16) {
    let lo = _mm512_loadu_ps(src);
    let hi = _mm512_loadu_ps(src.add(16));
    let z = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
    _mm512_storeu_si512(dst as *mut __m512i, z);
}

/// `x` as the sum of two bf16 values each: `hi` its rounding (nearest even), `lo` the rounding
/// of what `hi` misses. hi + lo holds 16 of f32's 24 significant bits (relative error 2⁻¹⁷), and
/// every f16 value exactly (11 bits), so products over the pairs (hi·hi + hi·lo + lo·hi) come
/// near f32 ones at three times the tile work: what attention needs, whose scores over keys of
/// a few hundred (Qwen2.5's key biases) lose whole units to bf16 alone. The high terms go to
/// `hi` and again to `hi_again`, as the three pair products lay them out.
///
/// # Safety
/// The CPU must have AVX-512 F/BW and BF16; the four slices one length, a multiple of 16.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
pub unsafe fn split_bf16(x: &[f32], hi: &mut [u16], hi_again: &mut [u16], lo: &mut [u16]) {
    let n = x.len();
    debug_assert!(n == hi.len() && n == hi_again.len() && n == lo.len() && n.is_multiple_of(16));
    for i in (0..x.len()).step_by(16) {
        let v = _mm512_loadu_ps(x.as_ptr().add(i));
        let h = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
        // bf16 widens to f32 exactly: its bits in the high half.
        let wide = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)));
        let l = _mm512_cvtneps_pbh(_mm512_sub_ps(v, wide));
        _mm256_storeu_si256(hi.as_mut_ptr().add(i) as *mut __m256i, h);
        _mm256_storeu_si256(hi_again.as_mut_ptr().add(i) as *mut __m256i, h);
        _mm256_storeu_si256(
            lo.as_mut_ptr().add(i) as *mut __m256i,
            std::mem::transmute::<__m256bh, __m256i>(l),
        );
    }
}

/// The A tiles of up to 16 activation rows (`rows`: whole rows of `k` values) rounded to bf16
/// (nearest even) into `out` (16·k values): tile s (32 values of 16 rows, one after the other)
/// holds values 32s..32s + 32 of each row; missing rows are zeros. Row groups one after the
/// other make `amx::ARows::tiled`'s layout, where block `b` of 32 rows starts at value
/// `32·b·k`, as in row-major order.
///
/// # Safety
/// The CPU must have AVX-512 VNNI and BF16; `k` a multiple of 32, `rows.len()` a multiple of
/// `k` up to `16·k`, `out.len() == 16·k`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
pub unsafe fn a_tiles(rows: &[f32], k: usize, out: &mut [u16]) {
    debug_assert!(k.is_multiple_of(32) && out.len() == 16 * k);
    debug_assert!(rows.len().is_multiple_of(k) && rows.len() <= out.len());
    // In u16 units: a tile is 16 rows of 32 values.
    const TILE: usize = 16 * 32;
    let live = rows.len() / k;
    for (r, row) in rows.chunks_exact(k).enumerate() {
        let (src, dst) = (row.as_ptr(), out.as_mut_ptr().add(32 * r));
        for s in 0..k / 32 {
            round_32(src.add(32 * s), dst.add(s * TILE));
        }
    }
    for r in live..16 {
        for s in 0..k / 32 {
            out[s * TILE + 32 * r..s * TILE + 32 * r + 32].fill(0);
        }
    }
}

/// The B tiles of up to 16 bf16 weight rows (`rows`: whole rows of `k` values) into `out`
/// (`b_tiles_bytes(k)`; missing rows are zeros): tile s, row r, lane n holds values 32s + 2r
/// and 32s + 2r + 1 of weight row n. Per tile: each row's 16 pairs in one vector, then a
/// 16×16 transposition of 32-bit lanes (`transpose16`).
///
/// # Safety
/// The CPU must have AVX-512 F (and the features below); `k` a multiple of 32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
pub unsafe fn bf16_b_tiles(rows: &[u16], k: usize, out: &mut [u8]) {
    debug_assert!(k.is_multiple_of(32) && rows.len().is_multiple_of(k.max(1)));
    debug_assert!(rows.len() <= 16 * k && out.len() == b_tiles_bytes(k));
    let live = rows.len() / k.max(1);
    for s in 0..k / 32 {
        let mut v = [_mm512_setzero_si512(); 16];
        for (n, vn) in v.iter_mut().enumerate().take(live) {
            *vn = _mm512_loadu_si512(rows.as_ptr().add(n * k + 32 * s) as *const __m512i);
        }
        transpose16(&mut v);
        let dst = out.as_mut_ptr().add(s * B_TILE_BYTES);
        for (r, vr) in v.iter().enumerate() {
            _mm512_storeu_si512(dst.add(64 * r) as *mut __m512i, *vr);
        }
    }
}

/// Transposes 16 vectors of 16 32-bit lanes (vector i, lane j → vector j, lane i): four
/// rounds, each swapping the blocks of one index bit between vector pairs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
fn transpose16(v: &mut [__m512i; 16]) {
    for (round, b) in [8usize, 4, 2, 1].into_iter().enumerate() {
        // SAFETY: 16 i32 each, unaligned loads.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_si512(TRANSPOSE_LANES[round][0].as_ptr() as *const __m512i),
                _mm512_loadu_si512(TRANSPOSE_LANES[round][1].as_ptr() as *const __m512i),
            )
        };
        for i in (0..16).filter(|i| i & b == 0) {
            let (x, y) = (v[i], v[i + b]);
            v[i] = _mm512_permutex2var_epi32(x, lo, y);
            v[i + b] = _mm512_permutex2var_epi32(x, hi, y);
        }
    }
}

/// `transpose16`'s lane indices per round (bit b = 8, 4, 2, 1): lane j of vector i (bit b
/// clear) takes, where j has bit b, lane j − b of vector i + b (index 16 + j − b), else its
/// own; vector i + b takes, where j lacks bit b, lane j + b of vector i, else its own.
const TRANSPOSE_LANES: [[[i32; 16]; 2]; 4] = {
    let mut t = [[[0i32; 16]; 2]; 4];
    let mut round = 0;
    while round < 4 {
        let b = 8 >> round;
        let mut j = 0;
        while j < 16 {
            let set = j & b != 0;
            t[round][0][j] = if set { 16 + (j - b) } else { j } as i32;
            t[round][1][j] = if set { 16 + j } else { j + b } as i32;
            j += 1;
        }
        round += 1;
    }
    t
};

/// The B tiles of a product over `rows` (`[n][width]` bf16, `n` ≤ `count` a multiple of 32,
/// missing rows zeros): its K dimension runs along the rows, its outputs along the `width`
/// columns (attention's V: keys × dimensions). Per 16 columns, `count / 32` tiles, tile s's
/// row r holding, in lane c, columns c of rows 32s + 2r and 32s + 2r + 1: two rows' values
/// interleaved, no transposition. Into `out` (`width / 16 · b_tiles_bytes(count)`).
///
/// # Safety
/// The CPU must have AVX-512 F/BW; `width` a multiple of 16, `rows.len()` a multiple of
/// `width`, at most `count · width`, `count` a multiple of 32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
pub unsafe fn row_pair_b_tiles(rows: &[u16], width: usize, count: usize, out: &mut [u8]) {
    debug_assert!(width.is_multiple_of(16) && count.is_multiple_of(32));
    debug_assert!(rows.len().is_multiple_of(width) && rows.len() <= count * width);
    debug_assert!(out.len() == width / 16 * b_tiles_bytes(count));
    let live = rows.len() / width;
    let run = b_tiles_bytes(count);
    let row = |i: usize, c: usize| -> __m256i {
        if i < live {
            // SAFETY: row i < live has `width` values, c + 16 ≤ width.
            unsafe { _mm256_loadu_si256(rows.as_ptr().add(i * width + c) as *const __m256i) }
        } else {
            _mm256_setzero_si256()
        }
    };
    for pair in 0..count / 2 {
        let (s, r) = (pair / 16, pair % 16);
        for c in (0..width).step_by(16) {
            let even = _mm512_cvtepu16_epi32(row(2 * pair, c));
            let odd = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(row(2 * pair + 1, c)));
            let at = c / 16 * run + s * B_TILE_BYTES + 64 * r;
            _mm512_storeu_si512(
                out.as_mut_ptr().add(at) as *mut __m512i,
                _mm512_or_si512(even, odd),
            );
        }
    }
}

/// `bf16_b_tiles` one value pair at a time, the reference its tests compare with.
#[cfg(test)]
fn bf16_b_tiles_scalar(rows: &[u16], k: usize, out: &mut [u8]) {
    out.fill(0);
    for (n, row) in rows.chunks_exact(k).enumerate() {
        for (pair, v) in row.chunks_exact(2).enumerate() {
            // Pair p of the row: tile p / 16, tile row p % 16, lane n.
            let at = (pair / 16) * B_TILE_BYTES + (pair % 16) * 64 + 4 * n;
            out[at..at + 2].copy_from_slice(&v[0].to_le_bytes());
            out[at + 2..at + 4].copy_from_slice(&v[1].to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<u16> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2654435761) ^ seed) as u16)
            .collect()
    }

    fn has_avx512_bf16() -> bool {
        std::arch::is_x86_feature_detected!("avx512bf16")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }

    #[test]
    fn split_pairs_hold_f16_values_exactly_and_f32_ones_to_2_pow_minus_17() {
        if !has_avx512_bf16() {
            eprintln!("skipped: this CPU lacks AVX-512 BF16");
            return;
        }
        let widen = |b: u16| f32::from_bits((b as u32) << 16);
        // Keys of an f16 cache (here values a Qwen2.5 key bias reaches), then any f32.
        let f16s: Vec<f32> = (0..64)
            .map(|i| half::f16::from_f32(158.3 - 7.77 * i as f32).to_f32())
            .collect();
        let f32s: Vec<f32> = (0..64)
            .map(|i| (i as f32 * 0.731).sin() * 1e3 + 1e-3)
            .collect();
        for (x, exact) in [(f16s, true), (f32s, false)] {
            let (mut hi, mut lo) = (vec![0u16; x.len()], vec![0u16; x.len()]);
            let mut again = vec![0u16; x.len()];
            // SAFETY: AVX-512 BF16 checked; 64 values each.
            unsafe { split_bf16(&x, &mut hi, &mut again, &mut lo) };
            assert_eq!(again, hi);
            for (i, &v) in x.iter().enumerate() {
                let sum = widen(hi[i]) + widen(lo[i]);
                assert_eq!(hi[i], half::bf16::from_f32(v).to_bits(), "{v}");
                if exact {
                    assert_eq!(sum, v);
                } else {
                    assert!((sum - v).abs() <= v.abs() * 2f32.powi(-17), "{v}: {sum}");
                }
            }
        }
    }

    #[test]
    fn b_tiles_from_rows_match_the_pairwise_placement() {
        if !has_avx512_bf16() {
            eprintln!("skipped: this CPU lacks AVX-512 BF16");
            return;
        }
        for (live, k) in [(16, 32), (16, 128), (5, 64), (1, 96), (0, 32)] {
            let rows = values(live * k, 7);
            let mut want = vec![0xAAu8; b_tiles_bytes(k)];
            let mut got = vec![0x55u8; b_tiles_bytes(k)];
            bf16_b_tiles_scalar(&rows, k, &mut want);
            // SAFETY: AVX-512 BF16 checked; k a multiple of 32, `live` ≤ 16 whole rows.
            unsafe { bf16_b_tiles(&rows, k, &mut got) };
            assert_eq!(got, want, "{live} rows of {k}");
        }
    }

    #[test]
    fn row_pair_tiles_are_the_tiles_of_the_transposed_rows() {
        if !has_avx512_bf16() {
            eprintln!("skipped: this CPU lacks AVX-512 BF16");
            return;
        }
        // V of 64 keys × 80 dims, the last keys missing; its tiles are those of Vᵀ's rows.
        for (live, width, count) in [(64, 80, 64), (37, 64, 64), (32, 16, 32), (0, 16, 32)] {
            let rows = values(live * width, 3);
            let mut got = vec![0x55u8; width / 16 * b_tiles_bytes(count)];
            // SAFETY: as above; width a multiple of 16, count of 32.
            unsafe { row_pair_b_tiles(&rows, width, count, &mut got) };
            let mut transposed = vec![0u16; width * count];
            for i in 0..live {
                for c in 0..width {
                    transposed[c * count + i] = rows[i * width + c];
                }
            }
            let mut want = vec![0u8; got.len()];
            for (cols, out) in transposed
                .chunks_exact(16 * count)
                .zip(want.chunks_exact_mut(b_tiles_bytes(count)))
            {
                bf16_b_tiles_scalar(cols, count, out);
            }
            assert_eq!(got, want, "{live} rows of {width}, {count} in all");
        }
    }
}
