//! Loading a model's tensors by canonical name, checked against the shapes its spec implies.
use crate::backend::Backend;
use crate::error::{ModelError, Result};
use crate::weights::names::layer;
use crate::weights::{require, HostWeight, WeightSource};

/// Loads tensors by canonical name and checks them against the shapes the spec implies.
pub(crate) struct Loader<'a, B: Backend> {
    pub backend: &'a B,
    pub src: &'a dyn WeightSource,
    pub norm_offset: f32,
    /// The model's norms have no weights (`ModelSpec::weightless_norms`): `norm` gives ones.
    pub unit_norms: bool,
}

impl<B: Backend> Loader<'_, B> {
    pub fn checked(&self, name: &str, expected: &[usize]) -> Result<HostWeight> {
        let w = require(self.src, name)?;
        let actual = w.shape();
        if actual != expected {
            return Err(ModelError::ShapeMismatch {
                tensor: name.into(),
                expected: expected.to_vec(),
                actual,
            });
        }
        Ok(w)
    }

    pub fn weight(&self, name: &str, expected: &[usize]) -> Result<B::Weight> {
        self.backend.load_weight(self.checked(name, expected)?)
    }

    pub fn opt_weight(&self, name: &str, expected: &[usize]) -> Result<Option<B::Weight>> {
        if !self.src.contains(name) {
            return Ok(None);
        }
        self.weight(name, expected).map(Some)
    }

    /// A small vector (per-head or per-channel numbers) read to the host as f32: stored as
    /// `[len]`, or in one of `shapes` of as many values (llama.cpp's `[heads, 1]`, a grouped
    /// norm's `[groups, len / groups]`).
    pub fn host_vector(&self, name: &str, len: usize, shapes: &[&[usize]]) -> Result<Vec<f32>> {
        let w = require(self.src, name)?;
        let actual = w.shape();
        if actual != [len] && !shapes.contains(&actual.as_slice()) {
            return Err(ModelError::ShapeMismatch {
                tensor: name.into(),
                expected: vec![len],
                actual,
            });
        }
        Ok(w.to_f32()?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// A recurrent layer's decay rates per head, A = −exp(A_log): the checkouts' `A_log`
    /// (`ssm_a_log`), or llama.cpp's `ssm_a` holding A itself (named without a `.weight`), as
    /// `[heads]` or one of `shapes`.
    pub fn decay_rates(&self, l: usize, heads: usize, shapes: &[&[usize]]) -> Result<Vec<f32>> {
        let stored = layer(l, "ssm_a");
        if self.src.contains(&stored) {
            return self.host_vector(&stored, heads, shapes);
        }
        let log = self.host_vector(&layer(l, "ssm_a_log.weight"), heads, shapes)?;
        Ok(log.into_iter().map(|x| -x.exp()).collect())
    }

    /// Layer `l`'s gate and up stored as one `[2f, h]` weight (gate rows first), if they are:
    /// `ffn_gate_up` (HF Phi-3's `gate_up_proj`), or a double-height `ffn_up` without a
    /// `ffn_gate` beside it (llama.cpp's phi3 GGUFs).
    pub fn joined_gate_up(&self, l: usize, f: usize, h: usize) -> Result<Option<HostWeight>> {
        let joined = layer(l, "ffn_gate_up.weight");
        if self.src.contains(&joined) {
            return self.checked(&joined, &[2 * f, h]).map(Some);
        }
        let up = layer(l, "ffn_up.weight");
        if self.src.contains(&layer(l, "ffn_gate.weight")) || !self.src.contains(&up) {
            return Ok(None);
        }
        self.checked(&up, &[2 * f, h]).map(Some)
    }

    /// A norm weight, with the family's offset applied (HF Gemma stores `w` for `1 + w`).
    pub fn norm(&self, name: &str, dim: usize) -> Result<B::Weight> {
        self.backend.load_weight(self.norm_host(name, dim)?)
    }

    /// `norm` before it goes to the device (for a rewrite of its layout first).
    pub fn norm_host(&self, name: &str, dim: usize) -> Result<HostWeight> {
        if self.unit_norms {
            let tensor =
                candle_core::Tensor::ones(dim, candle_core::DType::F32, &candle_core::Device::Cpu)?;
            return Ok(HostWeight::Dense {
                tensor,
                source: crate::backend::WeightDtype::F32,
            });
        }
        let w = self.checked(name, &[dim])?;
        if self.norm_offset == 0.0 {
            return Ok(w);
        }
        let off = self.norm_offset as f64;
        w.map_dense(|t| t.affine(1.0, off))
    }
}
