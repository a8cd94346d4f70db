//! Weight blocks decoded into NEON registers as signed bytes, the format's offset removed, so
//! that a signed byte dot product with the activations gives Σ q·x exactly (layouts in
//! `formats`). Shared by both kernel sets: plain NEON is part of the aarch64 baseline, so
//! these inline into the dotprod functions as well.
//!
//! Every function reads the block through a raw pointer: the caller guarantees a whole block
//! of the named type starts there.
use std::arch::aarch64::*;
use std::arch::asm;

/// The little-endian f16 at `p`, as f32.
///
/// `fcvt` from half precision is Armv8.0, so every aarch64 CPU has it. `half` uses it only
/// where the CPU also has the later FP16 arithmetic extension (checked at every call) and
/// converts in software elsewhere, which would cost as much as a Q4_0 block's products.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = u16::from_le_bytes([*p, *p.add(1)]);
    let out: f32;
    // SAFETY: a register-to-register conversion, available on every aarch64 CPU.
    unsafe {
        asm!(
            "fcvt {out:s}, {bits:h}",
            bits = in(vreg) bits,
            out = lateout(vreg) out,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

#[inline]
#[target_feature(enable = "neon")]
fn signed(v: uint8x16_t) -> int8x16_t {
    vreinterpretq_s8_u8(v)
}

/// Q4_0: elements 0..16 are the low nibbles of qs, 16..32 the high ones, each minus 8.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn q4_0(p: *const u8) -> [int8x16_t; 2] {
    let qs = vld1q_u8(p.add(2));
    let eight = vdupq_n_u8(8);
    // Wrapping u8 subtraction, read as i8: q − 8 in −8..=7.
    [
        signed(vsubq_u8(vandq_u8(qs, vdupq_n_u8(0x0f)), eight)),
        signed(vsubq_u8(vshrq_n_u8::<4>(qs), eight)),
    ]
}

/// Q5_0: as Q4_0 with a fifth bit per element (bit i of the u32 at bytes 2..6), minus 16.
/// q + 16·bit − 16 is the nibble minus 16 where the bit is clear, so one subtraction.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn q5_0(p: *const u8) -> [int8x16_t; 2] {
    let qs = vld1q_u8(p.add(6));
    [
        signed(vsubq_u8(
            vandq_u8(qs, vdupq_n_u8(0x0f)),
            sixteen_where_clear(p.add(2)),
        )),
        signed(vsubq_u8(vshrq_n_u8::<4>(qs), sixteen_where_clear(p.add(4)))),
    ]
}

/// 16 in lane i where bit i of the 16 bits at `qh` (little-endian) is clear, 0 where it is
/// set. NEON has no byte mask from a general register (what AVX-512 does in one instruction):
/// broadcast byte 0 to lanes 0..8 and byte 1 to lanes 8..16, then test lane i's bit i % 8.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn sixteen_where_clear(qh: *const u8) -> uint8x16_t {
    const LANE_BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let spread = vcombine_u8(vld1_dup_u8(qh), vld1_dup_u8(qh.add(1)));
    let set = vtstq_u8(spread, vld1q_u8(LANE_BIT.as_ptr()));
    vbicq_u8(vdupq_n_u8(16), set)
}

/// Q4_1: Q4_0's nibbles at byte 4, without an offset (the minimum comes in through the
/// activation sums).
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn q4_1(p: *const u8) -> [int8x16_t; 2] {
    let qs = vld1q_u8(p.add(4));
    [
        signed(vandq_u8(qs, vdupq_n_u8(0x0f))),
        signed(vshrq_n_u8::<4>(qs)),
    ]
}

/// Q5_1: Q5_0's five bits at bytes 4 (qh) and 8 (qs), without an offset: 0..=31.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn q5_1(p: *const u8) -> [int8x16_t; 2] {
    let qs = vld1q_u8(p.add(8));
    let sixteen = vdupq_n_u8(16);
    [
        signed(vaddq_u8(
            vandq_u8(qs, vdupq_n_u8(0x0f)),
            vsubq_u8(sixteen, sixteen_where_clear(p.add(4))),
        )),
        signed(vaddq_u8(
            vshrq_n_u8::<4>(qs),
            vsubq_u8(sixteen, sixteen_where_clear(p.add(6))),
        )),
    ]
}

