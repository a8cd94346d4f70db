//! The panel kernels' arithmetic (`panel::gemm`) for a few activation rows, straight from the
//! weight blocks, without the repack.
//!
//! A repacked panel pays for itself only over several activation rows: for one (decode) the
//! repack costs more than the product. The row tiles (`kernels`) need no repack but round
//! otherwise (a block product converted per lane, K-quants per super-block), so a row computed
//! among a few others got other bits than among many. Here each group of 8 weight rows is
//! decoded as `panel::repack` decodes it, each row's block product is summed across lanes in
//! integers (exact, so any order gives the same sum), and the float steps are the panel
//! kernel's, operation for operation and in the same order: scale the block sum, subtract
//! the minimum times the activation sum. A row's result is then the panel kernel's, bit for
//! bit, whatever the number of rows, which is what batch-invariant mode needs from the panels'
//! speed.
use super::super::activations::RowsView;
use super::super::formats::{k_scales_mins, QuantType, E8M0_HALF};
use super::panel::{decode_unit, f16_of, offset_of, quants_b32, ROWS};
use super::prefetch_distance;
use std::arch::x86_64::*;

/// Activation rows per pass over a group's weights: the group's decoded quants (8 vectors per
/// 32-element chunk) stay in registers while each row's 8 block products are summed.
const R_TILE: usize = 4;

/// `out[r * stride + i]` = activation row r · weight row i, for the weight rows in `w` (whole
/// rows of `row_bytes`, K = `x.k` elements of `ty`) and every row of `x` (the `Panel` format).
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI; `w` must be whole rows of
/// `x.k / ty.block_elems()` blocks; x must hold the Panel format's buffers for `x.rows` rows of
/// `x.k`; `out` must hold `(x.rows - 1) * stride + w.len() / row_bytes` values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn rows(
    ty: QuantType,
    w: &[u8],
    row_bytes: usize,
    x: &RowsView<'_>,
    out: &mut [f32],
    stride: usize,
) {
    let n = w.len() / row_bytes;
    for first in (0..n).step_by(ROWS) {
        let cols = (n - first).min(ROWS);
        let w = &w[first * row_bytes..(first + cols) * row_bytes];
        let mut r = 0;
        while r < x.rows {
            let cnt = (x.rows - r).min(R_TILE);
            let mut res = [[0f32; ROWS]; R_TILE];
            match cnt {
                1 => group_tile::<1>(ty, w, row_bytes, x, r, &mut res),
                2 => group_tile::<2>(ty, w, row_bytes, x, r, &mut res),
                3 => group_tile::<3>(ty, w, row_bytes, x, r, &mut res),
                _ => group_tile::<4>(ty, w, row_bytes, x, r, &mut res),
            }
            for (i, row) in res.iter().enumerate().take(cnt) {
                let at = (r + i) * stride + first;
                out[at..at + cols].copy_from_slice(&row[..cols]);
            }
            r += cnt;
        }
    }
}

/// The activation rows of a tile: where each row's quants, block scales and Panel sums
/// start.
struct Tile<const R: usize> {
    qs: [*const i8; R],
    d: [*const f32; R],
    fs16: [*const f32; R],
    fs32: [*const f32; R],
}

impl<const R: usize> Tile<R> {
    fn new(x: &RowsView<'_>, r0: usize) -> Self {
        let blocks = x.k / 32;
        Tile {
            qs: std::array::from_fn(|r| x.qs[(r0 + r) * x.k..].as_ptr()),
            d: std::array::from_fn(|r| x.d[(r0 + r) * blocks..].as_ptr()),
            fs16: std::array::from_fn(|r| x.fs16[(r0 + r) * 2 * blocks..].as_ptr()),
            fs32: std::array::from_fn(|r| x.fs32[(r0 + r) * blocks..].as_ptr()),
        }
    }
}

/// Up to 8 weight rows (`w`) × R activation rows from r0, over all of K.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn group_tile<const R: usize>(
    ty: QuantType,
    w: &[u8],
    row_bytes: usize,
    x: &RowsView<'_>,
    r0: usize,
    res: &mut [[f32; ROWS]; R_TILE],
) {
    let tile = Tile::<R>::new(x, r0);
    let acc = match ty.block_elems() {
        32 => tile_b32(ty, w, row_bytes, x.k, &tile),
        _ => tile_k(ty, w, row_bytes, x.k, &tile),
    };
    for (o, a) in res.iter_mut().zip(&acc) {
        _mm256_storeu_ps(o.as_mut_ptr(), *a);
    }
}

