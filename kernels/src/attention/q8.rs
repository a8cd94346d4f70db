//! q8_0 KV caches: each head row kept as blocks of 32 signed bytes and an f16 scale (the GGUF
//! `Q8_0` block, llama.cpp's `-ctk q8_0 -ctv q8_0`). 34 bytes hold 32 values where f16 takes
//! 64: decode attention reads a little over half the bytes of an f16 cache, and a cache of
//! the same memory holds nearly twice the tokens. Values are rounded once, when written (scale
//! `max|x| / 127`, each byte the nearest multiple of it, as llama.cpp's reference rounds), and
//! read back as `byte · scale` in f32, where all arithmetic stays.
use super::{KvElement, RowReader, STRIP};
use half::f16;

/// 32 cached values: `qs[i] · d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KvQ8 {
    pub d: f16,
    pub qs: [i8; 32],
}

impl KvQ8 {
    /// The block nearest `x` (the largest magnitude kept to the scale's rounding, each value
    /// within half a step).
    pub fn quantize(x: &[f32]) -> KvQ8 {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        KvQ8 {
            d: f16::from_f32(d),
            qs: std::array::from_fn(|i| (x.get(i).copied().unwrap_or(0.0) * inv).round() as i8),
        }
    }

    /// The 32 values the block holds.
    pub fn values(&self) -> [f32; 32] {
        let d = self.d.to_f32();
        self.qs.map(|q| q as f32 * d)
    }
}

impl KvElement for KvQ8 {
    const VALUES: usize = 32;
    /// Dequantizing a V strip costs more than widening f16, so one pass for up to eight heads,
    /// spills and all: 8 sequences at 2048 tokens of Qwen2.5-0.5B, 147-149 tok/s in runs of 4
    /// and 3, 160-169 in one run of 7 (one sequence: 77-78 either way).
    const STRIP_HEADS: usize = 8;

    fn narrow(src: &[f32], dst: &mut [KvQ8]) {
        for (x, b) in src.chunks_exact(32).zip(dst) {
            *b = KvQ8::quantize(x);
        }
    }

    widened_kernels!(KvQ8, x86::Widen, Portable);
}

/// Blocks dequantized by plain loops (which the compiler vectorizes for the CPU it targets).
struct Portable;
impl RowReader<KvQ8> for Portable {
    #[inline(always)]
    unsafe fn read<'b>(src: &'b [KvQ8], buf: &'b mut [f32]) -> &'b [f32] {
        let buf = &mut buf[..src.len() * 32];
        for (b, out) in src.iter().zip(buf.chunks_exact_mut(32)) {
            let d = b.d.to_f32();
            for (o, &q) in out.iter_mut().zip(&b.qs) {
                *o = q as f32 * d;
            }
        }
        buf
    }

    #[inline(always)]
    unsafe fn strip(row: &[KvQ8], e: usize) -> [f32; STRIP] {
        let b = &row[e / 32];
        let (d, at) = (b.d.to_f32(), e % 32);
        std::array::from_fn(|t| b.qs[at + t] as f32 * d)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{KvQ8, STRIP};
    use std::arch::x86_64::*;

    /// Blocks dequantized eight bytes at a time (sign-extended, converted, scaled), the scale
    /// widened by VCVTPH2PS: the same products as `Portable`, so the same bits.
    pub struct Widen;

    /// The block's scale as f32.
    ///
    /// # Safety
    /// The CPU must have F16C.
    #[inline(always)]
    unsafe fn scale(b: &KvQ8) -> __m256 {
        // SAFETY: the caller guarantees F16C.
        unsafe {
            let h = _mm_cvtsi32_si128(b.d.to_bits() as i32);
            _mm256_set1_ps(_mm_cvtss_f32(_mm_cvtph_ps(h)))
        }
    }

    /// Values `8·i..8·i + 8` of `b`, times `d`.
    ///
    /// # Safety
    /// The CPU must have AVX2; `i < 4`.
    #[inline(always)]
    unsafe fn eight(b: &KvQ8, i: usize, d: __m256) -> __m256 {
        // SAFETY: bytes 8i..8i+8 of the 32 are in the block; the caller guarantees AVX2.
        unsafe {
            let q = _mm_loadl_epi64(b.qs.as_ptr().add(8 * i).cast());
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d)
        }
    }

