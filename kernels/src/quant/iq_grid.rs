//! The grid types: GGUF's lattice-codebook types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M
//! (llama.cpp's "i-quants" below 4 bits, which large models are shipped in to fit memory).
//!
//! Each 256-element super-block stores, per group of 8 (IQ3: 4) elements, an index into a
//! fixed codebook of magnitudes (`iq_grids`), the group's signs (IQ2_XXS / IQ2_XS / IQ3_XXS:
//! 7 bits, the eighth giving the group even parity; IQ2_S / IQ3_S: 8 bits), and small
//! integer scales per 32 or 16 elements. IQ1 has no signs: its codebook holds -1, 0, 1, and a
//! delta of ±1/8 is added per 32 (IQ1_S) or per 8 (IQ1_M).
//!
//! Every type is read here as value = D · s_g · q, with q a signed byte (the codebook value
//! with its sign, plus IQ1's delta, all in the codebook's units), s_g a positive integer per
//! 16 elements and D the block's f16 scale times a power of two:
//!
//! | type    | bytes | layout                                                   | s_g    | D     |
//! |---------|-------|----------------------------------------------------------|--------|-------|
//! | IQ2_XXS | 66    | d, per 32: 4 index bytes, u32 of 4×7 sign bits + 4-bit ls | 2ls+1 | d/8   |
//! | IQ2_XS  | 74    | d, u16 per 8 (9-bit index, 7 sign bits), ls[8] per 16     | 2ls+1 | d/8   |
//! | IQ2_S   | 82    | d, qs[32], signs[32], qh[8] (2 index bits), ls[8] per 16  | 2ls+1 | d/8   |
//! | IQ3_XXS | 98    | d, qs[64] (index per 4), u32 per 32 as IQ2_XXS's          | 2ls+1 | d/4   |
//! | IQ3_S   | 110   | d, qs[64], qh[8] (ninth bits), signs[32], ls[4] per 32    | 2ls+1 | d     |
//! | IQ1_S   | 50    | d, qs[32], u16 per 32 (3 index bits ×4, ls, delta sign)   | 2ls+1 | d/8   |
//! | IQ1_M   | 56    | qs[32], qh[16] (3 index bits + delta sign per 8), 4 u16 of 3-bit ls per 16 with d's nibbles on top | 2ls+1 | d/8 |
//!
//! IQ2's magnitudes are 8, 25, 43 (x/8 of d·(ls+½)/4), IQ3_XXS's up to 62 (d·(ls+½)/2), IQ3_S's
//! odd 1..15, IQ1's -8, 0, 8 plus the delta ±1 (eighths of d·(2ls+1)): |q| ≤ 62 everywhere, so
//! the kernels' byte products cannot saturate, and s_g ≤ 31.
//!
//! The ternary types TQ1_0 and TQ2_0 (`formats` gives their layouts) ride on the same paths:
//! their values are d·t, t one of −1, 0, 1, so a chunk is its trits (0..=2, TQ2_0's two bits
//! up to 3) plus IQ1's delta, here −1 for every group, with D = d and every s_g 1. The lattice
//! kernels then serve them unchanged; only the unpacking below is theirs.
use super::formats::{f16_at, QuantType};
use super::iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID};
use half::f16;

/// The sign byte of a 7-bit sign index: bit 7 makes the count of set bits even (the
/// quantizer flips the smallest element's sign to keep it so, saving a bit per group).
pub const KSIGNS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = i as u8 | (((i as u32).count_ones() as u8 & 1) << 7);
        i += 1;
    }
    t
};

/// The ±1 bytes of a sign byte: byte k is −1 (0xff) where bit k is set, else 1.
const SIGN_MULTIPLIERS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut k = 0;
        while k < 8 {
            let byte: u64 = if (i >> k) & 1 == 1 { 0xff } else { 0x01 };
            t[i] |= byte << (8 * k);
            k += 1;
        }
        i += 1;
    }
    t
};

/// `SIGN_MULTIPLIERS` of the sign byte of each 7-bit sign index (`KSIGNS`): the seven bits
/// and their parity come out of one lookup, where spreading them per chunk cost more than the
/// codebook lookups (qbench m=1, IQ2_XXS / IQ2_XS / IQ3_XXS about 1.15x).
pub static KSIGN_MULTIPLIERS: [u64; 128] = {
    let mut t = [0u64; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = SIGN_MULTIPLIERS[KSIGNS[i] as usize];
        i += 1;
    }
    t
};

