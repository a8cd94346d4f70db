//! GGML block layouts (as in GGUF files) and their scalar decoding.
use half::f16;

/// Weight block types with a fast path here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    /// 32 elements: f16 scale, 32 high bits, 16 bytes of low nibbles; value = d·(q − 16).
    Q5_0,
    /// 32 elements: f16 scale, 32 signed bytes; value = d·q.
    Q8_0,
}

impl QuantType {
    pub fn block_elems(self) -> usize {
        32
    }
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::Q5_0 => 22,
            QuantType::Q8_0 => 34,
        }
    }
}

pub fn scale(block: &[u8]) -> f32 {
    f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32()
}

/// The 32 signed quants of one block (values before scaling).
pub fn decode(ty: QuantType, block: &[u8], out: &mut [i8; 32]) {
    match ty {
        QuantType::Q5_0 => {
            let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
            let qs = &block[6..22];
            for j in 0..16 {
                let lo = (qs[j] & 0x0f) | ((((qh >> j) & 1) as u8) << 4);
                let hi = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                out[j] = lo as i8 - 16;
                out[j + 16] = hi as i8 - 16;
            }
        }
        QuantType::Q8_0 => {
            for (o, &b) in out.iter_mut().zip(&block[2..34]) {
                *o = b as i8;
            }
        }
    }
}

/// Dequantize whole rows (for tests and reference paths).
pub fn dequantize(ty: QuantType, data: &[u8], out: &mut [f32]) {
    let mut q = [0i8; 32];
    for (block, o) in data.chunks_exact(ty.block_bytes()).zip(out.chunks_exact_mut(32)) {
        decode(ty, block, &mut q);
        let d = scale(block);
        for (v, &qi) in o.iter_mut().zip(&q) {
            *v = d * qi as f32;
        }
    }
}
