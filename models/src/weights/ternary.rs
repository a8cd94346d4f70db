//! BitNet b1.58's ternary weights as transformers' `bitnet` quantization stores them
//! (microsoft/bitnet-b1.58-2B-4T, HF1BitLLM's Llama3-8B-1.58): each product's values are −1, 0
//! or 1 times one scale per tensor. Packed (`offline`), four values a byte along the output
//! rows: byte `[p, i]` holds rows `p`, `p + R/4`, `p + 2R/4`, `p + 3R/4` of column `i` at bits
//! 0, 2, 4, 6, each value plus one (transformers' `pack_weights`). In full precision
//! (`online`), ternarized at load as its `WeightQuant` does: scale = mean |w|,
//! t = round(w / scale) clamped to −1..1.
//!
//! A ternary weight whose rows are whole blocks of 256 is exactly TQ2_0 (2 bits a value, the
//! scale as the block's f16 `d`): served so, the CPU's ternary kernels run it at its own size.
//! Other rows are dequantized. No crate reads this packing; it is a few lines of bit shifts.
use half::f16;
use rayon::prelude::*;

/// Values per TQ2_0 block, and its bytes: 64 of 2-bit values, the f16 scale.
const TQ2_0_VALUES: usize = 256;
const TQ2_0_BYTES: usize = 66;

/// A weight's ternary values, `[out, inner]` row-major, and the scale they are times.
#[derive(Debug, Clone, PartialEq)]
pub struct Ternary {
    pub out: usize,
    pub inner: usize,
    pub values: Vec<i8>,
    pub scale: f32,
}

impl Ternary {
    /// transformers' packing (`packed` `[out / 4, inner]` bytes) times `scale`.
    pub fn unpack(packed: &[u8], shape: &[usize], scale: f32) -> Result<Self, String> {
        let [rows, inner] = *shape else {
            return Err(format!("packed ternary values of shape {shape:?}, not 2-D"));
        };
        if packed.len() != rows * inner {
            return Err(format!(
                "{} bytes of packed ternary values for shape {shape:?}",
                packed.len()
            ));
        }
        let out = 4 * rows;
        let mut values = vec![0i8; out * inner];
        let mut bad = None;
        for (r, row) in values.chunks_mut(inner.max(1)).enumerate() {
            let (shift, p) = (2 * (r / rows), r % rows);
            for (v, &byte) in row.iter_mut().zip(&packed[p * inner..(p + 1) * inner]) {
                let code = (byte >> shift) & 3;
                if code == 3 {
                    bad = Some(r);
                }
                *v = code as i8 - 1;
            }
        }
        if let Some(r) = bad {
            return Err(format!("row {r} holds a packed value of 2 (not ternary)"));
        }
        Ok(Ternary {
            out,
            inner,
            values,
            scale,
        })
    }

    /// `w` (`[out, inner]` row-major) ternarized by its mean magnitude, as BitNet's
    /// `WeightQuant` does at run time (`online` checkouts).
    pub fn ternarize(w: &[f32], out: usize, inner: usize) -> Self {
        let mean = w.iter().map(|v| v.abs() as f64).sum::<f64>() / w.len().max(1) as f64;
        let scale = (mean as f32).max(1e-5);
        let inverse = 1.0 / scale;
        let values = w
            .iter()
            .map(|v| (v * inverse).round_ties_even().clamp(-1.0, 1.0) as i8)
            .collect();
        Ternary {
            out,
            inner,
            values,
            scale,
        }
    }

    /// The values times the scale, row-major.
    pub fn dense(&self) -> Vec<f32> {
        self.values.iter().map(|&t| t as f32 * self.scale).collect()
    }

    /// The TQ2_0 blocks of the weight, row by row; None where rows are not whole blocks.
    pub fn tq2_0_blocks(&self) -> Option<Vec<u8>> {
        if !self.inner.is_multiple_of(TQ2_0_VALUES) || self.out == 0 {
            return None;
        }
        let d = f16::from_f32(self.scale).to_le_bytes();
        let mut bytes = vec![0u8; self.values.len() / TQ2_0_VALUES * TQ2_0_BYTES];
        bytes
            .par_chunks_mut(TQ2_0_BYTES)
            .zip(self.values.par_chunks(TQ2_0_VALUES))
            .for_each(|(block, t)| {
                // Value 128h + 32l + m is bits 2l of byte 32h + m (Q2_K's order).
                for (v, &x) in t.iter().enumerate() {
                    let (h, l, m) = (v / 128, (v / 32) % 4, v % 32);
                    block[32 * h + m] |= (((x + 1) as u8) & 3) << (2 * l);
                }
                block[64..].copy_from_slice(&d);
            });
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_kernels::quant::{dequantize, QuantType};

    /// transformers' `pack_weights` of an 8 × 2 weight (rows 0-1 at bits 0, 2-3 at bits 2, ...),
    /// read back to its values.
    #[test]
    fn unpacks_four_rows_a_byte() {
        let t: [[i8; 2]; 8] = [
            [1, 0],
            [-1, 1],
            [0, 0],
            [1, -1],
            [-1, -1],
            [0, 1],
            [1, 1],
            [0, -1],
        ];
        let mut packed = [0u8; 4];
        for (r, row) in t.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                packed[(r % 2) * 2 + c] |= ((v + 1) as u8) << (2 * (r / 2));
            }
        }
        let w = Ternary::unpack(&packed, &[2, 2], 0.5).unwrap();
        assert_eq!((w.out, w.inner), (8, 2));
        assert_eq!(w.values, t.concat());
        assert_eq!(&w.dense()[..4], &[0.5, 0.0, -0.5, 0.5]);
        let err = Ternary::unpack(&[3, 0, 0, 0], &[2, 2], 1.0).unwrap_err();
        assert!(err.contains("not ternary"), "{err}");
        assert!(Ternary::unpack(&packed, &[2, 3], 1.0).is_err());
    }

    /// Ternarized by the mean magnitude, ties to even as torch rounds.
    #[test]
    fn ternarizes_by_the_mean_magnitude() {
        let w = [0.5, -2.0, 0.25, 1.25];
        let t = Ternary::ternarize(&w, 1, 4);
        assert_eq!(t.scale, 1.0);
        assert_eq!(t.values, vec![0, -1, 0, 1]);
        let zeros = Ternary::ternarize(&[0.0; 4], 2, 2);
        assert_eq!((zeros.scale, zeros.values), (1e-5, vec![0; 4]));
    }

    /// TQ2_0 blocks read back by the kernels' own dequantization give the values times the
    /// scale; rows of other widths have none.
    #[test]
    fn whole_rows_are_tq2_0_blocks() {
        let values: Vec<i8> = (0..2 * 512)
            .map(|i| ((i * 7 + i / 5) % 3) as i8 - 1)
            .collect();
        let w = Ternary {
            out: 2,
            inner: 512,
            values,
            scale: 0.375,
        };
        let blocks = w.tq2_0_blocks().unwrap();
        assert_eq!(blocks.len(), 4 * TQ2_0_BYTES);
        let mut got = vec![0f32; 1024];
        dequantize(QuantType::Tq2_0, &blocks, &mut got);
        assert_eq!(got, w.dense());
        let narrow = Ternary {
            inner: 64,
            out: 1,
            values: vec![0; 64],
            scale: 1.0,
        };
        assert!(narrow.tq2_0_blocks().is_none());
    }
}