/// Q2_K / Q3_K chunk (h, j) (elements 128·h + 32·j..+32) of the block at `p`: bits 2j..2j+2
/// of qs[32·h..] (Q2_K's qs at byte 16, Q3_K's at 32); Q3_K adds 4 where bit 4h + j of
/// hmask[l] is set and subtracts 4, so −4..=3.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn k2_chunk(p: *const u8, q3: bool, h: usize, j: usize) -> [int8x16_t; 2] {
    let qs = p.add(if q3 { 32 } else { 16 } + 32 * h);
    let mut out = [vdupq_n_s8(0); 2];
    for (v, o) in out.iter_mut().enumerate() {
        let q = vandq_u8(
            vshlq_u8(vld1q_u8(qs.add(16 * v)), vdupq_n_s8(-2 * j as i8)),
            vdupq_n_u8(3),
        );
        *o = if q3 {
            // Bit 4h + j moved to bit 2.
            let hm = vshlq_u8(vld1q_u8(p.add(16 * v)), vdupq_n_s8(2 - (4 * h + j) as i8));
            let q = vorrq_u8(q, vandq_u8(hm, vdupq_n_u8(4)));
            signed(vsubq_u8(q, vdupq_n_u8(4)))
        } else {
            signed(q)
        };
    }
    out
}

/// Q8_0: the quants are already signed bytes.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn q8_0(p: *const u8) -> [int8x16_t; 2] {
    let qs = p.add(2) as *const i8;
    [vld1q_s8(qs), vld1q_s8(qs.add(16))]
}

/// MXFP4: the doubled e2m1 codes (−12..=12) of the nibbles, laid out as Q4_0's, by one table
/// lookup per 16.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn mxfp4(p: *const u8) -> [int8x16_t; 2] {
    let table = vld1q_s8(super::super::formats::MXFP4_DOUBLED.as_ptr());
    let qs = vld1q_u8(p.add(1));
    [
        vqtbl1q_s8(table, vandq_u8(qs, vdupq_n_u8(0x0f))),
        vqtbl1q_s8(table, vshrq_n_u8::<4>(qs)),
    ]
}

/// IQ4_NL's codebook values of the 32 nibbles of the 16 bytes at `qs` (IQ4_NL's block at
/// byte 2, IQ4_XS's chunk j at 8 + 16j), laid out as Q4_0's, by one table lookup per 16.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn iq4(qs: *const u8) -> [int8x16_t; 2] {
    let table = vld1q_s8(super::super::formats::IQ4NL_VALUES.as_ptr());
    let qs = vld1q_u8(qs);
    [
        vqtbl1q_s8(table, vandq_u8(qs, vdupq_n_u8(0x0f))),
        vqtbl1q_s8(table, vshrq_n_u8::<4>(qs)),
    ]
}

/// Chunk `j` (32 elements) of the grid-type block at `p` (`iq_grid`): the codebook bytes of
/// each group of 8 times their signs (±1), plus IQ1's delta; the ternary types' trits.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn grid(ty: super::super::QuantType, p: *const u8, j: usize) -> [int8x16_t; 2] {
    if super::super::iq_grid::is_ternary(ty) {
        return ternary(ty, p, j);
    }
    let b = std::slice::from_raw_parts(p, ty.block_bytes());
    use super::super::iq_grid::Signs;
    let c = super::super::iq_grid::grid_chunk(ty, b, j);
    let pair = |t: &[u64; 4], h: usize| vcombine_s8(vcreate_s8(t[2 * h]), vcreate_s8(t[2 * h + 1]));
    let bits = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let sign = |h: usize| match c.sign {
        Signs::Multipliers(m) => pair(&m, h),
        Signs::Bits(b) => {
            // Byte i takes sign byte 2h + i / 8: −1 where bit i % 8 of it is set, else 1.
            let bytes = vreinterpretq_u8_u32(vdupq_n_u32(b));
            let pick = vcombine_u8(vdup_n_u8(2 * h as u8), vdup_n_u8(2 * h as u8 + 1));
            let negative = vreinterpretq_s8_u8(vtstq_u8(vqtbl1q_u8(bytes, pick), bits));
            vorrq_s8(negative, vdupq_n_s8(1))
        }
    };
    let half = |h: usize| {
        let v = vmulq_s8(pair(&c.grid, h), sign(h));
        vaddq_s8(
            v,
            vcombine_s8(vdup_n_s8(c.delta[2 * h]), vdup_n_s8(c.delta[2 * h + 1])),
        )
    };
    [half(0), half(1)]
}