/// All eight multipliers 1: IQ1's and the ternary types' groups, which have no signs.
const POSITIVE: u64 = 0x0101_0101_0101_0101;

/// The grid types as a pattern, so that matches over `QuantType` name them once.
macro_rules! grid_types {
    () => {
        $crate::quant::QuantType::Iq2Xxs
            | $crate::quant::QuantType::Iq2Xs
            | $crate::quant::QuantType::Iq2S
            | $crate::quant::QuantType::Iq3Xxs
            | $crate::quant::QuantType::Iq3S
            | $crate::quant::QuantType::Iq1S
            | $crate::quant::QuantType::Iq1M
            | $crate::quant::QuantType::Tq1_0
            | $crate::quant::QuantType::Tq2_0
    };
}
pub(crate) use grid_types;

/// The grid types (`grid_types!` as a list): the lattice codebooks and the ternary types.
pub const GRID_TYPES: [QuantType; 9] = [
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

/// Whether `ty` is one of the grid types.
pub fn is_grid(ty: QuantType) -> bool {
    matches!(ty, grid_types!())
}

/// One 32-element chunk of a block, looked up but not yet signed: value 8g + k (g < 4,
/// k < 8) is byte k of `grid[g]` (a signed byte) with the sign `sign` gives it, plus
/// `delta[g]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridChunk {
    pub grid: [u64; 4],
    pub sign: Signs,
    pub delta: [i8; 4],
}

/// The signs of a chunk's 32 values, in the form the block gives them cheapest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signs {
    /// Byte k of word g is value 8g + k's sign, ±1 (7-bit indices looked up, IQ1's all 1).
    Multipliers([u64; 4]),
    /// Bit 8g + k is set where value 8g + k is negative (IQ2_S and IQ3_S store these bytes;
    /// the kernels spread them in vectors: looking up 256-entry tables of multipliers cost
    /// 1.1x (IQ2_S) to 2.5x (IQ3_S) their products).
    Bits(u32),
}

impl Signs {
    /// Value 8g + k's sign, ±1.
    pub fn of(&self, g: usize, k: usize) -> i8 {
        match self {
            Signs::Multipliers(m) => (m[g] >> (8 * k)) as u8 as i8,
            Signs::Bits(b) => 1 - 2 * ((b >> (8 * g + k)) & 1) as i8,
        }
    }
}

impl GridChunk {
    /// The chunk's 32 signed values.
    pub fn values(&self) -> [i8; 32] {
        std::array::from_fn(|i| {
            let (g, k) = (i / 8, i % 8);
            ((self.grid[g] >> (8 * k)) as u8 as i8) * self.sign.of(g, k) + self.delta[g]
        })
    }
}

// One bounds check and one load each (a byte array built index by index compiled to four byte
// loads, shifts and ors per word, in the decode products' innermost loop).
#[inline(always)]
fn u16_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 2];
    w.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(w) as u32
}

#[inline(always)]
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

#[inline(always)]
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// `table[i]` as a load of its own, which the compiler may not merge with its neighbours.
///
/// Inlined into the AVX-512 kernels, a chunk's four to eight codebook lookups were vectorized
/// into gather instructions, which this Sapphire Rapids VM (and CPUs under the Gather Data
/// Sampling mitigation) run far slower than plain loads: the VNNI kernels decoded IQ3_S at
/// 0.8x the AVX2 ones, which had none. A volatile read is one plain load, never part of a
/// gather (`qbench` m=1, one thread, VNNI: IQ3_S 6.6 -> 10.0 GMAC/s, IQ3_XXS 8.5 -> 10.1,
/// IQ1_S 10.9 -> 12.7, the others 2-7% up; AVX2 about even).
#[inline(always)]
fn lookup<T: Copy>(table: &[T], i: usize) -> T {
    let entry: &T = &table[i];
    // SAFETY: `entry` is a valid, aligned reference.
    unsafe { std::ptr::read_volatile(entry) }
}

/// Two 4-wide IQ3 entries as one 8-byte group.
#[inline(always)]
fn pair(table: &[u32], lo: usize, hi: usize) -> u64 {
    lookup(table, lo) as u64 | (lookup(table, hi) as u64) << 32
}

/// IQ1_M's f16 scale, kept in the top nibbles of its four scale words.
#[inline(always)]
fn iq1m_d(b: &[u8]) -> f32 {
    let w = |i: usize| u16_at(b, 48 + 2 * i);
    let bits = (w(0) >> 12) | ((w(1) >> 8) & 0xf0) | ((w(2) >> 4) & 0xf00) | (w(3) & 0xf000);
    f16::from_bits(bits as u16).to_f32()
}

