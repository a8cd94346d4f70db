//! GGML weight block layouts, byte for byte as GGUF files store them, and their scalar
//! dequantization (the ground truth every product here is tested against, and the embedding
//! lookup of quantized tables).
//!
//! All multi-byte fields are little-endian; `f16` is IEEE half precision.
//!
//! | type | elems | bytes | layout                                                          |
//! |------|-------|-------|-----------------------------------------------------------------|
//! | Q4_0 | 32    | 18    | d: f16, qs[16]: element i low nibble, element i+16 high nibble    |
//! | Q5_0 | 32    | 22    | d: f16, qh: u32 (bit i = fifth bit of element i), qs[16] as Q4_0  |
//! | Q8_0 | 32    | 34    | d: f16, qs[32]: i8                                                |
//! | Q4_K | 256   | 144   | d, dmin: f16, scales[12] (8 six-bit scales + 8 mins), qs[128]     |
//! | Q5_K | 256   | 176   | d, dmin: f16, scales[12], qh[32], qs[128]                         |
//! | Q6_K | 256   | 210   | ql[128], qh[64], scales[16]: i8, d: f16                           |
//! | MXFP4| 32    | 17    | e: u8 (E8M0 scale), qs[16]: e2m1 codes laid out as Q4_0's nibbles |
//! | Q4_1 | 32    | 20    | d, m: f16, qs[16] as Q4_0 (value = d·q + m)                       |
//! | Q5_1 | 32    | 24    | d, m: f16, qh: u32, qs[16] as Q5_0 (value = d·q + m)              |
//! | Q2_K | 256   | 84    | scales[16] (scale low nibble, min high), qs[64], d, dmin: f16     |
//! | Q3_K | 256   | 110   | hmask[32], qs[64], scales[12] (16 six-bit scales), d: f16         |
//!
//! | IQ4_NL | 32  | 18    | d: f16, qs[16]: codebook indices laid out as Q4_0's nibbles       |
//! | IQ4_XS | 256 | 136   | d: f16, scales_h: u16, scales_l[4], qs[128] (IQ4_NL's per 32)     |
//! | TQ1_0  | 256 | 54    | qs[48] (5 trits per byte), qh[4] (4 trits per byte), d: f16       |
//! | TQ2_0  | 256 | 66    | qs[64] (2 bits per element, Q2_K's order), d: f16                 |
//!
//! IQ4_NL / IQ4_XS values are `IQ4NL_VALUES[index]` times the block's (IQ4_XS: the 32's) scale;
//! IQ4_XS's 6-bit scale j (read minus 32) is nibble j % 2 of scales_l[j / 2] with bits 2j..2j+2
//! of scales_h on top.
//!
//! Q2_K and Q3_K lay out their 2-bit quants alike: element 128·h + 32·j + l (h < 2, j < 4,
//! l < 32) is bits 2j..2j+2 of qs[32·h + l]; Q3_K's third bit is bit 4h + j of hmask[l], and
//! both scale every 16 elements (index 8h + 2j + l/16). TQ2_0 lays its quants out as Q2_K does
//! (t = q − 1).
//!
//! TQ1_0 packs five trits per byte as a fixed-point fraction: trit n of byte x (the n-th most
//! significant base-3 digit) is ((x·3ⁿ mod 256)·3) >> 8, t = trit − 1. Element 32n + m
//! (n < 5, m < 32) is trit n of qs[m], element 160 + 16n + m (m < 16) trit n of qs[32 + m],
//! element 240 + 4n + m (n < 4, m < 4) trit n of qh[m].
use super::activations::QuantizedRows;
use super::iq_grid::{self, grid_types};
use half::f16;

