//! The panel kernels' arithmetic (`panel::gemm`) for a few activation rows, straight from the
//! weight blocks, without the repack.
//!
//! A repacked panel pays for itself only over several activation rows: for one (decode) the
//! repack costs more than the product. The row tiles (`kernels`) need no repack but round
//! otherwise (a block product converted per lane, K-quants per super-block), so a row computed
//! among a few others got other bits than among many. Here each group of 8 weight rows is
//! decoded to the quants, scales and mins `panel::repack` gives, two 32-element blocks (or
//! K-quant chunks) of a row per 512-bit vector; each row's block product is summed across lanes
//! in integers (exact, so any order gives the same sum), and the float steps are the panel
//! kernel's, operation for operation and in the same order, block after block: scale the block
//! sum, subtract the minimum times the activation sum. A row's result is then the panel
//! kernel's, bit for bit, whatever the number of rows: batch-invariant mode's products below
//! the panel counts, at the row tiles' decode speed (`qbench`, Xeon SPR, one row: Q4_0 / Q5_0 /
//! Q8_0 / MXFP4 0.9-1.1x the tiles, the K-quants ~0.6-0.7x, whose tiles sum a whole
//! super-block in integers).
use super::super::activations::RowsView;
use super::super::formats::{QuantType, E8M0_HALF};
use super::super::iq_grid::{grid_scale_values, grid_types};
use super::panel::{block_rows, has_min_field, offset_of, quants_b32, ROWS};
use super::prefetch_distance;
use std::arch::x86_64::*;

/// Activation rows per pass over a group's weights: the group's decoded block pair (one vector
/// per weight row) stays in registers while each activation row's products are summed.
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

/// `group_tile` for the 32-element formats (Q4_0, Q5_0, Q8_0, MXFP4, Q4_1, Q5_1, IQ4_NL): two
/// blocks per 512-bit vector (as `tile_k` takes two chunks), an odd last block on its own.
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
    let offset = _mm512_set1_ps(offset_of(ty));
    let ahead = prefetch_distance(ROWS, row_bytes);
    // Where each of the 16 scales of a block pair lies from the first row's first block:
    // lane i is row i % 8's block i / 8 (missing rows read row 0's, their quants are zero).
    let at = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
    let present = (1u16 << rows) - 1;
    let row_of = _mm512_maskz_mov_epi32(present | (present << 8), at);
    let second = _mm512_maskz_set1_epi32(0xff00, bb as i32);
    let lanes = _mm512_add_epi32(
        _mm512_mullo_epi32(row_of, _mm512_set1_epi32(row_bytes as i32)),
        second,
    );
    // Row c's quants of the block pair in q[c]; missing rows stay zero, as in a repacked panel.
    let mut q = [_mm512_setzero_si512(); ROWS];
    let mut acc = [_mm256_setzero_ps(); R];
    let blocks = k / 32;
    for b in (0..blocks - blocks % 2).step_by(2) {
        let block = |c: usize, h: usize| w.as_ptr().add(c * row_bytes + (b + h) * bb);
        for (c, q) in q.iter_mut().enumerate().take(rows) {
            _mm_prefetch::<_MM_HINT_T0>(block(c, 0).wrapping_add(ahead) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(block(c, 1).wrapping_add(ahead) as *const i8);
            let lo = quants_b32(ty, block(c, 0));
            *q = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), quants_b32(ty, block(c, 1)));
        }
        // The 16 block scales (the first 4 bytes of every block: f16 d, or MXFP4's exponent;
        // Q4_1 / Q5_1's f16 m after d).
        let heads = _mm512_i32gather_epi32::<1>(lanes, block(0, 0) as *const i32);
        let s = match ty {
            QuantType::Mxfp4 => {
                let exps = _mm512_and_si512(heads, _mm512_set1_epi32(0xff));
                _mm512_i32gather_ps::<4>(exps, E8M0_HALF.as_ptr())
            }
            _ => _mm512_cvtph_ps(_mm512_cvtepi32_epi16(heads)),
        };
        let m = match has_min_field(ty) {
            true => {
                let m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(heads)));
                _mm512_castsi512_ps(_mm512_xor_si512(
                    _mm512_castps_si512(m),
                    _mm512_set1_epi32(i32::MIN),
                ))
            }
            false => _mm512_mul_ps(s, offset),
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            let xv = _mm512_loadu_si512(x.qs[r].add(32 * b) as *const __m512i);
            let (za, zb) = pair_sums(&q, xv);
            let i = _mm512_add_epi32(za, zb);
            for h in 0..2 {
                let (dx, fs) = (*x.d[r].add(b + h), *x.fs32[r].add(b + h));
                *acc = block_step(*acc, half(i, h), half_ps(s, h), half_ps(m, h), dx, fs);
            }
        }
    }
    if blocks % 2 == 1 {
        let b = blocks - 1;
        let mut q = [_mm256_setzero_si256(); ROWS];
        let block = |c: usize| w.as_ptr().wrapping_add(c * row_bytes + b * bb);
        let (s, m) = block_rows(ty, rows, block, &mut q);
        for (r, acc) in acc.iter_mut().enumerate() {
            let xv = _mm256_loadu_si256(x.qs[r].add(32 * b) as *const __m256i);
            let (ia, ib) = block_sums(&q, xv);
            let (dx, fs) = (*x.d[r].add(b), *x.fs32[r].add(b));
            *acc = block_step(*acc, _mm256_add_epi32(ia, ib), s, m, dx, fs);
        }
    }
    acc
}

