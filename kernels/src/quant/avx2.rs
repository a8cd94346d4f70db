//! AVX2 + FMA dot products. A weight block is decoded once into 32 signed bytes and multiplied
//! with the same block of up to `R` activation rows: `maddubs` needs an unsigned operand, so
//! |w| is paired with x·sign(w), then pairs are summed to i32 and scaled in f32.
use super::activations::RowsView;
use super::blocks::{q4k_scale_min, QuantType};
use std::arch::x86_64::*;

/// Signed bytes of one Q5_0 block: low nibbles from `qs`, the fifth bit from `qh`; bytes whose
/// fifth bit is clear get 0xF0 or-ed in, which is exactly q − 16 in two's complement.
#[inline]
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
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        ),
    );
    let probe = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    let bit_set = _mm256_cmpeq_epi8(probe, _mm256_set1_epi64x(-1));
    _mm256_or_si256(
        nibbles,
        _mm256_andnot_si256(bit_set, _mm256_set1_epi8(0xf0u8 as i8)),
    )
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_scale(block: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*block, *block.add(1)]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// Sub-block `j` of the block at `block`: 32 signed quants, the f32 scales of its two halves
/// (elements 0..16 and 16..32), and the minimum subtracted from every value.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode<const T: u8>(block: *const u8, j: usize) -> (__m256i, [f32; 2], f32) {
    let low4 = _mm256_set1_epi8(0x0f);
    match type_of::<T>() {
        QuantType::Q5_0 => {
            let d = f16_scale(block);
            (decode_q5_0(block), [d, d], 0.0)
        }
        QuantType::Q8_0 => {
            let d = f16_scale(block);
            (
                _mm256_loadu_si256(block.add(2) as *const __m256i),
                [d, d],
                0.0,
            )
        }
        QuantType::Q4K => {
            let scales = std::slice::from_raw_parts(block.add(4), 12);
            let (sc, m) = q4k_scale_min(scales, j);
            let bytes = _mm256_loadu_si256(block.add(16 + 32 * (j / 2)) as *const __m256i);
            let q = if j.is_multiple_of(2) {
                _mm256_and_si256(bytes, low4)
            } else {
                _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4)
            };
            let d = f16_scale(block) * sc as f32;
            (q, [d, d], f16_scale(block.add(2)) * m as f32)
        }
        QuantType::Q6K => {
            let (half, k) = (j / 4, j % 4);
            let ql = _mm256_loadu_si256(block.add(64 * half + 32 * (k % 2)) as *const __m256i);
            let qh = _mm256_loadu_si256(block.add(128 + 32 * half) as *const __m256i);
            let lo = if k >= 2 {
                _mm256_and_si256(_mm256_srli_epi16(ql, 4), low4)
            } else {
                _mm256_and_si256(ql, low4)
            };
            let hi = match k {
                0 => _mm256_and_si256(_mm256_slli_epi16(qh, 4), _mm256_set1_epi8(0x30)),
                1 => _mm256_and_si256(_mm256_slli_epi16(qh, 2), _mm256_set1_epi8(0x30)),
                2 => _mm256_and_si256(qh, _mm256_set1_epi8(0x30)),
                _ => _mm256_and_si256(_mm256_srli_epi16(qh, 2), _mm256_set1_epi8(0x30)),
            };
            let q = _mm256_sub_epi8(_mm256_or_si256(lo, hi), _mm256_set1_epi8(32));
            let d = f16_scale(block.add(208));
            let sc = block.add(192 + 8 * half + 2 * k) as *const i8;
            let (sa, sb) = (d * *sc as f32, d * *sc.add(1) as f32);
            (q, [sa, sb], 0.0)
        }
    }
}

/// Dot products of `C` weight rows with up to `R` activation rows, added into `out[c][r]`.
/// Each weight sub-block is decoded once for all `R` rows and each activation block loaded
/// once for all `C` weight rows.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C, and AVX-512 VNNI+VL when `vnni`; every `w[c]` must hold the same whole number of
/// blocks of `ty`, and `x` exactly `rows == R` rows of at least as many 32-element blocks.
pub unsafe fn dots<const C: usize, const R: usize>(
    vnni: bool,
    ty: QuantType,
    w: [&[u8]; C],
    x: &RowsView<'_>,
    rows: usize,
    out: &mut [[f32; R]; C],
) {
    // One instance per block type, so decoding is inlined and the type's branches fold away.
    match (vnni, ty) {
        (false, QuantType::Q5_0) => dots_of::<C, R, Q5_0>(w, x, rows, out),
        (false, QuantType::Q8_0) => dots_of::<C, R, Q8_0>(w, x, rows, out),
        // Q4_K measured slower with VNNI at prefill sizes (cargo bench, EPYC): keep AVX2.
        (_, QuantType::Q4K) => dots_of::<C, R, Q4K>(w, x, rows, out),
        (false, QuantType::Q6K) => dots_of::<C, R, Q6K>(w, x, rows, out),
        (true, QuantType::Q5_0) => dots_of_vnni::<C, R, Q5_0>(w, x, rows, out),
        (true, QuantType::Q8_0) => dots_of_vnni::<C, R, Q8_0>(w, x, rows, out),
        (true, QuantType::Q6K) => dots_of_vnni::<C, R, Q6K>(w, x, rows, out),
    }
}