/// The block types the quantized products read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// value = d·(q − 8), q a nibble.
    Q4_0,
    /// value = d·(q − 16), q five bits.
    Q5_0,
    /// value = d·q, q a signed byte.
    Q8_0,
    /// value = d·sc_j·q − dmin·m_j for 32-element sub-block j, q a nibble.
    Q4K,
    /// As Q4_K with a fifth bit per quant from `qh`.
    Q5K,
    /// value = d·sc_j·(q − 32) for 16-element sub-block j, q six bits.
    Q6K,
    /// OCP microscaling FP4 (gpt-oss's experts, GGUF type 39): value = 2^(e − 128)·c, c the
    /// e2m1 code doubled (`MXFP4_DOUBLED`: integers in −12..=12, so the products stay in
    /// integers like every other format's), e the block's E8M0 exponent byte.
    Mxfp4,
    /// value = d·q + m, q a nibble (Q4_0 with a minimum instead of an offset).
    Q4_1,
    /// value = d·q + m, q five bits.
    Q5_1,
    /// value = d·sc_g·q − dmin·m_g for 16-element sub-block g, q two bits, sc and m four.
    Q2K,
    /// value = d·(s_g − 32)·(q − 4) for 16-element sub-block g, q three bits, s six.
    Q3K,
    /// value = d·`IQ4NL_VALUES`[q], q a nibble.
    Iq4Nl,
    /// value = d·(s_j − 32)·`IQ4NL_VALUES`[q] for 32-element sub-block j, q a nibble, s six bits.
    Iq4Xs,
    /// The lattice-codebook types (`iq_grid`): value = D·s_g·q, q a signed codebook value.
    Iq2Xxs,
    Iq2Xs,
    Iq2S,
    Iq3Xxs,
    Iq3S,
    Iq1S,
    Iq1M,
    /// The ternary types (BitNet b1.58 / TriLM models): value = d·t, t in −1, 0, 1 (TQ2_0's
    /// two bits can also say 2), read as grid types with every s_g 1 (`iq_grid`).
    Tq1_0,
    Tq2_0,
}

/// The non-linear 4-bit codebook of IQ4_NL and IQ4_XS (llama.cpp's `kvalues_iq4nl`).
pub const IQ4NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// The e2m1 codes' values, doubled: ±{0, 0.5, 1, 1.5, 2, 3, 4, 6} × 2, sign in bit 3.
pub const MXFP4_DOUBLED: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// An MXFP4 block's scale for its doubled codes: 2^(e − 128), exact in f32 for every byte
/// (e < 2 gives subnormals; 255, which the OCP format reserves for NaN, gives 2^127 as ggml's
/// conversion does).
#[inline]
pub const fn e8m0_half(e: u8) -> f32 {
    if e < 2 {
        f32::from_bits(0x0020_0000 << e)
    } else {
        f32::from_bits((e as u32 - 1) << 23)
    }
}

/// `e8m0_half` of every byte: the SIMD kernels look a block's scale up (one load) where the
/// branch, shifts and moves of computing it stood out in a decode product's profile (MXFP4
/// m = 1, one thread: about a fifth of the instructions).
pub static E8M0_HALF: [f32; 256] = {
    let mut t = [0f32; 256];
    let mut e = 0;
    while e < 256 {
        t[e] = e8m0_half(e as u8);
        e += 1;
    }
    t
};

/// How activations are quantized for a weight type: per 32 elements (one scale per block,
/// matching the weight blocks) or per 256 (one scale per K-quant super-block, with sums of
/// every 16 quants for the weight minimums/offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActFormat {
    B32,
    B256,
    /// B32's layout (a scale and a quant sum per 32) plus the f32 sums of every 16 and 32
    /// values (scale × quant sum), for the prefill kernel that holds weight rows in vector
    /// lanes and applies every format's offset or minimum in f32 (`x86::panel`).
    ///
    /// The values are quantized with one scale per `scale_block` (the weight type's own
    /// activation block: 32, or 256 for K-quants), that scale repeated for each 32: the quants
    /// are then exactly those of B32/B256, so a token's logits do not depend on how many rows
    /// shared its forward pass (prefill vs decode, a prefix-cached prompt vs a fresh one).
    Panel {
        scale_block: usize,
    },
}

impl QuantType {
    pub const ALL: [QuantType; 22] = [
        QuantType::Q4_0,
        QuantType::Q5_0,
        QuantType::Q8_0,
        QuantType::Q4K,
        QuantType::Q5K,
        QuantType::Q6K,
        QuantType::Mxfp4,
        QuantType::Q4_1,
        QuantType::Q5_1,
        QuantType::Q2K,
        QuantType::Q3K,
        QuantType::Iq4Nl,
        QuantType::Iq4Xs,
        QuantType::Iq2Xxs,
        QuantType::Iq2Xs,
        QuantType::Iq2S,
        QuantType::Iq3Xxs,
        QuantType::Iq3S,
        QuantType::Iq1S,
        QuantType::Iq1M,
        QuantType::Tq1_0,
        QuantType::Tq2_0,
    ];