    impl super::RowReader<KvQ8> for Widen {
        /// # Safety
        /// The CPU must have AVX2 and F16C.
        #[inline(always)]
        unsafe fn read<'b>(src: &'b [KvQ8], buf: &'b mut [f32]) -> &'b [f32] {
            let buf = &mut buf[..src.len() * 32];
            for (b, out) in src.iter().zip(buf.chunks_exact_mut(32)) {
                // SAFETY: 32 floats per block; the caller guarantees the features.
                unsafe {
                    let d = scale(b);
                    for i in 0..4 {
                        _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), eight(b, i, d));
                    }
                }
            }
            buf
        }

        /// # Safety
        /// As for `read`.
        #[inline(always)]
        unsafe fn strip(row: &[KvQ8], e: usize) -> [f32; STRIP] {
            let b = &row[e / 32];
            let first = e % 32 / 8;
            let mut out = [0f32; STRIP];
            // SAFETY: `e` is a multiple of 16, so eights `first` and `first + 1` are in the
            // block; the caller guarantees the features.
            unsafe {
                let d = scale(b);
                _mm256_storeu_ps(out.as_mut_ptr(), eight(b, first, d));
                _mm256_storeu_ps(out.as_mut_ptr().add(8), eight(b, first + 1, d));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seed: u32) -> Vec<f32> {
        (0..32)
            .map(|i| ((i as f32 * 0.37 + seed as f32).sin() * 3.0) * if i == 7 { 9.0 } else { 1.0 })
            .collect()
    }

    #[test]
    fn blocks_hold_each_value_within_half_a_step() {
        for seed in 0..20 {
            let x = sample(seed);
            let b = KvQ8::quantize(&x);
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let step = b.d.to_f32();
            // The scale is max|x| / 127 to f16's rounding.
            assert!(
                (step - amax / 127.0).abs() <= amax / 127.0 * 1e-3,
                "{step} {amax}"
            );
            assert!(b.qs.iter().any(|q| q.unsigned_abs() == 127));
            for (v, want) in b.values().iter().zip(&x) {
                // Half a step of the exact scale, plus what f16 rounding of it moves 127 steps.
                assert!(
                    (v - want).abs() <= 0.5 * step + 127.0 * (step - amax / 127.0).abs() + 1e-6
                );
            }
        }
        let zero = KvQ8::quantize(&[0.0; 32]);
        assert_eq!(zero.values(), [0.0; 32]);
    }

    #[test]
    fn narrow_quantizes_each_block_of_a_row() {
        let x: Vec<f32> = (0..96).map(|i| i as f32 - 40.0).collect();
        let mut row = [KvQ8::default(); 3];
        KvQ8::narrow(&x, &mut row);
        for (b, chunk) in row.iter().zip(x.chunks_exact(32)) {
            assert_eq!(*b, KvQ8::quantize(chunk));
        }
    }

    /// Every reader gives the same bits: `values` (what the attention tests' references use),
    /// whole rows and strips.
    #[test]
    fn readers_agree_bit_for_bit() {
        let row: Vec<KvQ8> = (0..4).map(|s| KvQ8::quantize(&sample(s))).collect();
        let want: Vec<f32> = row.iter().flat_map(|b| b.values()).collect();
        let mut buf = vec![0f32; 128];
        // SAFETY: `Portable` needs no CPU feature.
        assert_eq!(unsafe { Portable::read(&row, &mut buf) }, want.as_slice());
        for e in (0..128).step_by(STRIP) {
            // SAFETY: as above.
            assert_eq!(unsafe { Portable::strip(&row, e) }, want[e..e + STRIP]);
        }
        #[cfg(target_arch = "x86_64")]
        if crate::activation::has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c") {
            let mut buf = vec![0f32; 128];
            // SAFETY: the CPU has AVX2 and F16C (checked).
            assert_eq!(unsafe { x86::Widen::read(&row, &mut buf) }, want.as_slice());
            for e in (0..128).step_by(STRIP) {
                // SAFETY: as above.
                assert_eq!(unsafe { x86::Widen::strip(&row, e) }, want[e..e + STRIP]);
            }
        }
    }
}