const Q5_0: u8 = 0;
const Q8_0: u8 = 1;
const Q4K: u8 = 2;
const Q6K: u8 = 3;

const fn type_of<const T: u8>() -> QuantType {
    match T {
        Q5_0 => QuantType::Q5_0,
        Q8_0 => QuantType::Q8_0,
        Q4K => QuantType::Q4K,
        _ => QuantType::Q6K,
    }
}

/// The kernel body, instantiated per instruction set: `$dot` turns |w| (unsigned bytes) and
/// x·sign(w) (signed bytes) into eight i32 sums of four products.
macro_rules! dots_kernel {
    ($name:ident, $features:literal, $dot:path) => {
        #[target_feature(enable = $features)]
        unsafe fn $name<const C: usize, const R: usize, const T: u8>(
            w: [&[u8]; C],
            x: &RowsView<'_>,
            rows: usize,
            out: &mut [[f32; R]; C],
        ) {
            let ty = type_of::<T>();
            let bb = ty.block_bytes();
            let subs = ty.subs();
            let nb = w[0].len() / bb;
            debug_assert!(
                nb * subs <= x.blocks && rows == R && w.iter().all(|r| r.len() == nb * bb)
            );
            let mut acc = [[_mm256_setzero_ps(); R]; C];
            let mut mins = [[0f32; R]; C];
            for b in 0..nb {
                for j in 0..subs {
                    let mut aw = [_mm256_setzero_si256(); C];
                    let mut wq = [_mm256_setzero_si256(); C];
                    let mut sw = [[0f32; 2]; C];
                    let mut mw = [0f32; C];
                    for c in 0..C {
                        let (q, s, m) = decode::<T>(w[c].as_ptr().add(b * bb), j);
                        wq[c] = q;
                        aw[c] = _mm256_sign_epi8(q, q);
                        sw[c] = s;
                        mw[c] = m;
                    }
                    let xb = b * subs + j;
                    // R is the exact row count (the caller dispatches on it), so this loop unrolls and
                    // the accumulators stay in registers.
                    for r in 0..R {
                        let idx = r * x.blocks + xb;
                        let xq = _mm256_loadu_si256(x.qs.as_ptr().add(idx * 32) as *const __m256i);
                        let dx = *x.scales.get_unchecked(idx);
                        for c in 0..C {
                            let sx = _mm256_sign_epi8(xq, wq[c]);
                            let quads = $dot(aw[c], sx);
                            // Q6_K's halves have scales of their own (low lane: elements 0..16).
                            let scale = if T == Q6K {
                                let (a, b) = (sw[c][0] * dx, sw[c][1] * dx);
                                _mm256_setr_ps(a, a, a, a, b, b, b, b)
                            } else {
                                _mm256_set1_ps(sw[c][0] * dx)
                            };
                            acc[c][r] =
                                _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(quads), acc[c][r]);
                            if T == Q4K {
                                mins[c][r] += mw[c] * dx * *x.sums.get_unchecked(idx) as f32;
                            }
                        }
                    }
                }
            }
            for c in 0..C {
                for r in 0..R {
                    out[c][r] += hsum(acc[c][r]) - mins[c][r];
                }
            }
        }
    };
}

/// u8×i8 products summed in fours with AVX2: pairs to i16, then pairs of those to i32 (the
/// operands here cannot saturate i16: |w| ≤ 128 and |x| ≤ 127).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(a, s), _mm256_set1_epi16(1))
}

/// The same with AVX-512 VNNI's one-instruction `vpdpbusd` on 256-bit registers.
#[inline]
#[target_feature(enable = "avx512vnni,avx512vl")]
unsafe fn dot_vnni(a: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, s)
}

dots_kernel!(dots_of, "avx2,fma,f16c", dot_avx2);
dots_kernel!(dots_of_vnni, "avx2,fma,f16c,avx512vnni,avx512vl", dot_vnni);
