//! Prefill GEMM with weight rows in vector lanes (AVX-512 VNNI).
//!
//! The tile kernels reduce each weight-row × activation-row block product across the eight
//! lanes of a vector, so every block pays a conversion and two float multiplies per pair of
//! rows. Here eight weight rows are first repacked (once per call, into scratch) so that lane c
//! of a vector holds four consecutive quants of row c: one `vpdpbusd` with four activation
//! bytes broadcast to every lane advances eight weight rows at once, and one conversion and
//! FMA finish a 32-element block for eight outputs.
//!
//! A panel is 8 weight rows × K. Per 32-element block it stores 8 vectors of quants (vector v:
//! quants 4v..4v+4 of each row, as unsigned bytes) and four f32 vectors over the rows: scale
//! and min of elements 0..16, then of 16..32 (equal unless the format scales per 16: Q6_K,
//! Q2_K, Q3_K). Every format becomes value = scale·q − min: Q4_0/Q5_0 have min = 8d/16d, Q8_0
//! is read biased by 128 (min = 128d), MXFP4's doubled codes by 12 (min = 12d), Q4_1/Q5_1
//! carry −m, Q4_K/Q5_K dmin·m_j, Q2_K dmin·m_g, Q6_K 32·scale, Q3_K 4·scale, and IQ4_NL /
//! IQ4_XS's codebook values are read biased by 128 (min = 128·scale). The activations come in the `Panel` format: per 32 a scale and, per 16 and
//! 32, scale × quant sum, which the mins multiply.
use super::super::activations::RowsView;
use super::super::formats::{iq4xs_scales, k_scales_mins, q3k_scales, QuantType, E8M0_HALF};
use super::super::iq_grid::{grid_scale_values, grid_types};
use std::arch::x86_64::*;

/// Weight rows per panel.
pub const ROWS: usize = 8;
/// Bytes per 32-element block of a panel: 8 quant vectors, then 4 f32 vectors.
const BLOCK: usize = 8 * 32 + 4 * 32;
/// Activation rows per register tile: 8 accumulators, 8 weight vectors and temporaries fit
/// AVX-512VL's 32 registers.
const R_TILE: usize = 8;

/// Bytes of one repacked panel for rows of `k` elements.
pub fn panel_bytes(k: usize) -> usize {
    k / 32 * BLOCK
}

/// The f16 at `p` as f32 (F16C).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn f16_of(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// Repack up to 8 rows (`w`: whole rows of `row_bytes`, each K = `k` elements of `ty`) into
/// `out` (`panel_bytes(k)` bytes; every byte is written, missing rows as zeros).
///
/// # Safety
/// The CPU must have AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI; `w` must hold at most 8 whole
/// rows of `k / ty.block_elems()` blocks each and `out` exactly `panel_bytes(k)` bytes.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn repack(ty: QuantType, w: &[u8], row_bytes: usize, k: usize, out: &mut [u8]) {
    debug_assert!(out.len() == panel_bytes(k) && w.len() <= ROWS * row_bytes);
    let rows = w.len() / row_bytes;
    let (elems, bb) = (ty.block_elems(), ty.block_bytes());
    let chunks = elems / 32;
    // [chunk][row]: the decoded quants of one unit (a block, or a K-quant super-block's eight
    // 32-chunks), transposed into the panel once all rows are in.
    let mut q = [[_mm256_setzero_si256(); ROWS]; 8];
    if rows < ROWS {
        // Missing rows: zero quants, scales and mins.
        out.fill(0);
    }
    if chunks == 1 {
        // 32-element formats: the eight rows' scales are gathered and converted together, and
        // their scale and min fields written as whole vectors (a quarter of the repack's
        // stores otherwise, one float at a time).
        for u in 0..k / 32 {
            let dst = out[u * BLOCK..(u + 1) * BLOCK].as_mut_ptr();
            let block = |c: usize| w.as_ptr().wrapping_add(c * row_bytes + u * bb);
            let (d, m) = block_rows(ty, rows, block, &mut q[0]);
            for (i, v) in [d, d, m, m].into_iter().enumerate() {
                _mm256_storeu_ps(dst.add(256 + 32 * i) as *mut f32, v);
            }
            for (v, tv) in transpose8(&q[0]).iter().enumerate() {
                _mm256_storeu_si256(dst.add(32 * v) as *mut __m256i, *tv);
            }
        }
        return;
    }
    for u in 0..k / elems {
        let dst = out[u * chunks * BLOCK..(u + 1) * chunks * BLOCK].as_mut_ptr();
        for c in 0..rows {
            let p = w.as_ptr().add(c * row_bytes + u * bb);
            decode_unit(ty, p, dst.add(4 * c), &mut q, c);
        }
        for (j, qj) in q.iter().enumerate().take(chunks) {
            let t = transpose8(qj);
            for (v, tv) in t.iter().enumerate() {
                _mm256_storeu_si256(dst.add(j * BLOCK + 32 * v) as *mut __m256i, *tv);
            }
        }
    }
}

