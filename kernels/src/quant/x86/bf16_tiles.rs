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

/// `x` rounded to bf16 (nearest even) into `out`.
///
/// # Safety
/// The CPU must have AVX-512 VNNI and BF16; `x.len() == out.len()`, a multiple of 32.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
pub unsafe fn to_bf16(x: &[f32], out: &mut [u16]) {
    debug_assert!(x.len() == out.len() && x.len().is_multiple_of(32));
    for (src, dst) in x.chunks_exact(32).zip(out.chunks_exact_mut(32)) {
        let lo = _mm512_loadu_ps(src.as_ptr());
        let hi = _mm512_loadu_ps(src.as_ptr().add(16));
        let z = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(dst.as_mut_ptr() as *mut __m512i, z);
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
            let lo = _mm512_loadu_ps(src.add(32 * s));
            let hi = _mm512_loadu_ps(src.add(32 * s + 16));
            let z = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
            _mm512_storeu_si512(dst.add(s * TILE) as *mut __m512i, z);
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
/// and 32s + 2r + 1 of weight row n. A transposition of 32-bit pairs, in portable code: each
/// tile serves every activation row of the product, so this is a small part of its time.
pub fn bf16_b_tiles(rows: &[u16], k: usize, out: &mut [u8]) {
    debug_assert!(rows.len().is_multiple_of(k.max(1)) && rows.len() <= 16 * k);
    debug_assert!(out.len() == b_tiles_bytes(k));
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
