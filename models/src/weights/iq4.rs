//! IQ4_NL and IQ4_XS blocks (GGUF types 20 and 23: llama.cpp's 4-bit indices into a fixed
//! non-linear codebook, `candor_kernels::quant::IQ4NL_VALUES`), which candle has no type for.
//! The CPU kernels read them as they are; CUDA and plugins get Q8_0 blocks (`to_q8_0`).
use super::BlockType;
use crate::error::{ModelError, Result};
use candor_kernels::quant::{iq4xs_scales, IQ4NL_VALUES};
use half::f16;

/// Bytes of a Q8_0 block: an f16 scale and 32 signed bytes.
const Q8_0_BYTES: usize = 34;

/// `blocks` of IQ4_NL or IQ4_XS as Q8_0 blocks, one per 32 values: the codebook values are
/// signed bytes, so an IQ4_NL block is its Q8_0 block exactly (the same scale); an IQ4_XS
/// 32's scale d·(s − 32) is rounded to f16 (relative error at most 2⁻¹¹, far under the 4-bit
/// codebook's own).
pub fn to_q8_0(ty: BlockType, blocks: &[u8]) -> Result<Vec<u8>> {
    let (elems, bytes) = ty.block();
    if !blocks.len().is_multiple_of(bytes) || !matches!(ty, BlockType::Iq4Nl | BlockType::Iq4Xs) {
        return Err(ModelError::Config(format!(
            "{} bytes are no whole {ty:?} blocks",
            blocks.len()
        )));
    }
    let mut out = Vec::with_capacity(blocks.len() / bytes * elems / 32 * Q8_0_BYTES);
    for block in blocks.chunks_exact(bytes) {
        let d = f16::from_le_bytes([block[0], block[1]]);
        // Each 32's scale (IQ4_NL: its one block's d, in the first of the eight).
        let (qs, scales) = match ty {
            BlockType::Iq4Nl => (&block[2..18], [d; 8]),
            _ => {
                let d = d.to_f32();
                let scales = iq4xs_scales(block).map(|s| f16::from_f32(d * (s as i32 - 32) as f32));
                (&block[8..136], scales)
            }
        };
        for (chunk, scale) in qs.chunks_exact(16).zip(scales) {
            out.extend_from_slice(&scale.to_le_bytes());
            let value = |nibble: u8| IQ4NL_VALUES[nibble as usize] as u8;
            out.extend(chunk.iter().map(|&b| value(b & 0x0f)));
            out.extend(chunk.iter().map(|&b| value(b >> 4)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_kernels::quant::{dequantize, QuantType};

    fn blocks(ty: QuantType, count: usize) -> Vec<u8> {
        candor_kernels::quant::filler_blocks(ty, count, 0x51f1_5eed, 0.0123)
    }

    /// IQ4_NL blocks become the Q8_0 blocks of exactly their values; IQ4_XS blocks within the
    /// f16 rounding of each 32's scale.
    #[test]
    fn iq4_blocks_as_q8_0_hold_their_values() {
        for (ty, block, tol) in [
            (QuantType::Iq4Nl, BlockType::Iq4Nl, 0.0),
            (QuantType::Iq4Xs, BlockType::Iq4Xs, 1.0 / 2048.0),
        ] {
            let bytes = blocks(ty, 3);
            let n = 3 * ty.block_elems();
            let (mut want, mut got) = (vec![0f32; n], vec![0f32; n]);
            dequantize(ty, &bytes, &mut want);
            let q8 = to_q8_0(block, &bytes).unwrap();
            assert_eq!(q8.len(), n / 32 * Q8_0_BYTES);
            dequantize(QuantType::Q8_0, &q8, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= tol * w.abs(),
                    "{ty:?} value {i}: {g} vs {w}"
                );
            }
            assert!(to_q8_0(block, &bytes[1..]).is_err());
        }
    }
}