/// The offset a 32-element format's quants are read with as unsigned bytes (its min is the
/// block scale times it); Q4_1 / Q5_1 have none (`has_min_field`).
pub(super) fn offset_of(ty: QuantType) -> f32 {
    match ty {
        QuantType::Q4_0 => 8.0,
        QuantType::Q5_0 => 16.0,
        QuantType::Mxfp4 => super::MXFP4_OFFSET as f32,
        QuantType::Q4_1 | QuantType::Q5_1 => 0.0,
        _ => 128.0,
    }
}

/// Whether a 32-element format stores its minimum (an f16 after d: Q4_1, Q5_1).
pub(super) fn has_min_field(ty: QuantType) -> bool {
    matches!(ty, QuantType::Q4_1 | QuantType::Q5_1)
}

/// −v, exactly (the sign bit flipped).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn neg(v: __m256) -> __m256 {
    _mm256_xor_ps(v, _mm256_set1_ps(-0.0))
}

/// One 32-element block of up to 8 weight rows (`block(c)`: where row c's starts; `q[c]` from
/// `rows` on is left as it is): each row's quants as unsigned bytes into `q[c]`, and the rows'
/// scales and minimums as a panel stores them (row c in lane c). The repack and `panel_rows`
/// (a lone last block) both take them from here, so the two give the same bits.
///
/// # Safety
/// As `repack`: the CPU has its features and `block(c)` for c < `rows` is a whole block of
/// `ty`, a 32-element format.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn block_rows(
    ty: QuantType,
    rows: usize,
    block: impl Fn(usize) -> *const u8,
    q: &mut [__m256i; ROWS],
) -> (__m256, __m256) {
    let mut bits = [0u16; ROWS];
    let mut min_bits = [0u16; ROWS];
    let mut exps = [0f32; ROWS];
    for (c, q) in q.iter_mut().enumerate().take(rows) {
        let p = block(c);
        *q = quants_b32(ty, p);
        match ty {
            QuantType::Mxfp4 => exps[c] = E8M0_HALF[*p as usize],
            _ => bits[c] = u16::from_le_bytes([*p, *p.add(1)]),
        }
        if has_min_field(ty) {
            min_bits[c] = u16::from_le_bytes([*p.add(2), *p.add(3)]);
        }
    }
    let d = match ty {
        QuantType::Mxfp4 => _mm256_loadu_ps(exps.as_ptr()),
        _ => _mm256_cvtph_ps(_mm_loadu_si128(bits.as_ptr() as *const __m128i)),
    };
    let m = match has_min_field(ty) {
        // value = d·q + m: the panel's minimum is −m.
        true => neg(_mm256_cvtph_ps(_mm_loadu_si128(
            min_bits.as_ptr() as *const __m128i
        ))),
        false => _mm256_mul_ps(d, _mm256_set1_ps(offset_of(ty))),
    };
    (d, m)
}

/// 8×8 transpose of 32-bit lanes: out[v] lane c = rows[c] lane v (quants 4v..4v+4 of row c).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn transpose8(rows: &[__m256i; 8]) -> [__m256i; 8] {
    let t: [__m256i; 8] = std::array::from_fn(|i| {
        let (a, b) = (rows[2 * (i / 2)], rows[2 * (i / 2) + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_epi32(a, b)
        } else {
            _mm256_unpackhi_epi32(a, b)
        }
    });
    // u[i]: rows 4·(i/4).. of column pairs; per 128-bit lane, u holds columns (c, c+4).
    let u: [__m256i; 8] = std::array::from_fn(|i| {
        let g = 4 * (i / 4);
        let (a, b) = (t[g + (i % 4) / 2], t[g + 2 + (i % 4) / 2]);
        if i % 2 == 0 {
            _mm256_unpacklo_epi64(a, b)
        } else {
            _mm256_unpackhi_epi64(a, b)
        }
    });
    std::array::from_fn(|v| {
        let (a, b) = (u[v % 4], u[4 + v % 4]);
        if v < 4 {
            _mm256_permute2x128_si256(a, b, 0x20)
        } else {
            _mm256_permute2x128_si256(a, b, 0x31)
        }
    })
}

