//! Products of a few activation rows (decode, small batches) with K-quant weights on 512-bit
//! vectors.
//!
//! The VNNI tiles (`kernels.rs`) run 256-bit vectors so that CPUs which split 512-bit
//! operations lose nothing, and they decode each 32-element chunk of weights separately. With
//! few activation rows little amortizes that decode: every weight byte costs its mask, shift
//! and scale shuffle for a few multiply-adds, and with two threads sharing a memory bus that is
//! on the same order as waiting for the bytes. Here two chunks share each operation: a Q4_K
//! pair of chunks is 32 bytes of nibbles (low nibbles one chunk, high the next) against 64
//! contiguous activation bytes, so the 32 bytes are broadcast to both halves of a register,
//! the upper half shifted by four, masked once, and multiplied with one load of each row's
//! activations (Q5_K adds its fifth bits to both halves at once); Q6_K's half super-block works
//! the same way on its low-nibble and high-bit-pair bytes. About half the operations per
//! weight byte of the 256-bit tile, fewer still per activation row.
//!
//! It is the VNNI tile driver's `tile_k` (same contract: accumulators of C weight rows × R
//! activation rows) and gives the same bits as the 256-bit one: the i32 sums of a super-block
//! are exact, and the halves that held alternate chunks are added before the per-super-block
//! float steps, which follow the 256-bit kernel lane for lane
//! (`wide_kquant_kernels_give_the_bits_of_the_tiles` checks it).
use super::super::formats::k_scales_mins;
use super::super::tile_driver::kind::{block_bytes, Q5K, Q6K};
use std::arch::x86_64::*;

/// A 512-bit vector holding `lo` in its lower half and `hi` in its upper half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn halves(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
}

/// The 32 bytes at `p` in both halves of a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn both_halves(p: *const u8) -> __m512i {
    _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i))
}

/// The i16 shuffle that fills each 128-bit lane with i16 number `pick[lane]` of that lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn scale_pick(pick: [i16; 4]) -> __m512i {
    let word = |i: i16| _mm_set1_epi16((2 * i) | ((2 * i + 1) << 8));
    let lo = _mm256_setr_m128i(word(pick[0]), word(pick[1]));
    let hi = _mm256_setr_m128i(word(pick[2]), word(pick[3]));
    halves(lo, hi)
}

/// The f16 at `p`, as eight equal f32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn f16x8(p: *const u8) -> __m256 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    _mm256_cvtph_ps(_mm_set1_epi16(bits as i16))
}