/// `group_tile` for the 32-element formats (Q4_0, Q5_0, Q8_0, MXFP4).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_b32<const R: usize>(
    ty: QuantType,
    w: &[u8],
    row_bytes: usize,
    k: usize,
    x: &Tile<R>,
) -> [__m256; R] {
    let rows = w.len() / row_bytes;
    let bb = ty.block_bytes();
    let offset = _mm256_set1_ps(offset_of(ty));
    let ahead = prefetch_distance(ROWS, row_bytes);
    // Row c's quants in q[c]; missing rows stay zero, as in a repacked panel.
    let mut q = [_mm256_setzero_si256(); ROWS];
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..k / 32 {
        let mut bits = [0u16; ROWS];
        let mut exps = [0f32; ROWS];
        for (c, q) in q.iter_mut().enumerate().take(rows) {
            let p = w.as_ptr().add(c * row_bytes + b * bb);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(ahead) as *const i8);
            *q = quants_b32(ty, p);
            match ty {
                QuantType::Mxfp4 => exps[c] = E8M0_HALF[*p as usize],
                _ => bits[c] = u16::from_le_bytes([*p, *p.add(1)]),
            }
        }
        let s = match ty {
            QuantType::Mxfp4 => _mm256_loadu_ps(exps.as_ptr()),
            _ => _mm256_cvtph_ps(_mm_loadu_si128(bits.as_ptr() as *const __m128i)),
        };
        let m = _mm256_mul_ps(s, offset);
        for (r, acc) in acc.iter_mut().enumerate() {
            let xv = _mm256_loadu_si256(x.qs[r].add(32 * b) as *const __m256i);
            let (ia, ib) = block_sums(&q, xv);
            let dx = _mm256_set1_ps(*x.d[r].add(b));
            let fs = _mm256_set1_ps(*x.fs32[r].add(b));
            let i = _mm256_add_epi32(ia, ib);
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(s, dx), *acc);
            *acc = _mm256_fnmadd_ps(m, fs, *acc);
        }
    }
    acc
}

/// `group_tile` for the K-quants (256-element super-blocks of eight 32-element chunks).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile_k<const R: usize>(
    ty: QuantType,
    w: &[u8],
    row_bytes: usize,
    k: usize,
    x: &Tile<R>,
) -> [__m256; R] {
    let rows = w.len() / row_bytes;
    let bb = ty.block_bytes();
    let split = ty == QuantType::Q6K;
    let ahead = prefetch_distance(ROWS, row_bytes);
    // Row c's quants of chunk j in q[j][c]; missing rows stay zero, as in a repacked panel.
    let mut q = [[_mm256_setzero_si256(); ROWS]; 8];
    let mut acc = [_mm256_setzero_ps(); R];
    for u in 0..k / 256 {
        let unit = |c: usize| w.as_ptr().add(c * row_bytes + u * bb);
        for c in 0..rows {
            for line in (0..bb).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(unit(c).wrapping_add(line + ahead) as *const i8);
            }
            decode_unit(ty, unit(c), &mut q, c, |_, _, _| {});
        }
        let fields = k_fields(ty, rows, unit);
        for (j, (qj, [s_a, s_b, m_a, m_b])) in q.iter().zip(fields).enumerate() {
            let b = 8 * u + j;
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_loadu_si256(x.qs[r].add(32 * b) as *const __m256i);
                let (ia, ib) = block_sums(qj, xv);
                let dx = _mm256_set1_ps(*x.d[r].add(b));
                if split {
                    let fa = _mm256_set1_ps(*x.fs16[r].add(2 * b));
                    let fb = _mm256_set1_ps(*x.fs16[r].add(2 * b + 1));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_mul_ps(s_a, dx), *acc);
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ib), _mm256_mul_ps(s_b, dx), *acc);
                    *acc = _mm256_fnmadd_ps(m_a, fa, *acc);
                    *acc = _mm256_fnmadd_ps(m_b, fb, *acc);
                } else {
                    let fs = _mm256_set1_ps(*x.fs32[r].add(b));
                    let i = _mm256_add_epi32(ia, ib);
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(s_a, dx), *acc);
                    *acc = _mm256_fnmadd_ps(m_a, fs, *acc);
                }
            }
        }
    }
    acc
}