/// One block's float steps, in the panel kernel's order (`panel::tile`):
/// `acc + isum · (scale · dx) − min · fs`, each lane a weight row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn block_step(acc: __m256, isum: __m256i, scale: __m256, min: __m256, dx: f32, fs: f32) -> __m256 {
    let product = _mm256_mul_ps(scale, _mm256_set1_ps(dx));
    let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), product, acc);
    _mm256_fnmadd_ps(min, _mm256_set1_ps(fs), acc)
}

/// Half h (0: low, 1: high) of a 512-bit float vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn half_ps(v: __m512, h: usize) -> __m256 {
    _mm256_castsi256_ps(half(_mm512_castps_si512(v), h))
}

/// `group_tile` for the K-quants (256-element super-blocks of eight 32-element chunks), two
/// chunks per 512-bit vector: half the dot-product instructions and a cheaper sum across lanes
/// than one chunk per 256-bit vector; the float steps still run chunk by chunk.
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
    let split = ty.scales_per_16();
    let ahead = prefetch_distance(ROWS, row_bytes);
    // Row c's quants of the chunk pair in q[c]; missing rows stay zero, as in a repacked panel.
    let mut q = [_mm512_setzero_si512(); ROWS];
    let mut acc = [_mm256_setzero_ps(); R];
    for u in 0..k / 256 {
        let unit = |c: usize| w.as_ptr().add(c * row_bytes + u * bb);
        for c in 0..rows {
            for line in (0..bb).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(unit(c).wrapping_add(line + ahead) as *const i8);
            }
        }
        let fields = k_fields(ty, rows, unit(0), row_bytes);
        for pair in 0..4 {
            for (c, q) in q.iter_mut().enumerate().take(rows) {
                *q = k_pair(ty, unit(c), pair);
            }
            let b = 8 * u + 2 * pair;
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm512_loadu_si512(x.qs[r].add(32 * b) as *const __m512i);
                let (za, zb) = pair_sums(&q, xv);
                for (h, fields) in fields[2 * pair..2 * pair + 2].iter().enumerate() {
                    let [s_a, s_b, m_a, m_b] = *fields;
                    if !split {
                        let i = half(_mm512_add_epi32(za, zb), h);
                        let (dx, fs) = (*x.d[r].add(b + h), *x.fs32[r].add(b + h));
                        *acc = block_step(*acc, i, s_a, m_a, dx, fs);
                        continue;
                    }
                    // Q6_K, Q2_K, Q3_K: each half of the chunk scaled on its own, then both
                    // minimums.
                    let dx = _mm256_set1_ps(*x.d[r].add(b + h));
                    let (ia, ib) = (half(za, h), half(zb, h));
                    let fa = _mm256_set1_ps(*x.fs16[r].add(2 * (b + h)));
                    let fb = _mm256_set1_ps(*x.fs16[r].add(2 * (b + h) + 1));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia), _mm256_mul_ps(s_a, dx), *acc);
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ib), _mm256_mul_ps(s_b, dx), *acc);
                    *acc = _mm256_fnmadd_ps(m_a, fa, *acc);
                    *acc = _mm256_fnmadd_ps(m_b, fb, *acc);
                }
            }
        }
    }
    acc
}

/// Half h (0: low, 1: high) of a 512-bit vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn half(v: __m512i, h: usize) -> __m256i {
    match h {
        0 => _mm512_castsi512_si256(v),
        _ => _mm512_extracti64x4_epi64::<1>(v),
    }
}