    /// Whether each 16 elements of a 32-element chunk have a scale (and minimum) of their own.
    pub fn scales_per_16(self) -> bool {
        matches!(
            self,
            QuantType::Q6K
                | QuantType::Q2K
                | QuantType::Q3K
                | QuantType::Iq2Xs
                | QuantType::Iq2S
                | QuantType::Iq1M
        )
    }

    /// Elements per block.
    pub fn block_elems(self) -> usize {
        match self {
            QuantType::Q4_0
            | QuantType::Q5_0
            | QuantType::Q8_0
            | QuantType::Mxfp4
            | QuantType::Q4_1
            | QuantType::Q5_1
            | QuantType::Iq4Nl => 32,
            QuantType::Q4K
            | QuantType::Q5K
            | QuantType::Q6K
            | QuantType::Q2K
            | QuantType::Q3K
            | QuantType::Iq4Xs
            | QuantType::Iq2Xxs
            | QuantType::Iq2Xs
            | QuantType::Iq2S
            | QuantType::Iq3Xxs
            | QuantType::Iq3S
            | QuantType::Iq1S
            | QuantType::Iq1M
            | QuantType::Tq1_0
            | QuantType::Tq2_0 => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::Q4_0 => 18,
            QuantType::Q5_0 => 22,
            QuantType::Q8_0 => 34,
            QuantType::Q4K => 144,
            QuantType::Q5K => 176,
            QuantType::Q6K => 210,
            QuantType::Mxfp4 => 17,
            QuantType::Q4_1 => 20,
            QuantType::Q5_1 => 24,
            QuantType::Q2K => 84,
            QuantType::Q3K => 110,
            QuantType::Iq4Nl => 18,
            QuantType::Iq4Xs => 136,
            QuantType::Iq2Xxs => 66,
            QuantType::Iq2Xs => 74,
            QuantType::Iq2S => 82,
            QuantType::Iq3Xxs => 98,
            QuantType::Iq3S => 110,
            QuantType::Iq1S => 50,
            QuantType::Iq1M => 56,
            QuantType::Tq1_0 => 54,
            QuantType::Tq2_0 => 66,
        }
    }

    pub fn act_format(self) -> ActFormat {
        match self.block_elems() {
            32 => ActFormat::B32,
            _ => ActFormat::B256,
        }
    }

    /// The Panel format quantized exactly as `act_format` is.
    pub fn panel_format(self) -> ActFormat {
        ActFormat::Panel {
            scale_block: QuantizedRows::block(self.act_format()),
        }
    }

    /// Bytes of a row of `k` elements, or None when `k` is not a whole number of blocks.
    pub fn row_bytes(self, k: usize) -> Option<usize> {
        k.is_multiple_of(self.block_elems())
            .then(|| k / self.block_elems() * self.block_bytes())
    }
}

/// Set every scale of a block of `ty` to about `d`: the f16 fields (a K-quant's d and dmin
/// both) to `d`, MXFP4's exponent byte to the power of two at or under |d|. For writing valid
/// blocks in tests and benchmarks, over random bytes whose scale fields could be NaN or huge.
pub fn set_scales(ty: QuantType, block: &mut [u8], d: f32) {
    let f16_fields: &[usize] = match ty {
        QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0 => &[0],
        QuantType::Iq4Nl | QuantType::Iq4Xs => &[0],
        QuantType::Q4K | QuantType::Q5K => &[0, 2],
        QuantType::Q6K => &[208],
        QuantType::Q4_1 | QuantType::Q5_1 => &[0, 2],
        QuantType::Q2K => &[80, 82],
        QuantType::Q3K => &[108],
        grid_types!() => return iq_grid::set_grid_scale(ty, block, d),
        QuantType::Mxfp4 => {
            let exp = d.abs().max(1e-30).log2().floor() as i32;
            block[0] = (exp + 128).clamp(0, 254) as u8;
            return;
        }
    };
    let bits = f16::from_f32(d).to_bits().to_le_bytes();
    for &at in f16_fields {
        block[at..at + 2].copy_from_slice(&bits);
    }
}

