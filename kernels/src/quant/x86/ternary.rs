//! The ternary types' chunks in vectors: their values (−1, 0, 1; TQ2_0's two bits also 2) come
//! out of a few whole-vector operations, where the generic grid route (`iq_grid::grid_chunk`)
//! unpacks them word by word in scalar registers (TQ1_0's decode at m = 1 ran no faster than
//! llama.cpp's with it). Element order and packing: `formats`.
use super::super::QuantType;
use std::arch::x86_64::*;

/// Chunk `j` (elements 32j..32j + 32) of the TQ1_0 or TQ2_0 block at `p` as signed bytes.
///
/// # Safety
/// The CPU must have AVX2 and a whole block of `ty` (a ternary type) must start at `p`.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn ternary_values(ty: QuantType, p: *const u8, j: usize) -> __m256i {
    let one = _mm256_set1_epi8(1);
    if ty == QuantType::Tq2_0 {
        // Bits 2l..2l + 2 of qs[32h..32h + 32], j = 4h + l, minus one.
        let (h, l) = (j / 4, j % 4);
        let qs = _mm256_loadu_si256(p.add(32 * h) as *const __m256i);
        let q = _mm256_srl_epi16(qs, _mm_cvtsi32_si128(2 * l as i32));
        return _mm256_sub_epi8(_mm256_and_si256(q, _mm256_set1_epi8(3)), one);
    }
    // The bytes whose trits these are and, per 16-bit lane, the power of three that brings
    // the trit wanted to the top of each of its two bytes.
    const POW3: [i16; 5] = [1, 3, 9, 27, 81];
    let (bytes, pow) = match j {
        0..5 => (
            _mm256_loadu_si256(p as *const __m256i),
            _mm256_set1_epi16(POW3[j]),
        ),
        5 | 6 => {
            let n = 2 * (j - 5);
            (
                _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(32) as *const __m128i)),
                _mm256_set_m128i(_mm_set1_epi16(POW3[n + 1]), _mm_set1_epi16(POW3[n])),
            )
        }
        _ => {
            // Trit 4 of qs[32..48], then trits 0..4 of qh[0..4] (element 240 + 4n + m).
            let qh = (p.add(48) as *const i32).read_unaligned();
            (
                _mm256_set_m128i(
                    _mm_set1_epi32(qh),
                    _mm_loadu_si128(p.add(32) as *const __m128i),
                ),
                _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27),
            )
        }
    };
    // x·3ⁿ mod 256 per byte: the low bytes from the lanes' products (their carries land in
    // the high bytes, masked off), the high bytes from the products of the high bytes alone.
    let low = _mm256_and_si256(_mm256_mullo_epi16(bytes, pow), _mm256_set1_epi16(0x00ff));
    let high_only = _mm256_and_si256(bytes, _mm256_set1_epi16(0xff00u16 as i16));
    let y = _mm256_or_si256(low, _mm256_mullo_epi16(high_only, pow));
    // The trit, (3y) >> 8, is 1 from y = 86 and 2 from 171: the value −1 plus both tests
    // (each all ones, −1, where it holds).
    let at_least = |t: u8| {
        let t = _mm256_set1_epi8(t as i8);
        _mm256_cmpeq_epi8(_mm256_max_epu8(y, t), y)
    };
    let minus_one = _mm256_set1_epi8(-1);
    _mm256_sub_epi8(_mm256_sub_epi8(minus_one, at_least(86)), at_least(171))
}