/// Chunks 2·pair and 2·pair + 1 of the K-quant super-block at `p`, as unsigned bytes in the
/// low and high halves of one vector: the quants `panel::decode_unit` gives those chunks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k_pair(ty: QuantType, p: *const u8, pair: usize) -> __m512i {
    let low4 = _mm512_set1_epi8(0x0f);
    match ty {
        grid_types!() => {
            let chunk = |j: usize| super::grid_quants(ty, p, j, true);
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(chunk(2 * pair)), chunk(2 * pair + 1))
        }
        QuantType::Iq4Xs => {
            // Chunk j: the codebook values of the 16 bytes at 8 + 16j, biased by 128.
            let chunk = |j: usize| super::iq4_quants(p.add(8 + 16 * j), true);
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(chunk(2 * pair)), chunk(2 * pair + 1))
        }
        QuantType::Q2K | QuantType::Q3K => {
            // Chunks 4h + jj and 4h + jj + 1 (jj = 2·(pair % 2)): bits 2jj..2jj+2 and the next
            // two of the 32 bytes of qs at 32h, and Q3_K's bits 4h + jj and the next of hmask,
            // as 4 (`panel::decode_unit`).
            let (h, jj) = (pair / 2, 2 * (pair % 2));
            let q3 = ty == QuantType::Q3K;
            let qs = p.add(if q3 { 32 } else { 16 } + 32 * h);
            let bytes = _mm512_broadcast_i64x4(_mm256_loadu_si256(qs as *const __m256i));
            let s = 2 * jj as i64;
            let shift = _mm512_setr_epi64(s, s, s, s, s + 2, s + 2, s + 2, s + 2);
            let v = _mm512_and_si512(_mm512_srlv_epi64(bytes, shift), _mm512_set1_epi8(3));
            if !q3 {
                return v;
            }
            let hm = _mm256_loadu_si256(p as *const __m256i);
            let bit =
                |j: usize| _mm256_test_epi8_mask(hm, _mm256_set1_epi8((1u8 << j) as i8)) as u64;
            let third = bit(4 * h + jj) | bit(4 * h + jj + 1) << 32;
            _mm512_or_si512(v, _mm512_maskz_mov_epi8(third, _mm512_set1_epi8(4)))
        }
        QuantType::Q6K => {
            // Chunks 4h + kk: low bits from the 64 bytes at 64h (low nibbles for kk 0 and 1,
            // high ones for 2 and 3), high bits 2kk..2kk+2 of the 32 bytes at 128 + 32h.
            let (h, upper) = (pair / 2, pair % 2 == 1);
            let ql = _mm512_loadu_si512(p.add(64 * h) as *const __m512i);
            let lo = _mm512_and_si512(
                if upper {
                    _mm512_srli_epi16::<4>(ql)
                } else {
                    ql
                },
                low4,
            );
            let qh =
                _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(128 + 32 * h) as *const __m256i));
            let halves = |a: i16, b: i16| {
                _mm512_inserti64x4::<1>(_mm512_set1_epi16(a), _mm256_set1_epi16(b))
            };
            // Bits 2kk..2kk+2 to bits 4..6: kk 0 and 1 shift left by 4 and 2, kk 2 and 3 right
            // by 0 and 2.
            let hi = match upper {
                false => _mm512_sllv_epi16(qh, halves(4, 2)),
                true => _mm512_srlv_epi16(qh, halves(0, 2)),
            };
            _mm512_or_si512(lo, _mm512_and_si512(hi, _mm512_set1_epi8(0x30)))
        }
        _ => {
            let five = ty == QuantType::Q5K;
            let qs = p.add(if five { 48 } else { 16 });
            let bytes =
                _mm512_broadcast_i64x4(_mm256_loadu_si256(qs.add(32 * pair) as *const __m256i));
            // Low nibbles (chunk 2·pair) in the low half, high nibbles in the high one.
            let shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
            let v = _mm512_and_si512(_mm512_srlv_epi64(bytes, shift), low4);
            if !five {
                return v;
            }
            let qh = _mm256_loadu_si256(p.add(16) as *const __m256i);
            let bit =
                |j: usize| _mm256_test_epi8_mask(qh, _mm256_set1_epi8((1u8 << j) as i8)) as u64;
            let fifth = bit(2 * pair) | bit(2 * pair + 1) << 32;
            _mm512_or_si512(v, _mm512_maskz_mov_epi8(fifth, _mm512_set1_epi8(0x10)))
        }
    }
}

