//! Rotary positions for an encoder (NomicBERT, ModernBERT, GTE): each query and key of an input turned by its
//! position from 0, the two halves of a head rotated together (GPT-NeoX's layout, the one
//! transformers' `rotate_half` computes). The angles are tabled once for the whole context.
use crate::error::Result;
use candle_core::{Device, Tensor};

pub(super) struct Rotary {
    /// `cos` and `sin` of every position's angles: `[context, head_dim / 2]`.
    cos: Tensor,
    sin: Tensor,
    /// The same angles in host memory on the CPU, for `encoder_attention`'s turn of the q|k|v
    /// rows; None on a GPU.
    host: Option<(Vec<f32>, Vec<f32>)>,
}

impl Rotary {
    /// The table for `context` positions of heads `head_dim` wide at base `theta`, every
    /// frequency divided by `divisor` (GTE's NTK scaling; 1 for none).
    pub(super) fn new(
        theta: f32,
        divisor: f32,
        head_dim: usize,
        context: usize,
        device: &Device,
    ) -> Result<Self> {
        let half = head_dim / 2;
        // As transformers computes them: the inverse frequencies in f32 (then divided, as its
        // `linear` rope divides them), each angle the f32 product of a position and one.
        let inv_freq: Vec<f32> = (0..half)
            .map(|j| 1.0 / theta.powf((2 * j) as f32 / head_dim as f32) / divisor)
            .collect();
        let mut cos = Vec::with_capacity(context * half);
        let mut sin = Vec::with_capacity(context * half);
        for p in 0..context {
            for f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let host = device.is_cpu().then(|| (cos.clone(), sin.clone()));
        Ok(Rotary {
            cos: Tensor::from_vec(cos, (context, half), device)?,
            sin: Tensor::from_vec(sin, (context, half), device)?,
            host,
        })
    }

    /// The `cos` and `sin` tables on the host (`[context, head_dim / 2]` each), where the
    /// angles live on the CPU.
    pub(super) fn host(&self) -> Option<(&[f32], &[f32])> {
        self.host.as_ref().map(|(c, s)| (&c[..], &s[..]))
    }

    /// `x` (`[heads, len, head_dim]`, one input's rows from position 0) turned by position.
    pub(super) fn turn(&self, x: &Tensor) -> Result<Tensor> {
        let len = x.dim(1)?;
        let cos = self.cos.narrow(0, 0, len)?;
        let sin = self.sin.narrow(0, 0, len)?;
        let turned = candle_nn::rotary_emb::rope(&x.unsqueeze(0)?.contiguous()?, &cos, &sin)?;
        Ok(turned.squeeze(0)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_halves_of_a_head_turn_together_by_position() {
        let (heads, len, dim) = (2, 3, 4);
        let values: Vec<f32> = (0..heads * len * dim)
            .map(|i| i as f32 / 7.0 - 1.0)
            .collect();
        let x = Tensor::from_vec(values.clone(), (heads, len, dim), &Device::Cpu).unwrap();
        let rotary = Rotary::new(100.0, 1.0, dim, 8, &Device::Cpu).unwrap();
        let got: Vec<f32> = rotary
            .turn(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for h in 0..heads {
            for p in 0..len {
                let row = &values[(h * len + p) * dim..][..dim];
                for j in 0..dim / 2 {
                    let angle = p as f64 / 100f64.powf(2.0 * j as f64 / dim as f64);
                    let (a, b) = (row[j] as f64, row[j + dim / 2] as f64);
                    let want = [
                        a * angle.cos() - b * angle.sin(),
                        b * angle.cos() + a * angle.sin(),
                    ];
                    let at = (h * len + p) * dim;
                    let pair = [got[at + j] as f64, got[at + j + dim / 2] as f64];
                    for (g, w) in pair.iter().zip(want) {
                        assert!((g - w).abs() < 1e-5, "head {h} position {p}: {g} vs {w}");
                    }
                }
            }
        }
    }
}