/// The 32 quants of a Q4_0 / Q5_0 / Q8_0 / MXFP4 / Q4_1 / Q5_1 / IQ4_NL block at `p` as
/// unsigned bytes (value + offset).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn quants_b32(ty: QuantType, p: *const u8) -> __m256i {
    if ty == QuantType::Mxfp4 {
        return super::mxfp4_quants(p);
    }
    if ty == QuantType::Iq4Nl {
        return super::iq4_quants(p.add(2), true);
    }
    if ty == QuantType::Q8_0 {
        return _mm256_xor_si256(
            _mm256_loadu_si256(p.add(2) as *const __m256i),
            _mm256_set1_epi8(0x80u8 as i8),
        );
    }
    let at = match ty {
        QuantType::Q5_0 => 6,
        QuantType::Q4_1 => 4,
        QuantType::Q5_1 => 8,
        _ => 2,
    };
    // Low nibbles to the low 128-bit lane, high nibbles to the high one.
    let qs = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(at) as *const __m128i));
    let v = _mm256_and_si256(
        _mm256_srlv_epi64(qs, _mm256_setr_epi64x(0, 0, 4, 4)),
        _mm256_set1_epi8(0x0f),
    );
    if ty == QuantType::Q5_0 || ty == QuantType::Q5_1 {
        let h = p.add(if ty == QuantType::Q5_0 { 2 } else { 4 });
        let qh = u32::from_le_bytes([*h, *h.add(1), *h.add(2), *h.add(3)]);
        _mm256_or_si256(v, _mm256_maskz_mov_epi8(qh, _mm256_set1_epi8(0x10)))
    } else {
        v
    }
}

