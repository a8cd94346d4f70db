//! The IQ block types candle has no type for: IQ4_NL and IQ4_XS (GGUF types 20 and 23:
//! 4-bit indices into a fixed non-linear codebook, `candor_kernels::quant::IQ4NL_VALUES`) and
//! the grid types: the lattice codebooks IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S
//! (types 16-19, 21, 22, 29) and the ternary TQ1_0, TQ2_0 (34, 35; `candor_kernels::quant::
//! iq_grid`). The CPU kernels read them as they are; CUDA and plugins get Q8_0 blocks
//! (`to_q8_0`).
use super::BlockType;
use crate::error::{ModelError, Result};
use candor_kernels::quant::{decode_block, IntBlock};
use half::f16;

/// Bytes of a Q8_0 block: an f16 scale and 32 signed bytes.
const Q8_0_BYTES: usize = 34;

/// `blocks` of an IQ type as Q8_0 blocks, one per 32 values. Every IQ type's values are a
/// scale times a signed byte, the scale shared by 32 values (IQ4_NL, IQ4_XS, IQ2_XXS,
/// IQ3_XXS, IQ3_S, IQ1_S, TQ1_0, TQ2_0) or by 16 (IQ2_XS, IQ2_S, IQ1_M). Where the 32 share it the bytes
/// stay and the scale is rounded to f16 (IQ4_NL's is one already: exact; else a relative
/// error of at most 2⁻¹¹); where the two 16s differ the 32 values are quantized afresh to 8
/// bits (an error of at most half a step of max|value|/127, far under the 2-3-bit codebooks'
/// own).
pub fn to_q8_0(ty: BlockType, blocks: &[u8]) -> Result<Vec<u8>> {
    let (elems, bytes) = ty.block();
    let (Some(kernel_type), true) = (ty.iq(), blocks.len().is_multiple_of(bytes)) else {
        return Err(ModelError::Config(format!(
            "{} bytes are no whole {ty:?} blocks",
            blocks.len()
        )));
    };
    let mut out = Vec::with_capacity(blocks.len() / bytes * elems / 32 * Q8_0_BYTES);
    let mut decoded = IntBlock::default();
    for block in blocks.chunks_exact(bytes) {
        decode_block(kernel_type, block, &mut decoded);
        for j in 0..elems / 32 {
            let q = &decoded.q[32 * j..32 * j + 32];
            let (a, b) = (decoded.scale[2 * j], decoded.scale[2 * j + 1]);
            if a == b {
                out.extend_from_slice(&f16::from_f32(a).to_le_bytes());
                // |q| ≤ 127 in every IQ type (IQ4's codebook reaches -127).
                out.extend(q.iter().map(|&q| q as i8 as u8));
                continue;
            }
            let values: [f32; 32] =
                std::array::from_fn(|i| q[i] as f32 * if i < 16 { a } else { b });
            let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = f16::from_f32(max / 127.0);
            let inv = if d.to_f32() == 0.0 {
                0.0
            } else {
                1.0 / d.to_f32()
            };
            out.extend_from_slice(&d.to_le_bytes());
            out.extend(
                values
                    .iter()
                    .map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8 as u8),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_kernels::quant::{dequantize, iq_grid::GRID_TYPES, QuantType};

    fn blocks(ty: QuantType, count: usize) -> Vec<u8> {
        candor_kernels::quant::filler_blocks(ty, count, 0x51f1_5eed, 0.0123)
    }

    /// IQ4_NL blocks become the Q8_0 blocks of exactly their values; the types with a scale
    /// per 32 hold theirs within the f16 rounding of the scale; those with a scale per 16
    /// within half a Q8_0 step of the 32's largest value.
    #[test]
    fn iq_blocks_as_q8_0_hold_their_values() {
        let grid = GRID_TYPES.map(|t| (t, BlockType::Grid(t)));
        let iq4 = [
            (QuantType::Iq4Nl, BlockType::Iq4Nl),
            (QuantType::Iq4Xs, BlockType::Iq4Xs),
        ];
        for (ty, block) in iq4.into_iter().chain(grid) {
            let bytes = blocks(ty, 3);
            let n = 3 * ty.block_elems();
            let (mut want, mut got) = (vec![0f32; n], vec![0f32; n]);
            dequantize(ty, &bytes, &mut want);
            let q8 = to_q8_0(block, &bytes).unwrap();
            assert_eq!(q8.len(), n / 32 * Q8_0_BYTES);
            dequantize(QuantType::Q8_0, &q8, &mut got);
            for (c, (g32, w32)) in got.chunks(32).zip(want.chunks(32)).enumerate() {
                let max = w32.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (i, (g, w)) in g32.iter().zip(w32).enumerate() {
                    let tol = match (ty, ty.scales_per_16()) {
                        (QuantType::Iq4Nl, _) => 0.0,
                        (_, false) => w.abs() / 2048.0,
                        (_, true) => max / 254.0 * 1.01,
                    };
                    assert!(
                        (g - w).abs() <= tol,
                        "{ty:?} value {}: {g} vs {w}",
                        32 * c + i
                    );
                }
            }
            assert!(to_q8_0(block, &bytes[1..]).is_err());
        }
    }
}
