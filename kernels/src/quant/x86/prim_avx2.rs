//! The few operations where AVX2 and AVX-512 VNNI differ, AVX2 flavour (16 registers, byte
//! products through `maddubs` + `madd`). Same names and meanings as `prim_vnni`.
use std::arch::x86_64::*;

/// Q8_0 weights are signed bytes. `maddubs` saturates at ±32767, so AVX2 cannot read them
/// biased by 128 (2·255·127 overflows); it multiplies |w| by x·sign(w) instead.
pub const Q8_BIASED: bool = false;

/// `init` plus, per i32 lane, the sum of four products of unsigned `w` and signed `x` bytes.
/// Exact while every pair of products fits i16: true for w ≤ 128 and |x| ≤ 127.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot4(init: __m256i, w: __m256i, x: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(w, x);
    _mm256_add_epi32(init, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
}

/// `acc` plus (pairs of unsigned `w` × signed `x` bytes, as i16) × i16 `scales`, pairwise
/// summed to i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_scaled(acc: __m256i, w: __m256i, x: __m256i, scales: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(w, x);
    _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scales))
}

/// Add 16 to byte i of `nibbles` where bit i of `qh` is set (Q5_0's fifth bit).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn add_fifth_bits(nibbles: __m256i, qh: u32) -> __m256i {
    // Byte i takes byte i/8 of qh, keeps only bit i%8; equal to that bit iff it is set.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh as i32),
        _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        ),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_or_si256(nibbles, _mm256_and_si256(set, _mm256_set1_epi8(0x10)))
}
