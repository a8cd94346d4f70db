//! AVX2 + FMA dot products. A weight block is decoded once into 32 signed bytes and multiplied
//! with the same block of up to `R` activation rows: `maddubs` needs an unsigned operand, so
//! |w| is paired with x·sign(w), then pairs are summed to i32 and scaled in f32.
use super::activations::RowsView;
use super::blocks::{scale, QuantType};
use std::arch::x86_64::*;

/// Signed bytes of one Q5_0 block: low nibbles from `qs`, the fifth bit from `qh`; bytes whose
/// fifth bit is clear get 0xF0 or-ed in, which is exactly q − 16 in two's complement.
#[target_feature(enable = "avx2,fma")]
unsafe fn decode_q5_0(block: *const u8) -> __m256i {
    let qs = _mm_loadu_si128(block.add(6) as *const __m128i);
    let lo = _mm_and_si128(qs, _mm_set1_epi8(0x0f));
    let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), _mm_set1_epi8(0x0f));
    let nibbles = _mm256_set_m128i(hi, lo);
    let qh = u32::from_le_bytes([*block.add(2), *block.add(3), *block.add(4), *block.add(5)]);
    // Byte j takes byte j/8 of qh, then every bit but bit j%8 is set: all ones iff bit j is.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
    );
    let probe = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    let bit_set = _mm256_cmpeq_epi8(probe, _mm256_set1_epi64x(-1));
    _mm256_or_si256(nibbles, _mm256_andnot_si256(bit_set, _mm256_set1_epi8(0xf0u8 as i8)))
}

#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// # Safety
/// The CPU must support AVX2 and FMA; `w` must hold whole blocks of `ty` and `x` at least
/// `rows` rows of as many blocks.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dots<const R: usize>(ty: QuantType, w: &[u8], x: &RowsView<'_>, rows: usize, out: &mut [f32; R]) {
    let bb = ty.block_bytes();
    let nb = w.len() / bb;
    debug_assert!(nb <= x.blocks && rows <= R);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        let block = w.as_ptr().add(b * bb);
        let wq = match ty {
            QuantType::Q5_0 => decode_q5_0(block),
            QuantType::Q8_0 => _mm256_loadu_si256(block.add(2) as *const __m256i),
        };
        let dw = scale(std::slice::from_raw_parts(block, 2));
        let aw = _mm256_sign_epi8(wq, wq);
        for (r, a) in acc.iter_mut().enumerate().take(rows) {
            let idx = r * x.blocks + b;
            let xq = _mm256_loadu_si256(x.qs.as_ptr().add(idx * 32) as *const __m256i);
            let sx = _mm256_sign_epi8(xq, wq);
            let pairs = _mm256_maddubs_epi16(aw, sx);
            let quads = _mm256_madd_epi16(pairs, ones);
            let d = _mm256_set1_ps(dw * *x.scales.get_unchecked(idx));
            *a = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(quads), *a);
        }
    }
    for (o, a) in out.iter_mut().zip(acc.iter()).take(rows) {
        *o += hsum(*a);
    }
}