/// `acc[c][r]` += the products of C weight rows (`w`, `nsb` super-blocks of type T each) with
/// R activation rows (quants `xq`, per-256 scales `xd`, per-16 sums `xs`), as f32 lanes whose
/// sum is the product.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL/VNNI; T must be Q4K, Q5K or Q6K; each pointer must
/// address `nsb` super-blocks of its data.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn tile_k<const T: u8, const C: usize, const R: usize>(
    w: [*const u8; C],
    nsb: usize,
    xq: [*const i8; R],
    xd: [*const f32; R],
    xs: [*const i16; R],
    acc: &mut [[__m256; R]; C],
) {
    let block_bytes = block_bytes(T);
    let low4 = _mm512_set1_epi8(0x0f);
    // Weight bytes asked for ahead of the ones read (see `kernels.rs`).
    let ahead = super::prefetch_distance(C, nsb * block_bytes);
    for sb in 0..nsb {
        let p: [*const u8; C] = std::array::from_fn(|c| w[c].add(sb * block_bytes));
        for &pc in &p {
            for line in (0..block_bytes).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(pc.wrapping_add(line + ahead) as *const i8);
            }
        }
        let at = 256 * sb;
        let mut iacc = [[_mm512_setzero_si512(); R]; C];
        // Per weight row: d (and dmin) and the i16 vector multiplied with the 16-sums.
        let mut d = [_mm256_setzero_ps(); C];
        let mut dmin = [_mm256_setzero_ps(); C];
        let mut per16 = [_mm256_setzero_si256(); C];
        if T == Q6K {
            let mask = _mm512_set1_epi8(0x30);
            // qh's bits for the four chunks of a half: shifted into bits 4..6 of each byte.
            let lo_shift = halves(_mm256_set1_epi16(4), _mm256_set1_epi16(2));
            let hi_shift = halves(_mm256_setzero_si256(), _mm256_set1_epi16(2));
            let pick_lo = scale_pick([0, 1, 2, 3]);
            let pick_hi = scale_pick([4, 5, 6, 7]);
            // Per half of the super-block, per weight row: its eight scales in every lane.
            let mut scales = [[_mm512_setzero_si512(); C]; 2];
            for c in 0..C {
                d[c] = f16x8(p[c].add(208));
                let all = _mm256_cvtepi8_epi16(_mm_loadu_si128(p[c].add(192) as *const __m128i));
                per16[c] = all;
                scales[0][c] = _mm512_broadcast_i32x4(_mm256_castsi256_si128(all));
                scales[1][c] = _mm512_broadcast_i32x4(_mm256_extracti128_si256(all, 1));
            }
            for (h, scales) in scales.iter().enumerate() {
                // Elements 128h..128h+64 (the low nibbles) and 128h+64..128h+128 (the high).
                let x_lo: [__m512i; R] =
                    std::array::from_fn(
                        |r| _mm512_loadu_si512(xq[r].add(at + 128 * h) as *const _),
                    );
                let x_hi: [__m512i; R] = std::array::from_fn(|r| {
                    _mm512_loadu_si512(xq[r].add(at + 128 * h + 64) as *const _)
                });
                for c in 0..C {
                    let ql = _mm512_loadu_si512(p[c].add(64 * h) as *const _);
                    let qh = both_halves(p[c].add(128 + 32 * h));
                    let lo = _mm512_or_si512(
                        _mm512_and_si512(ql, low4),
                        _mm512_and_si512(_mm512_sllv_epi16(qh, lo_shift), mask),
                    );
                    let hi = _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi16(ql, 4), low4),
                        _mm512_and_si512(_mm512_srlv_epi16(qh, hi_shift), mask),
                    );
                    let sc_lo = _mm512_shuffle_epi8(scales[c], pick_lo);
                    let sc_hi = _mm512_shuffle_epi8(scales[c], pick_hi);
                    for r in 0..R {
                        let a = _mm512_dpwssd_epi32(
                            iacc[c][r],
                            _mm512_maddubs_epi16(lo, x_lo[r]),
                            sc_lo,
                        );
                        iacc[c][r] =
                            _mm512_dpwssd_epi32(a, _mm512_maddubs_epi16(hi, x_hi[r]), sc_hi);
                    }
                }
            }
        } else {
            // The high nibbles (the second chunk of a pair) moved down in the upper half.
            let shift = halves(_mm256_setzero_si256(), _mm256_set1_epi16(4));
            // Q5_K: chunk j's fifth bits are bit j of each qh byte; with qh moved right two
            // bits per pair they are bits 0 (lower half) and 1 (upper), moved to bit 4.
            let fifth_shift = halves(_mm256_set1_epi16(4), _mm256_set1_epi16(3));
            let bit4 = _mm512_set1_epi8(0x10);
            let qs_at = if T == Q5K { 48 } else { 16 };
            let mut qh = [_mm512_setzero_si512(); C];
            let mut scales = [_mm512_setzero_si512(); C];
            for c in 0..C {
                d[c] = f16x8(p[c]);
                dmin[c] = f16x8(p[c].add(2));
                let (sc, mn) = k_scales_mins(std::slice::from_raw_parts(p[c].add(4), 12));
                let sc = _mm_cvtepu8_epi16(_mm_set1_epi64x(i64::from_le_bytes(sc)));
                scales[c] = _mm512_broadcast_i32x4(sc);
                // Each min twice: it applies to two 16-sums.
                let mn = _mm_set1_epi64x(i64::from_le_bytes(mn));
                per16[c] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
                if T == Q5K {
                    qh[c] = both_halves(p[c].add(16));
                }
            }
            for pair in 0..4 {
                let xp: [__m512i; R] = std::array::from_fn(|r| {
                    _mm512_loadu_si512(xq[r].add(at + 64 * pair) as *const _)
                });
                let s = 2 * pair as i16;
                let pick = scale_pick([s, s, s + 1, s + 1]);
                for c in 0..C {
                    let q = both_halves(p[c].add(qs_at + 32 * pair));
                    let mut nib = _mm512_and_si512(_mm512_srlv_epi16(q, shift), low4);
                    if T == Q5K {
                        let fifth = _mm512_and_si512(_mm512_sllv_epi16(qh[c], fifth_shift), bit4);
                        nib = _mm512_or_si512(nib, fifth);
                        qh[c] = _mm512_srli_epi16(qh[c], 2);
                    }
                    let sc = _mm512_shuffle_epi8(scales[c], pick);
                    for r in 0..R {
                        iacc[c][r] =
                            _mm512_dpwssd_epi32(iacc[c][r], _mm512_maddubs_epi16(nib, xp[r]), sc);
                    }
                }
            }
        }
        // From here on `tile_k`'s steps, lane for lane.
        for r in 0..R {
            let sums = _mm256_loadu_si256(xs[r].add(16 * sb) as *const __m256i);
            let dx = _mm256_set1_ps(*xd[r].add(sb));
            for c in 0..C {
                let i = _mm256_add_epi32(
                    _mm512_castsi512_si256(iacc[c][r]),
                    _mm512_extracti64x4_epi64(iacc[c][r], 1),
                );
                let fix = _mm256_madd_epi16(per16[c], sums);
                let s = _mm256_mul_ps(d[c], dx);
                if T == Q6K {
                    let i = _mm256_sub_epi32(i, _mm256_slli_epi32(fix, 5));
                    acc[c][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), s, acc[c][r]);
                } else {
                    acc[c][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), s, acc[c][r]);
                    let m = _mm256_mul_ps(dmin[c], dx);
                    acc[c][r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(fix), m, acc[c][r]);
                }
            }
        }
    }
}
