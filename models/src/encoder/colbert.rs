//! BGE-M3's multi-vector (ColBERT) head: the layer in its checkout's `colbert_linear.pt`
//! projects the final state of every token but the first (`[CLS]`, whose state is the dense
//! embedding), one vector per token for late-interaction scoring, as FlagEmbedding's
//! `BGEM3FlagModel` answers `colbert_vecs` (normalised by the caller). Read, like the lexical
//! layer, by candle's restricted unpickler, on the host: the vectors are made from states the
//! server already holds.
use super::lexical::read_pt_layer;
use crate::error::{ModelError, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

/// The file BAAI's checkout keeps the ColBERT layer in.
pub const COLBERT_FILE: &str = "colbert_linear.pt";

pub struct ColbertHead {
    /// `[hidden, out]`, on the host.
    weight_t: Tensor,
    bias: Tensor,
    hidden: usize,
}

impl ColbertHead {
    /// The layer in `dir/colbert_linear.pt` over states `hidden` wide; None where the checkout
    /// has no such file.
    pub fn load(dir: &Path, hidden: usize) -> Result<Option<ColbertHead>> {
        let path = dir.join(COLBERT_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let (weight, bias) = read_pt_layer(&path)?;
        let (out, inputs) = weight.dims2()?;
        if inputs != hidden || bias.dims1()? != out {
            return Err(ModelError::Config(format!(
                "{}: a {out}×{inputs} layer with {} biases over states {hidden} wide",
                path.display(),
                bias.dims1()?
            )));
        }
        Ok(Some(ColbertHead {
            weight_t: weight.t()?.contiguous()?,
            bias,
            hidden,
        }))
    }

    /// The vectors of one input's tokens after the first, from every token's final state
    /// (`rows`, `hidden` values each, one after another), not normalised.
    pub fn vectors(&self, rows: &[f32]) -> Result<Vec<Vec<f32>>> {
        let tokens = rows.len() / self.hidden.max(1);
        if tokens < 2 {
            return Ok(Vec::new());
        }
        let states = Tensor::from_slice(
            &rows[self.hidden..tokens * self.hidden],
            (tokens - 1, self.hidden),
            &Device::Cpu,
        )?;
        let projected = states.matmul(&self.weight_t)?.broadcast_add(&self.bias)?;
        Ok(projected.to_vec2::<f32>()?)
    }

    /// The width of each vector.
    pub fn width(&self) -> usize {
        self.bias.dims1().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_but_the_first_is_projected() {
        let head = ColbertHead {
            // out = [x0 + x1, 2·x1] + [1, 0]
            weight_t: Tensor::from_vec(vec![1.0f32, 0.0, 1.0, 2.0], (2, 2), &Device::Cpu).unwrap(),
            bias: Tensor::from_vec(vec![1.0f32, 0.0], 2, &Device::Cpu).unwrap(),
            hidden: 2,
        };
        let rows = [9.0, 9.0, 1.0, 2.0, 3.0, -1.0];
        assert_eq!(
            head.vectors(&rows).unwrap(),
            [vec![4.0, 4.0], vec![3.0, -2.0]]
        );
        assert!(head.vectors(&rows[..2]).unwrap().is_empty());
        assert_eq!(head.width(), 2);
    }
}
