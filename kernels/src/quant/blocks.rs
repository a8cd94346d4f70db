//! GGML block layouts (as in GGUF files) and their scalar decoding, one 32-element sub-block at
//! a time: the unit activations are quantized in.
use half::f16;

/// Weight block types with a fast path here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    /// 32 elements: f16 d, 32 fifth bits, 16 bytes of nibbles; value = d·(q − 16).
    Q5_0,
    /// 32 elements: f16 d, 32 signed bytes; value = d·q.
    Q8_0,
    /// 256 elements: f16 d, f16 dmin, 12 bytes of packed 6-bit scales and mins, 128 bytes of
    /// nibbles; value = d·sc_j·q − dmin·m_j for sub-block j of 32.
    Q4K,
    /// 256 elements: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 signed scales, f16 d;
    /// value = d·sc_j·(q − 32) for sub-block j of 16.
    Q6K,
}

/// One 32-element sub-block, decoded: value_i = scale[i / 16]·q_i − min.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubBlock {
    pub q: [i8; 32],
    pub scale: [f32; 2],
    pub min: f32,
}

impl QuantType {
    pub fn block_elems(self) -> usize {
        match self {
            QuantType::Q5_0 | QuantType::Q8_0 => 32,
            QuantType::Q4K | QuantType::Q6K => 256,
        }
    }
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::Q5_0 => 22,
            QuantType::Q8_0 => 34,
            QuantType::Q4K => 144,
            QuantType::Q6K => 210,
        }
    }
    /// 32-element sub-blocks per block.
    pub fn subs(self) -> usize {
        self.block_elems() / 32
    }
}

pub fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// Scale and min of Q4_K sub-block `j` (6 bits each, packed in 12 bytes).
pub fn q4k_scale_min(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Sub-block `j` of a block.
pub fn decode(ty: QuantType, block: &[u8], j: usize, out: &mut SubBlock) {
    match ty {
        QuantType::Q5_0 => {
            let d = f16_at(block, 0);
            let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
            let qs = &block[6..22];
            for (i, &byte) in qs.iter().enumerate() {
                let lo = (byte & 0x0f) | ((((qh >> i) & 1) as u8) << 4);
                let hi = (byte >> 4) | ((((qh >> (i + 16)) & 1) as u8) << 4);
                out.q[i] = lo as i8 - 16;
                out.q[i + 16] = hi as i8 - 16;
            }
            *out = SubBlock {
                scale: [d, d],
                min: 0.0,
                ..*out
            };
        }
        QuantType::Q8_0 => {
            let d = f16_at(block, 0);
            for (o, &b) in out.q.iter_mut().zip(&block[2..34]) {
                *o = b as i8;
            }
            *out = SubBlock {
                scale: [d, d],
                min: 0.0,
                ..*out
            };
        }
        QuantType::Q4K => {
            let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
            let (sc, m) = q4k_scale_min(&block[4..16], j);
            let qs = &block[16 + 32 * (j / 2)..16 + 32 * (j / 2) + 32];
            let shift = if j.is_multiple_of(2) { 0 } else { 4 };
            for (o, &b) in out.q.iter_mut().zip(qs) {
                *o = ((b >> shift) & 0x0f) as i8;
            }
            let s = d * sc as f32;
            *out = SubBlock {
                scale: [s, s],
                min: dmin * m as f32,
                ..*out
            };
        }
        QuantType::Q6K => {
            let (half, k) = (j / 4, j % 4);
            let ql = &block[64 * half + 32 * (k % 2)..][..32];
            let qh = &block[128 + 32 * half..][..32];
            let scales = &block[192..208];
            let d = f16_at(block, 208);
            let nib = if k >= 2 { 4 } else { 0 };
            for i in 0..32 {
                let lo = (ql[i] >> nib) & 0x0f;
                let hi = (qh[i] >> (2 * k)) & 3;
                out.q[i] = (lo | (hi << 4)) as i8 - 32;
            }
            let sc = |s: usize| d * scales[8 * half + 2 * k + s] as i8 as f32;
            *out = SubBlock {
                scale: [sc(0), sc(1)],
                min: 0.0,
                ..*out
            };
        }
    }
}

/// Dequantize whole rows (the reference for tests).
pub fn dequantize(ty: QuantType, data: &[u8], out: &mut [f32]) {
    let mut sub = SubBlock::default();
    for (block, o) in data
        .chunks_exact(ty.block_bytes())
        .zip(out.chunks_exact_mut(ty.block_elems()))
    {
        for (j, oj) in o.chunks_exact_mut(32).enumerate() {
            decode(ty, block, j, &mut sub);
            for (i, v) in oj.iter_mut().enumerate() {
                *v = sub.scale[i / 16] * sub.q[i] as f32 - sub.min;
            }
        }
    }
}