/// Each of 8 weight rows' chunk pairs (`q[c]`, unsigned bytes) · the activations' (`x`), in
/// exact integers: the first vector holds, per chunk (low half: the first), row c's sum over
/// elements 0..16 in lane c; the second over 16..32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_sums(q: &[__m512i; ROWS], x: __m512i) -> (__m512i, __m512i) {
    // Lane l of p[c]: row c's elements 4l..4l+4 times x's; 128-bit quarter t holds elements
    // 16t..16t+16 of the pair.
    let p: [__m512i; ROWS] =
        std::array::from_fn(|c| _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[c], x));
    // Within each quarter: a[i] = rows 2i, 2i+1 interleaved, pairs of lanes summed; then b[g]
    // = rows 4g..4g+4, each quarter's four lanes summed.
    let a: [__m512i; 4] = std::array::from_fn(|i| {
        let (u, v) = (p[2 * i], p[2 * i + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi32(u, v), _mm512_unpackhi_epi32(u, v))
    });
    let b: [__m512i; 2] = std::array::from_fn(|g| {
        let (u, v) = (a[2 * g], a[2 * g + 1]);
        _mm512_add_epi32(_mm512_unpacklo_epi64(u, v), _mm512_unpackhi_epi64(u, v))
    });
    // Quarters 0 and 2 (elements 0..16 of each chunk) of rows 0..4, then 4..8; likewise 1, 3.
    let first = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    let second = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    (
        _mm512_permutex2var_epi64(b[0], first, b[1]),
        _mm512_permutex2var_epi64(b[0], second, b[1]),
    )
}