/// The block's D and its integer scale s_g of every 16 elements (module doc).
#[inline(always)]
pub fn grid_scales(ty: QuantType, b: &[u8]) -> (f32, [u8; 16]) {
    let odd = |ls: u32| (2 * (ls & 0x0f) + 1) as u8;
    match ty {
        QuantType::Iq2Xxs | QuantType::Iq3Xxs => {
            // Chunk j's word of signs and scale: at 6 + 8j (IQ2_XXS) or 66 + 4j (IQ3_XXS).
            let (at, step, div) = match ty {
                QuantType::Iq2Xxs => (6, 8, 8.0),
                _ => (66, 4, 4.0),
            };
            let s: [u8; 8] = std::array::from_fn(|j| odd(u32_at(b, at + step * j) >> 28));
            (f16_at(b, 0) / div, std::array::from_fn(|g| s[g / 2]))
        }
        QuantType::Iq2Xs | QuantType::Iq2S => {
            let at = if ty == QuantType::Iq2Xs { 66 } else { 74 };
            let s = std::array::from_fn(|g| odd((b[at + g / 2] >> (4 * (g % 2))) as u32));
            (f16_at(b, 0) / 8.0, s)
        }
        QuantType::Iq3S => {
            let s = std::array::from_fn(|g| odd((b[106 + g / 4] >> (4 * (g / 2 % 2))) as u32));
            (f16_at(b, 0), s)
        }
        QuantType::Iq1S => {
            let s = std::array::from_fn(|g| odd((u16_at(b, 34 + 2 * (g / 2)) >> 12) & 7));
            (f16_at(b, 0) / 8.0, s)
        }
        QuantType::Iq1M => {
            let s =
                std::array::from_fn(|g| odd((u16_at(b, 48 + 2 * (g / 4)) >> (3 * (g % 4))) & 7));
            (iq1m_d(b) / 8.0, s)
        }
        QuantType::Tq1_0 => (f16_at(b, 52), [1; 16]),
        QuantType::Tq2_0 => (f16_at(b, 64), [1; 16]),
        _ => unreachable!("{ty:?} is not a grid type"),
    }
}

/// Whether `ty` is one of the ternary types, which the SIMD kernels unpack in vectors of
/// their own rather than through `grid_chunk`.
#[inline(always)]
pub fn is_ternary(ty: QuantType) -> bool {
    matches!(ty, QuantType::Tq1_0 | QuantType::Tq2_0)
}

/// Whether chunks of `ty` add a delta to their values (IQ1's ±1, the ternary types' −1): the
/// kernels that split values into magnitudes and signs take these from the sum.
#[inline(always)]
pub fn has_delta(ty: QuantType) -> bool {
    matches!(ty, QuantType::Iq1S | QuantType::Iq1M) || is_ternary(ty)
}

/// Every 16 elements' scale as a value, D·s_g: what the dequantization and the panels (repacked
/// or read in place) multiply by, computed here once so that they get the same bits.
#[inline(always)]
pub fn grid_scale_values(ty: QuantType, b: &[u8]) -> [f32; 16] {
    let (d, s) = grid_scales(ty, b);
    s.map(|s| d * s as f32)
}

/// The signs of a chunk of IQ2_XXS / IQ3_XXS from its word of four 7-bit sign indices.
#[inline(always)]
fn signs7(word: u32) -> Signs {
    Signs::Multipliers(std::array::from_fn(|g| {
        lookup(&KSIGN_MULTIPLIERS, (word >> (7 * g)) as usize & 127)
    }))
}