/// Chunk `j` of the TQ1_0 / TQ2_0 block at `p` (`formats` gives the packing), unpacked in
/// vectors rather than through `iq_grid::grid_chunk`'s scalar words (as the x86 kernels do).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn ternary(ty: super::super::QuantType, p: *const u8, j: usize) -> [int8x16_t; 2] {
    let minus_one = vdupq_n_s8(-1);
    if ty == super::super::QuantType::Tq2_0 {
        // Bits 2l..2l + 2 of qs[32h..32h + 32] (j = 4h + l), minus one.
        let (h, l) = (j / 4, j % 4);
        let right = vdupq_n_s8(-2 * l as i8);
        let half = |v: usize| {
            let q = vandq_u8(
                vshlq_u8(vld1q_u8(p.add(32 * h + 16 * v)), right),
                vdupq_n_u8(3),
            );
            vaddq_s8(vreinterpretq_s8_u8(q), minus_one)
        };
        return [half(0), half(1)];
    }
    // Each byte times the power of three that brings the wanted trit to its top (u8
    // products wrap mod 256, as the packing needs).
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let qs = |at: usize| vld1q_u8(p.add(at));
    let (bytes, pow) = match j {
        0..5 => ([qs(0), qs(16)], [vdupq_n_u8(POW3[j]); 2]),
        5 | 6 => {
            let n = 2 * (j - 5);
            ([qs(32); 2], [vdupq_n_u8(POW3[n]), vdupq_n_u8(POW3[n + 1])])
        }
        _ => {
            // Trit 4 of qs[32..48], then trits 0..4 of qh[0..4] (element 240 + 4n + m).
            let qh = vreinterpretq_u8_u32(vdupq_n_u32((p.add(48) as *const u32).read_unaligned()));
            const QH_POW: [u8; 16] = [1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27];
            ([qs(32), qh], [vdupq_n_u8(81), vld1q_u8(QH_POW.as_ptr())])
        }
    };
    // The trit, (3y) >> 8, is 1 from y = 86 and 2 from 171: the value is −1 plus both tests
    // (each all ones, −1, where it holds).
    let value = |v: usize| {
        let y = vmulq_u8(bytes[v], pow[v]);
        let at_least = |t: u8| vreinterpretq_s8_u8(vcgeq_u8(y, vdupq_n_u8(t)));
        vsubq_s8(vsubq_s8(minus_one, at_least(86)), at_least(171))
    };
    [value(0), value(1)]
}

/// Q4_K / Q5_K sub-block j (32 elements) of the block at `p`: the low (even j) or high (odd j)
/// nibbles of quant bytes 32·(j/2)..+32, plus (Q5_K) 16 where bit j of qh[l] is set. Values
/// 0..=31 are already valid signed bytes; the minimums come in through the activation sums.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn k_sub_block(p: *const u8, q5: bool, j: usize) -> [int8x16_t; 2] {
    let qs = p.add(if q5 { 48 } else { 16 } + 32 * (j / 2));
    let mut out = [vdupq_n_s8(0); 2];
    for (h, o) in out.iter_mut().enumerate() {
        let bytes = vld1q_u8(qs.add(16 * h));
        let mut q = if j.is_multiple_of(2) {
            vandq_u8(bytes, vdupq_n_u8(0x0f))
        } else {
            vshrq_n_u8::<4>(bytes)
        };
        if q5 {
            // Bit j moved to bit 4 (`ushl` by a negative amount shifts right).
            let qh = vld1q_u8(p.add(16 + 16 * h));
            let fifth = vandq_u8(vshlq_u8(qh, vdupq_n_s8(4 - j as i8)), vdupq_n_u8(0x10));
            q = vorrq_u8(q, fifth);
        }
        *o = signed(q);
    }
    out
}

/// Q6_K quarter k of half h (elements 128·h + 32·k..+32) of the block at `p`: the low four
/// bits are nibble k/2 of ql[64·h + 32·(k%2)..], the top two bits 2k..2k+2 of qh[32·h..];
/// minus 32, so −32..=31.
#[inline]
#[target_feature(enable = "neon")]
pub unsafe fn q6k_quarter(p: *const u8, h: usize, k: usize) -> [int8x16_t; 2] {
    let ql = p.add(64 * h + 32 * (k % 2));
    let qh = p.add(128 + 32 * h);
    let mut out = [vdupq_n_s8(0); 2];
    for (v, o) in out.iter_mut().enumerate() {
        let low = vld1q_u8(ql.add(16 * v));
        let low = if k < 2 {
            vandq_u8(low, vdupq_n_u8(0x0f))
        } else {
            vshrq_n_u8::<4>(low)
        };
        // Bits 2k..2k+2 moved to bits 4..6.
        let high = vshlq_u8(vld1q_u8(qh.add(16 * v)), vdupq_n_s8(4 - 2 * k as i8));
        let q = vorrq_u8(low, vandq_u8(high, vdupq_n_u8(0x30)));
        *o = signed(vsubq_u8(q, vdupq_n_u8(32)));
    }
    out
}