/// `count` blocks of `ty` of filler bytes (xorshift from `seed`, which must not be 0) with
/// every scale set to about `d` (`set_scales`): valid blocks for tests and benchmarks.
pub fn filler_blocks(ty: QuantType, count: usize, seed: u64, d: f32) -> Vec<u8> {
    let mut state = seed;
    let mut bytes: Vec<u8> = (0..count * ty.block_bytes())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for block in bytes.chunks_exact_mut(ty.block_bytes()) {
        set_scales(ty, block, d);
    }
    bytes
}

/// The f16 at byte `at` as f32.
#[inline]
pub fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// The eight 6-bit scales and eight 6-bit mins of a Q4_K/Q5_K block, from its 12 packed
/// bytes: bytes 0..4 hold scales 0..4 (low 6 bits), bytes 4..8 mins 0..4; scales and mins
/// 4..8 keep their low nibbles in bytes 8..12 (scale low, min high) and their top two bits in
/// the spare top bits of bytes 0..4 (scales) and 4..8 (mins).
#[inline]
pub fn k_scales_mins(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let word =
        |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (a, b, c) = (word(0), word(4), word(8));
    let sc_lo = a & 0x3f3f_3f3f;
    let sc_hi = (c & 0x0f0f_0f0f) | (((a >> 6) & 0x0303_0303) << 4);
    let mn_lo = b & 0x3f3f_3f3f;
    let mn_hi = ((c >> 4) & 0x0f0f_0f0f) | (((b >> 6) & 0x0303_0303) << 4);
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    sc[..4].copy_from_slice(&sc_lo.to_le_bytes());
    sc[4..].copy_from_slice(&sc_hi.to_le_bytes());
    mn[..4].copy_from_slice(&mn_lo.to_le_bytes());
    mn[4..].copy_from_slice(&mn_hi.to_le_bytes());
    (sc, mn)
}

/// The sixteen 6-bit scales of a Q3_K block (each to be read minus 32), from its 12 packed
/// bytes: bytes 0..8 hold the low nibbles (scales 0..8 in the low halves, 8..16 in the high
/// ones), bytes 8..12 the top two bits (byte 8 + i % 4, bits 2·(i / 4)..). Eight scales per
/// u64 with shifts and masks (the kernels unpack a block's scales per row and super-block).
#[inline]
pub fn q3k_scales(packed: &[u8]) -> [u8; 16] {
    let nibbles = u64::from_le_bytes([
        packed[0], packed[1], packed[2], packed[3], packed[4], packed[5], packed[6], packed[7],
    ]);
    let top = u32::from_le_bytes([packed[8], packed[9], packed[10], packed[11]]) as u64;
    let pairs = |shift: u32| (top >> shift) & 0x0303_0303;
    // Scales 0..4 take bits 0..2 of bytes 8..12, 4..8 bits 2..4, 8..12 bits 4..6, 12..16 6..8.
    let first = (nibbles & 0x0f0f_0f0f_0f0f_0f0f) | (pairs(0) | pairs(2) << 32) << 4;
    let second = ((nibbles >> 4) & 0x0f0f_0f0f_0f0f_0f0f) | (pairs(4) | pairs(6) << 32) << 4;
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&first.to_le_bytes());
    out[8..].copy_from_slice(&second.to_le_bytes());
    out
}

/// The eight 6-bit scales of an IQ4_XS block (each to be read minus 32): scale j's low nibble
/// is nibble j % 2 of scales_l[j / 2] (bytes 4..8), its top two bits bits 2j..2j+2 of
/// scales_h (bytes 2..4). Spread into bytes with shifts and masks on one u64 (a loop over the
/// eight cost as much as the rest of a decode product's super-block).
#[inline]
pub fn iq4xs_scales(block: &[u8]) -> [u8; 8] {
    let high = u16::from_le_bytes([block[2], block[3]]) as u64;
    let low = u32::from_le_bytes([block[4], block[5], block[6], block[7]]) as u64;
    // Two bits of `high` per byte: byte j holds bits 2j..2j+2.
    let h = (high | high << 24) & 0x0000_00ff_0000_00ff;
    let h = (h | h << 12) & 0x000f_000f_000f_000f;
    let h = (h | h << 6) & 0x0303_0303_0303_0303;
    // Byte i of `low` to byte 2i, then its high nibble to byte 2i + 1.
    let l = (low | low << 16) & 0x0000_ffff_0000_ffff;
    let l = (l | l << 8) & 0x00ff_00ff_00ff_00ff;
    let l = (l & 0x000f_000f_000f_000f) | ((l << 4) & 0x0f00_0f00_0f00_0f00);
    (l | h << 4).to_le_bytes()
}