/// Chunk `j` (elements 32j..32j+32) of the block `b` of grid type `ty`.
#[inline(always)]
pub fn grid_chunk(ty: QuantType, b: &[u8], j: usize) -> GridChunk {
    match ty {
        QuantType::Iq2Xxs => {
            let (idx, sg) = (u32_at(b, 2 + 8 * j), u32_at(b, 6 + 8 * j));
            GridChunk {
                grid: std::array::from_fn(|g| {
                    lookup(&IQ2XXS_GRID, (idx >> (8 * g)) as usize & 0xff)
                }),
                sign: signs7(sg),
                delta: [0; 4],
            }
        }
        QuantType::Iq2Xs => {
            let q = |g: usize| u16_at(b, 2 + 2 * (4 * j + g));
            GridChunk {
                grid: std::array::from_fn(|g| lookup(&IQ2XS_GRID, q(g) as usize & 511)),
                sign: Signs::Multipliers(std::array::from_fn(|g| {
                    lookup(&KSIGN_MULTIPLIERS, (q(g) >> 9) as usize & 127)
                })),
                delta: [0; 4],
            }
        }
        QuantType::Iq2S => {
            let qh = b[66 + j] as usize;
            GridChunk {
                grid: std::array::from_fn(|g| {
                    lookup(
                        &IQ2S_GRID,
                        b[2 + 4 * j + g] as usize | ((qh >> (2 * g)) & 3) << 8,
                    )
                }),
                sign: Signs::Bits(u32_at(b, 34 + 4 * j)),
                delta: [0; 4],
            }
        }
        QuantType::Iq3Xxs => {
            let qs = &b[2 + 8 * j..10 + 8 * j];
            GridChunk {
                grid: std::array::from_fn(|g| {
                    pair(&IQ3XXS_GRID, qs[2 * g] as usize, qs[2 * g + 1] as usize)
                }),
                sign: signs7(u32_at(b, 66 + 4 * j)),
                delta: [0; 4],
            }
        }
        QuantType::Iq3S => {
            let qh = b[66 + j] as usize;
            let index = |i: usize| b[2 + 8 * j + i] as usize | ((qh >> i) & 1) << 8;
            GridChunk {
                grid: std::array::from_fn(|g| pair(&IQ3S_GRID, index(2 * g), index(2 * g + 1))),
                sign: Signs::Bits(u32_at(b, 74 + 4 * j)),
                delta: [0; 4],
            }
        }
        QuantType::Iq1S => {
            let qh = u16_at(b, 34 + 2 * j) as usize;
            let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
            GridChunk {
                grid: std::array::from_fn(|g| {
                    lookup(
                        &IQ1S_GRID,
                        b[2 + 4 * j + g] as usize | ((qh >> (3 * g)) & 7) << 8,
                    )
                }),
                sign: Signs::Multipliers([POSITIVE; 4]),
                delta: [delta; 4],
            }
        }
        QuantType::Iq1M => {
            // Group G = 4j + g: its high index bits and delta sign in nibble G % 2 of
            // qh[G / 2].
            let nib = |g: usize| (b[32 + 2 * j + g / 2] >> (4 * (g % 2))) as usize;
            GridChunk {
                grid: std::array::from_fn(|g| {
                    lookup(&IQ1S_GRID, b[4 * j + g] as usize | (nib(g) & 7) << 8)
                }),
                sign: Signs::Multipliers([POSITIVE; 4]),
                delta: std::array::from_fn(|g| if nib(g) & 8 != 0 { -1 } else { 1 }),
            }
        }
        QuantType::Tq2_0 => {
            // Chunk j = 4h + l: bits 2l..2l + 2 of qs[32h..32h + 32].
            let (h, l) = (j / 4, j % 4);
            GridChunk {
                grid: std::array::from_fn(|g| (u64_at(b, 32 * h + 8 * g) >> (2 * l)) & TWO_BITS),
                sign: Signs::Multipliers([POSITIVE; 4]),
                delta: [-1; 4],
            }
        }
        QuantType::Tq1_0 => GridChunk {
            grid: tq1_chunk(b, j),
            sign: Signs::Multipliers([POSITIVE; 4]),
            delta: [-1; 4],
        },
        _ => unreachable!("{ty:?} is not a grid type"),
    }
}

const TWO_BITS: u64 = 0x0303_0303_0303_0303;

/// 3ⁿ: multiplying a TQ1_0 byte by it (mod 256) brings trit n to the top (`formats`).
const POW3: [u64; 5] = [1, 3, 9, 27, 81];

/// Trit n of each of the eight bytes of `word`, one per byte. The bytes are taken in two sets
/// of four 16-bit lanes, so that one 64-bit multiply does four bytes' x·3ⁿ and another their
/// ·3 (every product stays under 2¹⁶, in its lane); masking each lane's low byte is the mod 256.
#[inline(always)]
fn trits(word: u64, n: usize) -> u64 {
    const LOW: u64 = 0x00ff_00ff_00ff_00ff;
    let lanes = |w: u64| (((((w & LOW) * POW3[n]) & LOW) * 3) >> 8) & LOW;
    lanes(word) | lanes(word >> 8) << 8
}

