//! Activation quantization with AVX2: the same arithmetic as the scalar loop in
//! `activations.rs` (scale = amax/127, q = round-half-even(x · (1/scale))), so both give
//! identical bytes and the SIMD and scalar products see the same activations.
use std::arch::x86_64::*;

/// Quantize `x` in blocks of `block` (32 or 256) values: quants into `qs`, one scale per block
/// into `d`, the quant sum of every 16 values into `s16`.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `block` must be 32 or 256, `x.len()` a multiple of it,
/// `qs.len() == x.len()`, `d.len() == x.len() / block`, `s16.len() == x.len() / 16`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize(x: &[f32], block: usize, qs: &mut [i8], d: &mut [f32], s16: &mut [i32]) {
    debug_assert!(x.len().is_multiple_of(block) && qs.len() == x.len());
    let sign = _mm256_set1_ps(-0.0);
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (b, src) in x.chunks_exact(block).enumerate() {
        let p = src.as_ptr();
        let mut mx = _mm256_setzero_ps();
        for i in (0..block).step_by(8) {
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(i))));
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        d[b] = scale;
        let iv = _mm256_set1_ps(inv);
        for c in (0..block).step_by(32) {
            let q: [__m256i; 4] = std::array::from_fn(|i| {
                _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(c + 8 * i)), iv))
            });
            // i32 → i8 with saturation; the packs interleave 128-bit lanes, undone by `order`.
            let w16a = _mm256_packs_epi32(q[0], q[1]);
            let w16b = _mm256_packs_epi32(q[2], q[3]);
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w16a, w16b), order);
            // Never −128 (only a NaN input could get there).
            let bytes = _mm256_max_epi8(bytes, _mm256_set1_epi8(-127));
            _mm256_storeu_si256(qs.as_mut_ptr().add(b * block + c) as *mut __m256i, bytes);
            // Sums of 4 → (twice) sums of 16: low lane elements 0..16, high lane 16..32.
            let s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, bytes), ones16);
            let s8 = _mm256_hadd_epi32(s4, s4);
            let s = _mm256_hadd_epi32(s8, s8);
            let at = (b * block + c) / 16;
            s16[at] = _mm256_extract_epi32(s, 0);
            s16[at + 1] = _mm256_extract_epi32(s, 4);
        }
    }
}
