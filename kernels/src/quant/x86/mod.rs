//! x86_64 SIMD kernels, chosen at run time: AVX-512 VNNI (with VL/BW, e.g. Zen 4, Ice Lake and
//! later) or AVX2+FMA+F16C (Haswell and later). Older CPUs use the scalar reference. On CPUs
//! with AMX (Sapphire Rapids and later) prefill products run on its tiles in bf16
//! (`amx_gemm`). On AVX-512 the row tiles keep 256-bit vectors; the products that run whole
//! 512-bit operations best use them: a few activation rows with K-quant weights
//! (`wide_kquant`, decode and small batches) and the repacked panels (`panel`, prefill and
//! batches from `matmul::fused_panel_min_rows` rows on).
pub mod amx;
pub mod amx_gemm;
pub(crate) mod bf16_tiles;
mod kernels;
pub mod panel;
mod panel_rows;
mod prim_avx2;
mod prim_vnni;
mod quantize;
mod ternary;
mod wide_kquant;

/// AVX2 + FMA + F16C: 16 vector registers, so tiles of 2 weight rows × 4 activation rows.
pub mod avx2 {
    use super::prim_avx2 as prim;
    super::kernels::x86_kernels!("avx2,fma,f16c", C = 2, R = 4);
}

/// AVX-512 VNNI tiles: 32 registers, so 4 × 4 tiles; 256-bit vectors, but K-quants on 512-bit
/// ones (`wide_kquant`).
pub mod vnni {
    use super::prim_vnni as prim;
    super::kernels::x86_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        C = 4,
        R = 4,
        tile_k from wide_kquant
    );
}

/// The 32 quants of the MXFP4 block at `p` as unsigned bytes: each doubled e2m1 code plus
/// 12 (0..=24), looked up by nibble (element i is the low nibble of byte i of the codes,
/// element i + 16 the high one). Shared by the tile kernels and the VNNI panel repack.
///
/// # Safety
/// The CPU must have AVX2 and a whole MXFP4 block must start at `p`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn mxfp4_quants(p: *const u8) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let table =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(MXFP4_BIASED.as_ptr() as *const __m128i));
    let qs = _mm_loadu_si128(p.add(1) as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(qs, 4), qs);
    _mm256_shuffle_epi8(table, _mm256_and_si256(both, _mm256_set1_epi8(0x0f)))
}

/// IQ4_NL's codebook values (`formats::IQ4NL_VALUES`) of the 32 nibbles of the 16 bytes at
/// `p` (element i the low nibble of byte i, element i + 16 its high one): signed bytes, or
/// with `biased` the values plus 128 as unsigned bytes (1..=241; the offset removed through
/// the activation sums).
///
/// # Safety
/// The CPU must have AVX2 and 16 bytes must be readable at `p`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn iq4_quants(p: *const u8, biased: bool) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let table = match biased {
        true => IQ4NL_BIASED.as_ptr(),
        false => super::formats::IQ4NL_VALUES.as_ptr(),
    };
    let table = _mm256_broadcastsi128_si256(_mm_loadu_si128(table as *const __m128i));
    let qs = _mm_loadu_si128(p as *const __m128i);
    let both = _mm256_set_m128i(_mm_srli_epi16(qs, 4), qs);
    _mm256_shuffle_epi8(table, _mm256_and_si256(both, _mm256_set1_epi8(0x0f)))
}