/// Decode one K-quant super-block of a row (at `p`) into `q[chunk][c]`, and write its scales
/// and mins straight into the panel: `f` points at this row's first f32 of the unit's first
/// block (f32 field i of chunk j lives at `f + j·BLOCK + 256 + 32·i`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn decode_unit(
    ty: QuantType,
    p: *const u8,
    f: *mut u8,
    q: &mut [[__m256i; ROWS]; 8],
    c: usize,
) {
    let low4 = _mm256_set1_epi8(0x0f);
    let bit4 = _mm256_set1_epi8(0x10);
    let fields = |j: usize, s: [f32; 2], m: [f32; 2]| {
        for (i, v) in [s[0], s[1], m[0], m[1]].into_iter().enumerate() {
            std::ptr::write_unaligned(f.add(j * BLOCK + 256 + 32 * i) as *mut f32, v);
        }
    };
    match ty {
        // `repack` takes the 32-element formats in its own loop.
        QuantType::Q4_0
        | QuantType::Q5_0
        | QuantType::Q8_0
        | QuantType::Mxfp4
        | QuantType::Q4_1
        | QuantType::Q5_1
        | QuantType::Iq4Nl => {
            unreachable!("32-element blocks are not decoded per unit")
        }
        grid_types!() => {
            // Chunk j: the signed lattice values biased by 128, a scale per 16 (`iq_grid`).
            let s = grid_scale_values(ty, std::slice::from_raw_parts(p, ty.block_bytes()));
            for j in 0..8 {
                q[j][c] = super::grid_quants(ty, p, j, true);
                let (sa, sb) = (s[2 * j], s[2 * j + 1]);
                fields(j, [sa, sb], [128.0 * sa, 128.0 * sb]);
            }
        }
        QuantType::Iq4Xs => {
            // Chunk j: the codebook values of the 16 bytes at 8 + 16j, biased by 128.
            let d = f16_of(p);
            let scales = iq4xs_scales(std::slice::from_raw_parts(p, 8));
            for (j, &ls) in scales.iter().enumerate() {
                q[j][c] = super::iq4_quants(p.add(8 + 16 * j), true);
                let s = d * (ls as i32 - 32) as f32;
                fields(j, [s, s], [128.0 * s, 128.0 * s]);
            }
        }
        QuantType::Q2K | QuantType::Q3K => {
            // Chunk j = 4h + jj: bits 2jj..2jj+2 of qs[32h..] (Q3_K: plus 4 where bit j of
            // hmask[l] is set; read unsigned, its offset of 4 is the minimum 4·scale).
            let three = _mm256_set1_epi8(3);
            let q3 = ty == QuantType::Q3K;
            let qs_at = if q3 { 32 } else { 16 };
            let hm = _mm256_loadu_si256(p as *const __m256i);
            let scales = match q3 {
                true => q3k_scales(std::slice::from_raw_parts(p.add(96), 12)),
                false => [0; 16],
            };
            let (d, dmin) = match q3 {
                true => (f16_of(p.add(108)), 0.0),
                false => (f16_of(p.add(80)), f16_of(p.add(82))),
            };
            for h in 0..2 {
                let mut bytes = _mm256_loadu_si256(p.add(qs_at + 32 * h) as *const __m256i);
                for jj in 0..4 {
                    let j = 4 * h + jj;
                    let mut v = _mm256_and_si256(bytes, three);
                    bytes = _mm256_srli_epi16(bytes, 2);
                    if q3 {
                        let bit = _mm256_test_epi8_mask(hm, _mm256_set1_epi8((1u8 << j) as i8));
                        v = _mm256_or_si256(v, _mm256_maskz_mov_epi8(bit, _mm256_set1_epi8(4)));
                    }
                    q[j][c] = v;
                    let field = |g: usize| match q3 {
                        true => {
                            let s = d * (scales[g] as i32 - 32) as f32;
                            (s, 4.0 * s)
                        }
                        false => {
                            let b = *p.add(g);
                            (d * (b & 0x0f) as f32, dmin * (b >> 4) as f32)
                        }
                    };
                    let ((sa, ma), (sb, mb)) = (field(2 * j), field(2 * j + 1));
                    fields(j, [sa, sb], [ma, mb]);
                }
            }
        }
        QuantType::Q4K | QuantType::Q5K => {
            let (d, dmin) = (f16_of(p), f16_of(p.add(2)));
            let (sc, mn) = k_scales_mins(std::slice::from_raw_parts(p.add(4), 12));
            let five = ty == QuantType::Q5K;
            let qs = p.add(if five { 48 } else { 16 });
            let qh = _mm256_loadu_si256(p.add(16) as *const __m256i);
            for pair in 0..4 {
                let bytes = _mm256_loadu_si256(qs.add(32 * pair) as *const __m256i);
                for h in 0..2 {
                    let j = 2 * pair + h;
                    let mut v = if h == 0 {
                        _mm256_and_si256(bytes, low4)
                    } else {
                        _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4)
                    };
                    if five {
                        let bit = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((1u8 << j) as i8));
                        v = _mm256_or_si256(v, _mm256_maskz_mov_epi8(bit, bit4));
                    }
                    q[j][c] = v;
                    fields(j, [d * sc[j] as f32; 2], [dmin * mn[j] as f32; 2]);
                }
            }
        }
        QuantType::Q6K => {
            let d = f16_of(p.add(208));
            let scales = p.add(192) as *const i8;
            let mask = _mm256_set1_epi8(0x30);
            for h in 0..2 {
                let qh = _mm256_loadu_si256(p.add(128 + 32 * h) as *const __m256i);
                for kk in 0..4 {
                    let ql = _mm256_loadu_si256(p.add(64 * h + 32 * (kk % 2)) as *const __m256i);
                    let lo = if kk < 2 { ql } else { _mm256_srli_epi16(ql, 4) };
                    // High bits 2kk..2kk+2 to bits 4..6.
                    let hi = match kk {
                        0 => _mm256_slli_epi16(qh, 4),
                        1 => _mm256_slli_epi16(qh, 2),
                        2 => qh,
                        _ => _mm256_srli_epi16(qh, 2),
                    };
                    let j = 4 * h + kk;
                    q[j][c] =
                        _mm256_or_si256(_mm256_and_si256(lo, low4), _mm256_and_si256(hi, mask));
                    let sa = d * *scales.add(2 * j) as f32;
                    let sb = d * *scales.add(2 * j + 1) as f32;
                    fields(j, [sa, sb], [32.0 * sa, 32.0 * sb]);
                }
            }
        }
    }
}

/// Weight rows one step of `gemm` covers: two panels side by side in 512-bit vectors.
pub const GEMM_ROWS: usize = 2 * ROWS;