/// The integer quants of one block, offsets already removed (so value = scale·q − min), with
/// the scale and min of every 16 elements. The reference products and `dequantize` share it,
/// so the two can only disagree in the activation side.
#[derive(Debug, Clone)]
pub struct IntBlock {
    pub q: [i32; 256],
    pub scale: [f32; 16],
    pub min: [f32; 16],
}

impl Default for IntBlock {
    fn default() -> Self {
        IntBlock {
            q: [0; 256],
            scale: [0.0; 16],
            min: [0.0; 16],
        }
    }
}

/// Decode one block (`block.len() == ty.block_bytes()`) into `out` (the first
/// `ty.block_elems()` quants and `block_elems / 16` scale/min pairs are set).
pub fn decode_block(ty: QuantType, block: &[u8], out: &mut IntBlock) {
    match ty {
        grid_types!() => {
            for j in 0..8 {
                let values = iq_grid::grid_chunk(ty, block, j).values();
                for (q, v) in out.q[32 * j..32 * j + 32].iter_mut().zip(values) {
                    *q = v as i32;
                }
            }
            out.scale = iq_grid::grid_scale_values(ty, block);
            out.min.fill(0.0);
        }
        QuantType::Q4_0 | QuantType::Q5_0 => {
            let d = f16_at(block, 0);
            let (qh, qs, offset) = if ty == QuantType::Q5_0 {
                let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
                (qh, &block[6..22], 16)
            } else {
                (0, &block[2..18], 8)
            };
            for (i, &byte) in qs.iter().enumerate() {
                let fifth = |bit: usize| (((qh >> bit) & 1) << 4) as i32;
                out.q[i] = (byte & 0x0f) as i32 + fifth(i) - offset;
                out.q[i + 16] = (byte >> 4) as i32 + fifth(i + 16) - offset;
            }
            out.scale[..2].fill(d);
            out.min[..2].fill(0.0);
        }
        QuantType::Q4_1 | QuantType::Q5_1 => {
            let (d, m) = (f16_at(block, 0), f16_at(block, 2));
            let (qh, qs) = if ty == QuantType::Q5_1 {
                let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
                (qh, &block[8..24])
            } else {
                (0, &block[4..20])
            };
            for (i, &byte) in qs.iter().enumerate() {
                let fifth = |bit: usize| (((qh >> bit) & 1) << 4) as i32;
                out.q[i] = (byte & 0x0f) as i32 + fifth(i);
                out.q[i + 16] = (byte >> 4) as i32 + fifth(i + 16);
            }
            out.scale[..2].fill(d);
            out.min[..2].fill(-m);
        }
        QuantType::Q2K | QuantType::Q3K => {
            let qs = &block[if ty == QuantType::Q2K { 16 } else { 32 }..][..64];
            for h in 0..2 {
                for j in 0..4 {
                    for l in 0..32 {
                        let q = ((qs[32 * h + l] >> (2 * j)) & 3) as i32;
                        out.q[128 * h + 32 * j + l] = match ty {
                            QuantType::Q3K => q + 4 * ((block[l] >> (4 * h + j)) & 1) as i32 - 4,
                            _ => q,
                        };
                    }
                }
            }
            if ty == QuantType::Q2K {
                let (d, dmin) = (f16_at(block, 80), f16_at(block, 82));
                for (g, &b) in block[..16].iter().enumerate() {
                    out.scale[g] = d * (b & 0x0f) as f32;
                    out.min[g] = dmin * (b >> 4) as f32;
                }
            } else {
                let d = f16_at(block, 108);
                for (g, s) in q3k_scales(&block[96..108]).into_iter().enumerate() {
                    out.scale[g] = d * (s as i32 - 32) as f32;
                }
                out.min.fill(0.0);
            }
        }
        QuantType::Iq4Nl | QuantType::Iq4Xs => {
            let d = f16_at(block, 0);
            let (qs, scales) = match ty {
                QuantType::Iq4Nl => (&block[2..18], [32u8; 8]),
                _ => (&block[8..136], iq4xs_scales(block)),
            };
            for (j, (bytes, &s)) in qs.chunks_exact(16).zip(&scales).enumerate() {
                for (i, &byte) in bytes.iter().enumerate() {
                    out.q[32 * j + i] = IQ4NL_VALUES[(byte & 0x0f) as usize] as i32;
                    out.q[32 * j + i + 16] = IQ4NL_VALUES[(byte >> 4) as usize] as i32;
                }
                let scale = match ty {
                    QuantType::Iq4Nl => d,
                    _ => d * (s as i32 - 32) as f32,
                };
                out.scale[2 * j..2 * j + 2].fill(scale);
                out.min[2 * j..2 * j + 2].fill(0.0);
            }
        }
        QuantType::Mxfp4 => {
            for (i, &byte) in block[1..17].iter().enumerate() {
                out.q[i] = MXFP4_DOUBLED[(byte & 0x0f) as usize] as i32;
                out.q[i + 16] = MXFP4_DOUBLED[(byte >> 4) as usize] as i32;
            }
            out.scale[..2].fill(e8m0_half(block[0]));
            out.min[..2].fill(0.0);
        }
        QuantType::Q8_0 => {
            let d = f16_at(block, 0);
            for (q, &b) in out.q.iter_mut().zip(&block[2..34]) {
                *q = b as i8 as i32;
            }
            out.scale[..2].fill(d);
            out.min[..2].fill(0.0);
        }
        QuantType::Q4K | QuantType::Q5K => {
            let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
            let (sc, mn) = k_scales_mins(&block[4..16]);
            let (qh, qs) = if ty == QuantType::Q5K {
                (&block[16..48], &block[48..176])
            } else {
                (&[0u8; 32][..], &block[16..144])
            };
            // Sub-block j (32 elements) is the low (even j) or high (odd j) nibbles of bytes
            // 32·(j/2)..+32, with its fifth bit in bit j of qh[0..32].
            for j in 0..8 {
                let bytes = &qs[32 * (j / 2)..32 * (j / 2) + 32];
                let shift = 4 * (j % 2);
                for (l, &b) in bytes.iter().enumerate() {
                    let hi = ((qh[l] >> j) & 1) << 4;
                    out.q[32 * j + l] = (((b >> shift) & 0x0f) | hi) as i32;
                }
                out.scale[2 * j..2 * j + 2].fill(d * sc[j] as f32);
                out.min[2 * j..2 * j + 2].fill(dmin * mn[j] as f32);
            }
        }
        QuantType::Q6K => {
            let (ql, qh, scales) = (&block[0..128], &block[128..192], &block[192..208]);
            let d = f16_at(block, 208);
            // Each 128-element half uses 64 bytes of ql and 32 of qh. Its four 32-element
            // quarters k take low (k < 2) or high nibbles of ql[32·(k%2)..], and bits 2k..2k+2
            // of qh.
            for half in 0..2 {
                for k in 0..4 {
                    let lo = &ql[64 * half + 32 * (k % 2)..][..32];
                    let hi = &qh[32 * half..][..32];
                    for l in 0..32 {
                        let q = ((lo[l] >> (4 * (k / 2))) & 0x0f) | (((hi[l] >> (2 * k)) & 3) << 4);
                        out.q[128 * half + 32 * k + l] = q as i32 - 32;
                    }
                }
            }
            for (s, &b) in out.scale.iter_mut().zip(scales) {
                *s = d * b as i8 as f32;
            }
            out.min.fill(0.0);
        }
    }
}

/// Dequantize whole blocks: `data` holds `out.len() / block_elems` blocks. Trailing bytes or
/// values that do not make a whole block are left alone.
pub fn dequantize(ty: QuantType, data: &[u8], out: &mut [f32]) {
    let mut b = IntBlock::default();
    for (block, o) in data
        .chunks_exact(ty.block_bytes())
        .zip(out.chunks_exact_mut(ty.block_elems()))
    {
        decode_block(ty, block, &mut b);
        for (i, v) in o.iter_mut().enumerate() {
            *v = b.scale[i / 16] * b.q[i] as f32 - b.min[i / 16];
        }
    }
}