/// Chunk `j` (32 elements) of the grid-type block at `p` (`iq_grid`) as magnitudes (unsigned
/// bytes, ≤ 62) and signs (bytes ±1, looked up per group of 8 as the codebook bytes are);
/// IQ1's and the ternary types' signed values plus delta split into their absolute values and
/// signs (a zero value gets sign 0). The row tiles multiply the magnitudes with the
/// activations carrying the signs (`_mm256_sign_epi8`), so the weights' signs cost one
/// operation per activation row.
///
/// # Safety
/// The CPU must have AVX2 and a whole block of `ty` (a grid type) must start at `p`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn grid_split(
    ty: super::QuantType,
    p: *const u8,
    j: usize,
) -> (std::arch::x86_64::__m256i, std::arch::x86_64::__m256i) {
    use super::iq_grid::Signs;
    use std::arch::x86_64::*;
    let one = _mm256_set1_epi8(1);
    if super::iq_grid::is_ternary(ty) {
        let v = ternary::ternary_values(ty, p, j);
        return (_mm256_abs_epi8(v), _mm256_sign_epi8(one, v));
    }
    let c = super::iq_grid::grid_chunk(ty, std::slice::from_raw_parts(p, ty.block_bytes()), j);
    let word = |g: usize| c.grid[g] as i64;
    let v = _mm256_setr_epi64x(word(0), word(1), word(2), word(3));
    if super::iq_grid::has_delta(ty) {
        let delta = |g: usize| (c.delta[g] as u8 as u64).wrapping_mul(0x0101_0101_0101_0101) as i64;
        let v = _mm256_add_epi8(
            v,
            _mm256_setr_epi64x(delta(0), delta(1), delta(2), delta(3)),
        );
        return (_mm256_abs_epi8(v), _mm256_sign_epi8(one, v));
    }
    let sign = match c.sign {
        Signs::Multipliers(m) => {
            _mm256_setr_epi64x(m[0] as i64, m[1] as i64, m[2] as i64, m[3] as i64)
        }
        Signs::Bits(bits) => {
            // Byte i takes sign byte i / 8 and keeps bit i % 8: all ones where that element
            // is negative, or'ed with 1 into ±1.
            let spread = _mm256_shuffle_epi8(
                _mm256_set1_epi32(bits as i32),
                _mm256_setr_epi64x(
                    0,
                    0x0101_0101_0101_0101,
                    0x0202_0202_0202_0202,
                    0x0303_0303_0303_0303,
                ),
            );
            let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
            _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), one)
        }
    };
    (v, sign)
}

/// `grid_split`'s chunk as signed bytes, or with `biased` plus 128 as unsigned bytes (the
/// panels' form).
///
/// # Safety
/// As `grid_split`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn grid_quants(
    ty: super::QuantType,
    p: *const u8,
    j: usize,
    biased: bool,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let (magnitude, sign) = grid_split(ty, p, j);
    let v = _mm256_sign_epi8(magnitude, sign);
    if biased {
        _mm256_xor_si256(v, _mm256_set1_epi8(0x80u8 as i8))
    } else {
        v
    }
}

/// `IQ4NL_VALUES` plus 128, as the bytes of unsigned values.
const IQ4NL_BIASED: [i8; 16] = {
    let mut table = [0i8; 16];
    let mut i = 0;
    while i < 16 {
        table[i] = (super::formats::IQ4NL_VALUES[i] as u8 ^ 0x80) as i8;
        i += 1;
    }
    table
};

/// The offset `mxfp4_quants` adds to the doubled codes (removed through the activation sums).
pub(crate) const MXFP4_OFFSET: i32 = 12;

/// `MXFP4_DOUBLED` plus the offset: the lookup table of `mxfp4_quants`.
const MXFP4_BIASED: [i8; 16] = {
    let mut table = [0i8; 16];
    let mut i = 0;
    while i < 16 {
        table[i] = super::formats::MXFP4_DOUBLED[i] + MXFP4_OFFSET as i8;
        i += 1;
    }
    table
};

/// How far past the weight byte being read a tile of `rows` weight rows (contiguous,
/// `row_bytes` each) asks for weights: the same place in a row of a later tile, the first one
/// at least 8 KiB ahead. A fixed 8 KiB landed in a row of the tile itself whenever rows are
/// between 2 and 8 KiB long, bytes already on their way (Q6_K rows of K = 4864, 3990 bytes, as
/// Qwen2.5-0.5B's down projection: `qbench` cold copies, 2 threads, 33-37 -> 75-81 GB/s).
pub(crate) const fn prefetch_distance(rows: usize, row_bytes: usize) -> usize {
    let tile = rows * row_bytes;
    if tile == 0 {
        return 8192;
    }
    8192usize.div_ceil(tile) * tile
}

pub fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

pub fn has_vnni() -> bool {
    has_avx2()
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// Ask for every cache line of `bytes` (a hint: never faults). For a panel to be repacked
/// while the previous one is multiplied: its 8 rows are one contiguous run of a few KiB, which
/// the hardware prefetchers, stopping at page boundaries and ramping up slowly, leave mostly
/// to demand misses.
pub fn prefetch(bytes: &[u8]) {
    for line in bytes.chunks(64) {
        // SAFETY: SSE is part of x86_64; a prefetch of a valid address has no effect beyond
        // the cache.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr().cast(),
            )
        };
    }
}

