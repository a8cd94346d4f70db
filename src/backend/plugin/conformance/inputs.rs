//! Deterministic inputs for conformance cases: the same seed gives the same values on every
//! backend, so the CPU reference and the plugin see identical data.
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candor_models::backend::WeightDtype;
use candor_models::error::Result;
use candor_models::weights::HostWeight;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub struct Inputs(ChaCha8Rng);

impl Inputs {
    pub fn new(seed: u64) -> Self {
        Inputs(ChaCha8Rng::seed_from_u64(seed))
    }

    /// `n` values uniform in `[-scale, scale)`.
    pub fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| self.0.random_range(-1.0f32..1.0) * scale)
            .collect()
    }

    /// `n` values around 1 (norm weights).
    pub fn around_one(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| 1.0 + self.0.random_range(-0.2f32..0.2))
            .collect()
    }
}

fn ggml(d: WeightDtype) -> GgmlDType {
    match d {
        WeightDtype::F32 => GgmlDType::F32,
        WeightDtype::F16 => GgmlDType::F16,
        WeightDtype::BF16 => GgmlDType::BF16,
        WeightDtype::Q4_0 => GgmlDType::Q4_0,
        WeightDtype::Q8_0 => GgmlDType::Q8_0,
        WeightDtype::Q5_0 => GgmlDType::Q5_0,
        WeightDtype::Q4K => GgmlDType::Q4K,
        WeightDtype::Q5K => GgmlDType::Q5K,
        WeightDtype::Q6K => GgmlDType::Q6K,
        WeightDtype::Q4_1 => GgmlDType::Q4_1,
        WeightDtype::Q5_1 => GgmlDType::Q5_1,
        WeightDtype::Q2K => GgmlDType::Q2K,
        WeightDtype::Q3K => GgmlDType::Q3K,
    }
}

/// A host weight of `shape` stored as `dtype` (quantized by candle, as a GGUF writer would).
pub fn host_weight(values: &[f32], shape: &[usize], dtype: WeightDtype) -> Result<HostWeight> {
    let t = Tensor::from_slice(values, shape, &Device::Cpu)?;
    Ok(match dtype {
        WeightDtype::F32 => HostWeight::Dense {
            tensor: t,
            source: WeightDtype::F32,
        },
        d => HostWeight::Quant(QTensor::quantize(&t, ggml(d))?),
    })
}

/// Values per block of a weight dtype (a row must hold whole blocks).
pub fn block_elems(d: WeightDtype) -> usize {
    match d {
        WeightDtype::F32 | WeightDtype::F16 | WeightDtype::BF16 => 1,
        WeightDtype::Q4_0
        | WeightDtype::Q8_0
        | WeightDtype::Q5_0
        | WeightDtype::Q4_1
        | WeightDtype::Q5_1 => 32,
        WeightDtype::Q4K
        | WeightDtype::Q5K
        | WeightDtype::Q6K
        | WeightDtype::Q2K
        | WeightDtype::Q3K => 256,
    }
}

/// Normalised mean squared error of `got` against `want` (ggml test-backend-ops' measure):
/// `sum((got - want)^2) / sum(want^2)`; infinite on a length mismatch or a non-finite value.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let (mut err, mut norm) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        err += (g as f64 - w as f64).powi(2);
        norm += (w as f64).powi(2);
    }
    if norm == 0.0 {
        err
    } else {
        err / norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nmse_measures_relative_error() {
        assert_eq!(nmse(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        let e = nmse(&[1.1, 2.2], &[1.0, 2.0]);
        assert!((e - 0.01).abs() < 1e-6, "{e}");
        assert!(nmse(&[f32::NAN], &[1.0]).is_infinite());
        assert!(nmse(&[1.0], &[1.0, 2.0]).is_infinite());
    }

    #[test]
    fn inputs_repeat_for_a_seed() {
        assert_eq!(Inputs::new(7).values(5, 1.0), Inputs::new(7).values(5, 1.0));
        assert_ne!(Inputs::new(7).values(5, 1.0), Inputs::new(8).values(5, 1.0));
    }
}
