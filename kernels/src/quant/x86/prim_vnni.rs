//! The few operations where AVX2 and AVX-512 VNNI differ, VNNI flavour: `vpdpbusd` sums four
//! byte products into each i32 lane in one instruction without saturating, `vpdpwssd` fuses
//! the i16 multiply-add, and byte masks come straight from a u32. The tiles stay on 256-bit
//! vectors (on Zen 4 a 512-bit operation costs two 256-bit ones) with AVX-512VL's 32 registers.
use std::arch::x86_64::*;

/// `vpdpbusd` does not saturate, so Q8_0 weights are read biased by 128 (xor 0x80) and the
/// bias is removed with the activation sums like the other formats' offsets.
pub const Q8_BIASED: bool = true;

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub fn dot4(init: __m256i, w: __m256i, x: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(init, w, x)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub fn dot_scaled(acc: __m256i, w: __m256i, x: __m256i, scales: __m256i) -> __m256i {
    _mm256_dpwssd_epi32(acc, _mm256_maddubs_epi16(w, x), scales)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub fn add_fifth_bits(nibbles: __m256i, qh: u32) -> __m256i {
    _mm256_mask_add_epi8(nibbles, qh, nibbles, _mm256_set1_epi8(0x10))
}