/// A K-quant super-block's scales and mins for the 8 rows of a group (`first`: row 0's
/// super-block, rows `row_bytes` apart; lanes from `rows` on read row 0's): per chunk j,
/// `[scale of 0..16, of 16..32, min of 0..16, of 16..32]` with row c in lane c, each the value
/// `panel::decode_unit` computes for the panel (the same products of the same f32 operands).
/// The packed fields of all 8 rows are gathered into one vector each and unpacked lane-wise.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k_fields(
    ty: QuantType,
    rows: usize,
    first: *const u8,
    row_bytes: usize,
) -> [[__m256; 4]; 8] {
    let present = ((1u16 << rows) - 1) as u8;
    let row_of = _mm256_maskz_mov_epi32(present, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    let at = _mm256_mullo_epi32(row_of, _mm256_set1_epi32(row_bytes as i32));
    // Bytes off..off + 4 of every row's super-block, row c in lane c.
    let dword = |off: usize| _mm256_i32gather_epi32::<1>(first.add(off) as *const i32, at);
    let f16_lanes = |v: __m256i| _mm256_cvtph_ps(_mm256_cvtepi32_epi16(v));
    let count = |n: u32| _mm256_set1_epi32(n as i32);
    match ty {
        grid_types!() => {
            // Per row (lanes from `rows` on: row 0's), each scale D·s_g as `panel::decode_unit`
            // computes it; the minimum is the bias of 128 times the scale.
            let per_row: [[f32; 16]; 8] = std::array::from_fn(|c| {
                let row = if c < rows { c } else { 0 };
                let block =
                    std::slice::from_raw_parts(first.add(row * row_bytes), ty.block_bytes());
                grid_scale_values(ty, block)
            });
            let lanes = |g: usize| {
                let v: [f32; 8] = std::array::from_fn(|c| per_row[c][g]);
                _mm256_loadu_ps(v.as_ptr())
            };
            let k128 = _mm256_set1_ps(128.0);
            std::array::from_fn(|j| {
                let (sa, sb) = (lanes(2 * j), lanes(2 * j + 1));
                [sa, sb, _mm256_mul_ps(k128, sa), _mm256_mul_ps(k128, sb)]
            })
        }
        QuantType::Iq4Xs => {
            // d (f16) and scales_h at 0, scales_l at 4 (`formats::iq4xs_scales`); the minimum
            // is the bias of 128 times the scale.
            let head = dword(0);
            let d = f16_lanes(head);
            let low = dword(4);
            let k128 = _mm256_set1_ps(128.0);
            std::array::from_fn(|j| {
                let j = j as u32;
                let l = _mm256_and_si256(
                    _mm256_srlv_epi32(low, count(8 * (j / 2) + 4 * (j % 2))),
                    count(0x0f),
                );
                let h = _mm256_and_si256(_mm256_srlv_epi32(head, count(16 + 2 * j)), count(3));
                let six = _mm256_or_si256(l, _mm256_slli_epi32::<4>(h));
                let s = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(six, count(32))));
                [s, s, _mm256_mul_ps(k128, s), _mm256_mul_ps(k128, s)]
            })
        }
        QuantType::Q2K => {
            // Scale (low nibble) and min (high) of every 16 in bytes 0..16; d, dmin at 80.
            let dd = dword(80);
            let (d, dmin) = (f16_lanes(dd), f16_lanes(_mm256_srli_epi32::<16>(dd)));
            let sc = [dword(0), dword(4), dword(8), dword(12)];
            let nibble = |v: __m256i, pos: u32, high: bool| {
                let shifted = _mm256_srlv_epi32(v, count(8 * pos + if high { 4 } else { 0 }));
                _mm256_cvtepi32_ps(_mm256_and_si256(shifted, count(0x0f)))
            };
            std::array::from_fn(|j| {
                let v = sc[j / 2];
                let pos = 2 * (j as u32 % 2);
                let s = |p: u32| _mm256_mul_ps(d, nibble(v, p, false));
                let m = |p: u32| _mm256_mul_ps(dmin, nibble(v, p, true));
                [s(pos), s(pos + 1), m(pos), m(pos + 1)]
            })
        }
        QuantType::Q3K => {
            // Sixteen 6-bit scales in the 12 bytes at 96 (`formats::q3k_scales`); d: the f16
            // at 108 (read with the two bytes before it, inside the 110-byte block).
            let d = f16_lanes(_mm256_srli_epi32::<16>(dword(106)));
            let (lo, high) = ([dword(96), dword(100)], dword(104));
            let k4 = _mm256_set1_ps(4.0);
            // Scale g: nibble g / 8 of byte g % 8, with bits 2·(g / 4).. of byte 8 + g % 4.
            let scale = |g: u32| {
                let low =
                    _mm256_srlv_epi32(lo[(g % 8 / 4) as usize], count(8 * (g % 4) + 4 * (g / 8)));
                let top = _mm256_srlv_epi32(high, count(8 * (g % 4) + 2 * (g / 4)));
                let six = _mm256_or_si256(
                    _mm256_and_si256(low, count(0x0f)),
                    _mm256_slli_epi32::<4>(_mm256_and_si256(top, count(3))),
                );
                _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(six, count(32))))
            };
            std::array::from_fn(|j| {
                let (sa, sb) = (scale(2 * j as u32), scale(2 * j as u32 + 1));
                [sa, sb, _mm256_mul_ps(k4, sa), _mm256_mul_ps(k4, sb)]
            })
        }
        QuantType::Q6K => {
            // Scales: 16 signed bytes at 192; d: the f16 at 208 (read with the two scale bytes
            // before it, so the gather stays inside the 210-byte block).
            let d = f16_lanes(_mm256_srli_epi32::<16>(dword(206)));
            let sc = [dword(192), dword(196), dword(200), dword(204)];
            // Signed byte `pos` of each lane.
            let byte = |v: __m256i, pos: u32| {
                let top = _mm256_sllv_epi32(v, count(24 - 8 * pos));
                _mm256_cvtepi32_ps(_mm256_srai_epi32::<24>(top))
            };
            let k32 = _mm256_set1_ps(32.0);
            std::array::from_fn(|j| {
                let v = sc[j / 2];
                let pos = 2 * (j as u32 % 2);
                let sa = _mm256_mul_ps(d, byte(v, pos));
                let sb = _mm256_mul_ps(d, byte(v, pos + 1));
                [sa, sb, _mm256_mul_ps(k32, sa), _mm256_mul_ps(k32, sb)]
            })
        }
        _ => {
            // d and dmin (f16) at 0, then 12 bytes of 6-bit scales and mins, unpacked as
            // `formats::k_scales_mins` does, 4 bytes per lane at a time.
            let dd = dword(0);
            let d = f16_lanes(dd);
            let dmin = f16_lanes(_mm256_srli_epi32::<16>(dd));
            let (a, b, c) = (dword(4), dword(8), dword(12));
            let and = |v: __m256i, mask: u32| _mm256_and_si256(v, count(mask));
            let high2 =
                |v: __m256i| _mm256_slli_epi32::<4>(and(_mm256_srli_epi32::<6>(v), 0x0303_0303));
            let sc = [
                and(a, 0x3f3f_3f3f),
                _mm256_or_si256(and(c, 0x0f0f_0f0f), high2(a)),
            ];
            let mn = [
                and(b, 0x3f3f_3f3f),
                _mm256_or_si256(and(_mm256_srli_epi32::<4>(c), 0x0f0f_0f0f), high2(b)),
            ];
            // Unsigned byte j % 4 of the word holding field j.
            let byte = |v: &[__m256i; 2], j: usize| {
                let shifted = _mm256_srlv_epi32(v[j / 4], count(8 * (j as u32 % 4)));
                _mm256_cvtepi32_ps(and(shifted, 0xff))
            };
            std::array::from_fn(|j| {
                let s = _mm256_mul_ps(d, byte(&sc, j));
                let m = _mm256_mul_ps(dmin, byte(&mn, j));
                [s, s, m, m]
            })
        }
    }
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