/// Safe entry to `panel::repack` (VNNI): repack up to 8 weight rows into `out`.
pub fn repack_panel(
    ty: crate::quant::QuantType,
    w: &[u8],
    row_bytes: usize,
    k: usize,
    out: &mut [u8],
) {
    assert!(has_vnni(), "panel kernels need AVX-512 VNNI");
    assert!(
        Some(row_bytes) == ty.row_bytes(k)
            && w.len().is_multiple_of(row_bytes)
            && w.len() <= panel::ROWS * row_bytes
            && out.len() == panel::panel_bytes(k)
    );
    // SAFETY: the CPU has the features (checked above, cached by std), `w` is at most 8 whole
    // rows of K/block blocks of `ty` and `out` is one panel.
    unsafe { panel::repack(ty, w, row_bytes, k, out) }
}

/// Safe entry to `panel::gemm` (VNNI): `y` (x.rows × n, rows `ystride` apart) = x · Wᵀ from
/// repacked panels.
pub fn panel_gemm(
    ty: crate::quant::QuantType,
    panels: &[u8],
    n: usize,
    k: usize,
    x: &crate::quant::RowsView<'_>,
    y: &mut [f32],
    ystride: usize,
) {
    assert!(has_vnni(), "panel kernels need AVX-512 VNNI");
    assert!(
        k.is_multiple_of(ty.block_elems())
            && x.k == k
            && panels.len() == n.div_ceil(panel::ROWS) * panel::panel_bytes(k)
            && (x.rows <= 1 || ystride >= n)
            && (x.rows == 0 || y.len() >= (x.rows - 1) * ystride + n)
            && holds_panel_rows(x, k)
    );
    // SAFETY: features checked; panels hold every row of W repacked for this K; x has the
    // Panel format's buffers for `x.rows` rows of K; y holds x.rows rows of n, ystride apart.
    unsafe { panel::gemm(ty, panels, n, k, x, y, ystride) }
}

/// Whether `x` holds the Panel format's buffers for its rows of `k` values (what the panel
/// kernels read of every row).
fn holds_panel_rows(x: &crate::quant::RowsView<'_>, k: usize) -> bool {
    x.qs.len() >= x.rows * k
        && x.d.len() >= x.rows * k / 32
        && x.fs16.len() >= x.rows * k / 16
        && x.fs32.len() >= x.rows * k / 32
}

/// Safe entry to `panel_rows::rows` (VNNI): the panel kernels' products of the weight rows in
/// `w` for every row of `x` (activation row r's at `out[r * stride..]`), without a repack.
pub fn panel_rows(
    ty: crate::quant::QuantType,
    w: &[u8],
    row_bytes: usize,
    x: &crate::quant::RowsView<'_>,
    out: &mut [f32],
    stride: usize,
) {
    assert!(has_vnni(), "panel kernels need AVX-512 VNNI");
    let n = w.len() / row_bytes;
    let k = x.k;
    assert!(
        Some(row_bytes) == ty.row_bytes(k)
            && w.len().is_multiple_of(row_bytes)
            && (x.rows <= 1 || stride >= n)
            && (x.rows == 0 || out.len() >= (x.rows - 1) * stride + n)
            && holds_panel_rows(x, k)
    );
    // SAFETY: features checked; `w` is whole rows of K / block blocks (row_bytes is the row
    // length for K); x has the Panel format's buffers for its rows; out holds every product.
    unsafe { panel_rows::rows(ty, w, row_bytes, x, out, stride) }
}

/// Quantize activation blocks with AVX2 when the CPU has it (same bytes as the scalar loop);
/// false when it does not.
pub fn quantize(x: &[f32], block: usize, qs: &mut [i8], d: &mut [f32], s16: &mut [i32]) -> bool {
    if !has_avx2() {
        return false;
    }
    assert!(
        (block == 32 || block == 256)
            && x.len().is_multiple_of(block)
            && qs.len() == x.len()
            && d.len() == x.len() / block
            && s16.len() == x.len() / 16
    );
    // SAFETY: AVX2 and FMA are present; the buffer sizes were checked above.
    unsafe { quantize::quantize(x, block, qs, d, s16) };
    true
}

/// The VNNI tiles with their K-quants on 256-bit vectors too: what `wide_kquant` must match
/// bit for bit (tests only).
#[cfg(test)]
pub mod vnni256 {
    use super::prim_vnni as prim;
    super::kernels::x86_kernels!(
        "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
        C = 4,
        R = 4
    );
}