/// y rows (`x.rows` of them, `n` wide, `ystride` apart) = x · Wᵀ from repacked panels
/// (`n.div_ceil(8)` of `panel_bytes(k)` bytes, in order).
///
/// Two panels at a time: lane c of a 512-bit vector is row c of the first panel for c < 8 and
/// row c − 8 of the second, so each broadcast activation quad advances 16 weight rows (twice
/// the work per instruction of a 256-bit vector, on CPUs that run 512-bit operations whole).
/// A lone last panel fills both halves (the upper results are dropped). Every lane computes
/// what a 256-bit lane would, operation for operation, so the bits do not depend on pairing.
///
/// # Safety
/// As `repack`; `x` must be in the `Panel` format with `x.k == k`, `ystride >= n` and
/// `y.len() >= (x.rows - 1) * ystride + n`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn gemm(
    ty: QuantType,
    panels: &[u8],
    n: usize,
    k: usize,
    x: &RowsView<'_>,
    y: &mut [f32],
    ystride: usize,
) {
    let split = ty.scales_per_16();
    let pb = panel_bytes(k);
    let count = n.div_ceil(ROWS);
    for q in 0..count.div_ceil(2) {
        let first = panels[2 * q * pb..].as_ptr();
        let second = match 2 * q + 1 < count {
            true => panels[(2 * q + 1) * pb..].as_ptr(),
            false => first,
        };
        let cols = (n - GEMM_ROWS * q).min(GEMM_ROWS);
        let mut r = 0;
        while r < x.rows {
            let cnt = (x.rows - r).min(R_TILE);
            let mut res = [[0f32; GEMM_ROWS]; R_TILE];
            macro_rules! go {
                ($($n:literal)*) => {
                    match (split, cnt) {
                        $((false, $n) => tile::<false, $n>([first, second], k / 32, x, r, &mut res),)*
                        $((true, $n) => tile::<true, $n>([first, second], k / 32, x, r, &mut res),)*
                        _ => unreachable!("tile of {cnt} rows"),
                    }
                };
            }
            go!(1 2 3 4 5 6 7 8);
            for (i, row) in res.iter().enumerate().take(cnt) {
                let at = (r + i) * ystride + GEMM_ROWS * q;
                y[at..at + cols].copy_from_slice(&row[..cols]);
            }
            r += cnt;
        }
    }
}

/// The 32 bytes at `offset` of both panels' blocks, as the halves of one vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn both(blk: [*const u8; 2], offset: usize) -> __m512i {
    let lo = _mm256_loadu_si256(blk[0].add(offset) as *const __m256i);
    let hi = _mm256_loadu_si256(blk[1].add(offset) as *const __m256i);
    _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
}

/// R activation rows (from r0) × two panels over all `nb` blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const SPLIT: bool, const R: usize>(
    panels: [*const u8; 2],
    nb: usize,
    x: &RowsView<'_>,
    r0: usize,
    res: &mut [[f32; GEMM_ROWS]; R_TILE],
) {
    let qs: [*const i8; R] = std::array::from_fn(|r| x.qs[(r0 + r) * x.k..].as_ptr());
    let d: [*const f32; R] = std::array::from_fn(|r| x.d[(r0 + r) * nb..].as_ptr());
    let fs16: [*const f32; R] = std::array::from_fn(|r| x.fs16[(r0 + r) * 2 * nb..].as_ptr());
    let fs32: [*const f32; R] = std::array::from_fn(|r| x.fs32[(r0 + r) * nb..].as_ptr());
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let blk = panels.map(|p| p.add(b * BLOCK));
        let w: [__m512i; 8] = std::array::from_fn(|v| both(blk, 32 * v));
        let s_a = _mm512_castsi512_ps(both(blk, 256));
        let s_b = _mm512_castsi512_ps(both(blk, 288));
        let m_a = _mm512_castsi512_ps(both(blk, 320));
        let m_b = _mm512_castsi512_ps(both(blk, 352));
        for r in 0..R {
            let xb = qs[r].add(32 * b) as *const i32;
            let xv = |v: usize| _mm512_set1_epi32(std::ptr::read_unaligned(xb.add(v)));
            let dx = _mm512_set1_ps(*d[r].add(b));
            if SPLIT {
                let mut ia = _mm512_setzero_si512();
                let mut ib = _mm512_setzero_si512();
                for v in 0..4 {
                    ia = _mm512_dpbusd_epi32(ia, w[v], xv(v));
                    ib = _mm512_dpbusd_epi32(ib, w[v + 4], xv(v + 4));
                }
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia), _mm512_mul_ps(s_a, dx), acc[r]);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ib), _mm512_mul_ps(s_b, dx), acc[r]);
                acc[r] = _mm512_fnmadd_ps(m_a, _mm512_set1_ps(*fs16[r].add(2 * b)), acc[r]);
                acc[r] = _mm512_fnmadd_ps(m_b, _mm512_set1_ps(*fs16[r].add(2 * b + 1)), acc[r]);
            } else {
                let mut i = _mm512_setzero_si512();
                for (v, wv) in w.iter().enumerate() {
                    i = _mm512_dpbusd_epi32(i, *wv, xv(v));
                }
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(s_a, dx), acc[r]);
                acc[r] = _mm512_fnmadd_ps(m_a, _mm512_set1_ps(*fs32[r].add(b)), acc[r]);
            }
        }
    }
    for (o, a) in res.iter_mut().zip(&acc) {
        _mm512_storeu_ps(o.as_mut_ptr(), *a);
    }
}