/// A K-quant super-block's scales and mins for 8 rows (`unit(c)`: row c's super-block; rows
/// from `rows` on are zero): per chunk j, `[scale of 0..16, of 16..32, min of 0..16, of 16..32]`
/// with row c in lane c, each the value `panel::decode_unit` computes for the panel (the same
/// products of the same f32 operands, here on whole vectors, then transposed).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k_fields(
    ty: QuantType,
    rows: usize,
    unit: impl Fn(usize) -> *const u8,
) -> [[__m256; 4]; 8] {
    let zero = _mm256_setzero_ps();
    let bytes_f32 = |b: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
    match ty {
        QuantType::Q6K => {
            // Scale bytes 2j (elements 0..16 of chunk j) to the low half, 2j + 1 to the high.
            let evens_odds = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
            let mut sa = [zero; ROWS];
            let mut sb = [zero; ROWS];
            for c in 0..rows {
                let p = unit(c);
                let d = _mm256_set1_ps(f16_of(p.add(208)));
                let sc =
                    _mm_shuffle_epi8(_mm_loadu_si128(p.add(192) as *const __m128i), evens_odds);
                let signed = |b: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
                sa[c] = _mm256_mul_ps(d, signed(sc));
                sb[c] = _mm256_mul_ps(d, signed(_mm_srli_si128::<8>(sc)));
            }
            let (sa, sb) = (transpose8_ps(&sa), transpose8_ps(&sb));
            let k32 = _mm256_set1_ps(32.0);
            std::array::from_fn(|j| {
                [
                    sa[j],
                    sb[j],
                    _mm256_mul_ps(k32, sa[j]),
                    _mm256_mul_ps(k32, sb[j]),
                ]
            })
        }
        _ => {
            let mut s = [zero; ROWS];
            let mut m = [zero; ROWS];
            for c in 0..rows {
                let p = unit(c);
                let (sc, mn) = k_scales_mins(std::slice::from_raw_parts(p.add(4), 12));
                let load = |v: [u8; 8]| _mm_cvtsi64_si128(i64::from_le_bytes(v));
                s[c] = _mm256_mul_ps(_mm256_set1_ps(f16_of(p)), bytes_f32(load(sc)));
                m[c] = _mm256_mul_ps(_mm256_set1_ps(f16_of(p.add(2))), bytes_f32(load(mn)));
            }
            let (s, m) = (transpose8_ps(&s), transpose8_ps(&m));
            std::array::from_fn(|j| [s[j], s[j], m[j], m[j]])
        }
    }
}

/// 8×8 transpose of f32 lanes: out[j] lane c = v[c] lane j.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn transpose8_ps(v: &[__m256; ROWS]) -> [__m256; ROWS] {
    // t[2i], t[2i+1]: rows 2i, 2i+1 interleaved (columns 0, 1 / 2, 3 per 128-bit half).
    let t: [__m256; 8] = std::array::from_fn(|i| match i % 2 {
        0 => _mm256_unpacklo_ps(v[i - i % 2], v[i - i % 2 + 1]),
        _ => _mm256_unpackhi_ps(v[i - i % 2], v[i - i % 2 + 1]),
    });
    // u[4g + c]: column c (and c + 4 in the high half) of rows 4g..4g+4.
    let u: [__m256; 8] = std::array::from_fn(|i| {
        let (g, col) = (4 * (i / 4), i % 4);
        let (a, b) = (t[g + col / 2], t[g + 2 + col / 2]);
        match col % 2 {
            0 => _mm256_shuffle_ps::<0x44>(a, b),
            _ => _mm256_shuffle_ps::<0xee>(a, b),
        }
    });
    std::array::from_fn(|j| match j < 4 {
        true => _mm256_permute2f128_ps::<0x20>(u[j], u[4 + j]),
        false => _mm256_permute2f128_ps::<0x31>(u[j - 4], u[j]),
    })
}

/// Each of 8 weight rows' quants (`q[c]`, unsigned bytes) · one activation block (`x`): lane c
/// of the first vector is row c's sum over elements 0..16, of the second over 16..32 (the
/// halves Q6_K scales apart), in exact integers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn block_sums(q: &[__m256i; ROWS], x: __m256i) -> (__m256i, __m256i) {
    // Lane l of p[c]: row c's elements 4l..4l+4 times x's.
    let p: [__m256i; ROWS] =
        std::array::from_fn(|c| _mm256_dpbusd_epi32(_mm256_setzero_si256(), q[c], x));
    // Pairwise sums within each 128-bit half: after two rounds, half h of g0 holds rows 0..4's
    // sums over lanes 4h..4h+4, of g1 rows 4..8's.
    let h: [__m256i; 4] = std::array::from_fn(|i| _mm256_hadd_epi32(p[2 * i], p[2 * i + 1]));
    let g0 = _mm256_hadd_epi32(h[0], h[1]);
    let g1 = _mm256_hadd_epi32(h[2], h[3]);
    (
        _mm256_permute2x128_si256(g0, g1, 0x20),
        _mm256_permute2x128_si256(g0, g1, 0x31),
    )
}
