//! Activation quantization with NEON: the same arithmetic as the scalar loop in
//! `activations.rs` (scale = amax/127, q = round-half-even(x · (1/scale)), clamped to ±127),
//! so both give identical bytes and the SIMD and scalar products see the same activations.
//!
//! `fcvtns` (`vcvtnq_s32_f32`) rounds half to even and turns NaN into 0, as the scalar
//! `round_ties_even` + saturating `as` do; `fmaxnm` ignores NaN like `f32::max`.
use std::arch::aarch64::*;

/// Quantize `x` in blocks of `block` (32 or 256) values: quants into `qs`, one scale per block
/// into `d`, the quant sum of every 16 values into `s16`.
///
/// Panics unless `block` is 32 or 256, `x.len()` a multiple of it, `qs.len() == x.len()`,
/// `d.len() == x.len() / block` and `s16.len() == x.len() / 16`.
pub fn quantize(x: &[f32], block: usize, qs: &mut [i8], d: &mut [f32], s16: &mut [i32]) {
    assert!(
        (block == 32 || block == 256)
            && x.len().is_multiple_of(block)
            && qs.len() == x.len()
            && d.len() == x.len() / block
            && s16.len() == x.len() / 16
    );
    for (((src, dst), d), sums) in x
        .chunks_exact(block)
        .zip(qs.chunks_exact_mut(block))
        .zip(d.iter_mut())
        .zip(s16.chunks_exact_mut(block / 16))
    {
        // SAFETY: NEON is part of the aarch64 baseline; every load reads 4 of the `block`
        // values of `src` and every store writes 16 of the `block` bytes of `dst`.
        unsafe {
            let mut mx = vdupq_n_f32(0.0);
            for i in (0..block).step_by(4) {
                mx = vmaxnmq_f32(mx, vabsq_f32(vld1q_f32(src.as_ptr().add(i))));
            }
            let scale = vmaxnmvq_f32(mx) / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            *d = scale;
            for (c, sum) in sums.iter_mut().enumerate() {
                let v = src.as_ptr().add(16 * c);
                let q: [int32x4_t; 4] = std::array::from_fn(|i| {
                    vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(v.add(4 * i)), inv))
                });
                // i32 → i16 → i8 with saturation, then never −128 (only a NaN amax gets past
                // ±127 after scaling, and the scalar loop clamps too).
                let h = [
                    vqmovn_high_s32(vqmovn_s32(q[0]), q[1]),
                    vqmovn_high_s32(vqmovn_s32(q[2]), q[3]),
                ];
                let bytes = vmaxq_s8(vqmovn_high_s16(vqmovn_s16(h[0]), h[1]), vdupq_n_s8(-127));
                vst1q_s8(dst.as_mut_ptr().add(16 * c), bytes);
                *sum = vaddlvq_s8(bytes) as i32;
            }
        }
    }
}