/// Chunk `j` of a TQ1_0 block as trits (`formats` gives the element order).
#[inline(always)]
fn tq1_chunk(b: &[u8], j: usize) -> [u64; 4] {
    match j {
        // Trit j of qs[0..32].
        0..5 => std::array::from_fn(|g| trits(u64_at(b, 8 * g), j)),
        // Elements 160 + 32(j − 5)..: trits 2(j − 5) and 2(j − 5) + 1 of qs[32..48].
        5 | 6 => {
            let n = 2 * (j - 5);
            std::array::from_fn(|g| trits(u64_at(b, 32 + 8 * (g % 2)), n + g / 2))
        }
        // Trit 4 of qs[32..48], then trits 0..4 of qh[0..4].
        _ => {
            let qh = u32_at(b, 48) as u64;
            [
                trits(u64_at(b, 32), 4),
                trits(u64_at(b, 40), 4),
                trits(qh, 0) | trits(qh, 1) << 32,
                trits(qh, 2) | trits(qh, 3) << 32,
            ]
        }
    }
}

/// Set the f16 scale of a block of grid type `ty` (IQ1_M's four nibbles; the ternary types'
/// field at the end, the others' at 0): `formats::set_scales` for these types.
pub fn set_grid_scale(ty: QuantType, block: &mut [u8], d: f32) {
    let bits = f16::from_f32(d).to_bits();
    if is_ternary(ty) {
        let at = ty.block_bytes() - 2;
        block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
    } else if ty == QuantType::Iq1M {
        for i in 0..4 {
            let at = 48 + 2 * i;
            let w = u16::from_le_bytes([block[at], block[at + 1]]) & 0x0fff;
            let nibble = (bits >> (4 * i)) & 0x0f;
            block[at..at + 2].copy_from_slice(&(w | nibble << 12).to_le_bytes());
        }
    } else {
        block[..2].copy_from_slice(&bits.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_bytes_have_even_parity_and_keep_their_index() {
        for (i, &s) in KSIGNS.iter().enumerate() {
            assert_eq!(s & 0x7f, i as u8);
            assert_eq!(s.count_ones() % 2, 0);
        }
        assert_eq!(&KSIGNS[..4], &[0x00, 0x81, 0x82, 0x03]);
        assert_eq!(KSIGN_MULTIPLIERS[1], 0xff01_0101_0101_01ff);
        assert_eq!(SIGN_MULTIPLIERS[0x80], 0xff01_0101_0101_0101);
    }

    #[test]
    fn trits_match_the_per_byte_formula() {
        let trit = |x: u8, pow: u64| ((x.wrapping_mul(pow as u8) as u16 * 3) >> 8) as u8;
        for (n, &pow) in POW3.iter().enumerate() {
            for x in 0..=255u8 {
                // Byte x at every position, its neighbours 0xff (a carry would show there).
                for at in 0..8 {
                    let word = !(0xffu64 << (8 * at)) | (x as u64) << (8 * at);
                    let got = trits(word, n);
                    assert_eq!((got >> (8 * at)) as u8, trit(x, pow), "x {x} n {n} at {at}");
                    for other in (0..8).filter(|&o| o != at) {
                        assert_eq!((got >> (8 * other)) as u8, trit(0xff, pow));
                    }
                }
            }
        }
    }

    #[test]
    fn tq1_chunks_follow_the_element_order() {
        // Byte i of the block holds i·7 mod 243 (a valid 5-trit value).
        let b: Vec<u8> = (0..54).map(|i| (i * 7 % 243) as u8).collect();
        let trit = |x: u8, n: usize| ((x.wrapping_mul(POW3[n] as u8) as u16 * 3) >> 8) as i8;
        let mut want = Vec::new();
        (0..5).for_each(|n| (0..32).for_each(|m| want.push(trit(b[m], n))));
        (0..5).for_each(|n| (0..16).for_each(|m| want.push(trit(b[32 + m], n))));
        (0..4).for_each(|n| (0..4).for_each(|m| want.push(trit(b[48 + m], n))));
        let got: Vec<i8> = (0..8)
            .flat_map(|j| grid_chunk(QuantType::Tq1_0, &b, j).values())
            .collect();
        let want: Vec<i8> = want.iter().map(|t| t - 1).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn iq1m_scale_round_trips_through_its_nibbles() {
        let mut block = [0xabu8; 56];
        set_grid_scale(QuantType::Iq1M, &mut block, 0.0123);
        let want = f16::from_f32(0.0123).to_f32();
        assert_eq!(grid_scales(QuantType::Iq1M, &block).0, want / 8.0);
        // The low 12 bits of each word (the 3-bit scales) are untouched.
        assert_eq!(u16_at(&block, 48) & 0x0fff, 0x0bab);
    }
}
