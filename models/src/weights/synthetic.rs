//! Synthetic weights: a description (shape, dtype, seed, range) that each backend materializes
//! where the weight will live, so `--load-format dummy` builds an 8B model on a GPU without a
//! 16 GB host copy or upload.
//!
//! Value i is a pure function of (seed, i) (SplitMix64 finalizer): a counter-based generator, so
//! the CPU and the CUDA kernel (kernels/cuda/fill.cu, same formula, same f32 rounding steps)
//! produce identical weights and a dummy model can be compared across devices. No RNG crate is
//! used because none guarantees the same stream on the device.
use super::{mxfp4, BlockType, MappedBlocks};
use crate::backend::WeightDtype;
use crate::error::{ModelError, Result};
use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticWeight {
    pub shape: Vec<usize>,
    /// F32, F16 or BF16: values are rounded to it, wherever they are made.
    pub dtype: WeightDtype,
    pub seed: u64,
    /// Values are uniform in `[lo, hi)`.
    pub lo: f32,
    pub hi: f32,
}

/// The `i`-th 64 random bits of the stream `seed`.
fn bits_at(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `i`-th value of the stream `seed`, uniform in `[lo, hi)`.
pub fn uniform_at(seed: u64, i: u64, lo: f32, hi: f32) -> f32 {
    // 24 random bits: exactly representable in f32.
    let u = (bits_at(seed, i) >> 40) as f32 * (1.0 / 16_777_216.0);
    lo + (hi - lo) * u
}

/// Random MXFP4 blocks (ggml's layout) of `shape`, rows whole blocks: every block's scale puts
/// its largest code (6) at the power of two nearest `max_abs`, its codes uniform over the 16;
/// block b's bytes a pure function of (seed, b), as float values are of (seed, i). For dummy
/// models stored as gpt-oss is published (`dummy::DummyWeights::Mxfp4Experts`): made straight
/// into the weight's memory, 17 bytes a block.
pub fn mxfp4_blocks(seed: u64, shape: Vec<usize>, max_abs: f32) -> Result<MappedBlocks> {
    let Some(len) = mxfp4::tensor_bytes(&shape) else {
        return Err(ModelError::Config(format!(
            "MXFP4 weights of shape {shape:?}: rows are not whole blocks"
        )));
    };
    // 6 · 2^(e - 127) ≈ max_abs.
    let e = ((max_abs / 6.0).max(1e-30).log2().round() as i32 + 127).clamp(1, 254) as u8;
    MappedBlocks::owned_with(len, BlockType::Mxfp4, shape, |out| {
        for (b, block) in out.chunks_exact_mut(mxfp4::GGML_BLOCK_BYTES).enumerate() {
            block[0] = e;
            let codes = [bits_at(seed, 2 * b as u64), bits_at(seed, 2 * b as u64 + 1)];
            block[1..9].copy_from_slice(&codes[0].to_le_bytes());
            block[9..17].copy_from_slice(&codes[1].to_le_bytes());
        }
    })
}

/// Random blocks of a GGML type (`shape`'s rows whole blocks), for dummy models quantized as
/// llama.cpp quantizes: quants random over their range, every scale set so that the largest
/// values are about `max_abs` (Q4_0, Q8_0, Q4_K, Q6_K; Q4_K's minimums and Q6_K's sub-block
/// scales random too). Block b's bytes are a pure function of (seed, b).
pub fn ggml_blocks(
    seed: u64,
    shape: Vec<usize>,
    dtype: GgmlDType,
    max_abs: f32,
) -> Result<MappedBlocks> {
    let scales = block_scales(dtype, max_abs)?;
    let block_bytes = dtype.type_size();
    let dtype = BlockType::Ggml(dtype);
    let Some(len) = dtype.bytes_of(shape.iter().product()) else {
        return Err(ModelError::Config(format!(
            "{dtype:?} weights of shape {shape:?}: rows are not whole blocks"
        )));
    };
    MappedBlocks::owned_with(len, dtype, shape, |out| {
        random_blocks(seed, out, block_bytes, |block| {
            for &(at, value) in &scales {
                block[at..at + 2].copy_from_slice(&half::f16::from_f32(value).to_le_bytes());
            }
        })
    })
}

/// Fill `out` with blocks of `block_bytes` random bytes (block b's a pure function of (seed,
/// b)), each then given its scales by `set_scales`.
fn random_blocks(seed: u64, out: &mut [u8], block_bytes: usize, set_scales: impl Fn(&mut [u8])) {
    for (b, block) in out.chunks_exact_mut(block_bytes).enumerate() {
        for (i, chunk) in block.chunks_mut(8).enumerate() {
            let bits = bits_at(seed, (b * block_bytes.div_ceil(8) + i) as u64).to_le_bytes();
            chunk.copy_from_slice(&bits[..chunk.len()]);
        }
        set_scales(block);
    }
}

/// Random blocks of a grid type (`candor_kernels::quant::iq_grid`) of `shape`, rows whole
/// 256-element blocks: codebook indices (trits), signs and sub-block scales random, the f16
/// scale set so that the largest value a block could hold is `max_abs`. Block b's bytes are a
/// pure function of (seed, b).
pub fn grid_blocks(
    seed: u64,
    shape: Vec<usize>,
    ty: candor_kernels::quant::QuantType,
    max_abs: f32,
) -> Result<MappedBlocks> {
    use candor_kernels::quant::QuantType;
    // The largest |value| per unit of the f16 scale d: D/d times the largest codebook value
    // (with IQ1's delta) times the largest sub-block scale 2ls + 1; the ternary types' largest
    // trit (TQ2_0's two bits hold 2 as well).
    let largest = match ty {
        QuantType::Iq2Xxs | QuantType::Iq2Xs | QuantType::Iq2S => 43.0 * 31.0 / 8.0,
        QuantType::Iq3Xxs => 62.0 * 31.0 / 4.0,
        QuantType::Iq3S => 15.0 * 31.0,
        QuantType::Iq1S | QuantType::Iq1M => 9.0 * 15.0 / 8.0,
        QuantType::Tq1_0 => 1.0,
        QuantType::Tq2_0 => 2.0,
        other => return Err(ModelError::Config(format!("{other:?} is not a grid type"))),
    };
    let dtype = BlockType::Grid(ty);
    let Some(len) = dtype.tensor_bytes(&shape) else {
        return Err(ModelError::Config(format!(
            "{dtype:?} weights of shape {shape:?}: rows are not whole blocks"
        )));
    };
    MappedBlocks::owned_with(len, dtype, shape, |out| {
        random_blocks(seed, out, ty.block_bytes(), |block| {
            candor_kernels::quant::set_scales(ty, block, max_abs / largest)
        })
    })
}

/// The f16 scale fields of a dummy block of `dtype` (byte offset, value) that put its largest
/// values at about `max_abs`; an error for a type dummy blocks do not come in.
pub(crate) fn block_scales(dtype: GgmlDType, max_abs: f32) -> Result<Vec<(usize, f32)>> {
    Ok(match dtype {
        // d·(q − 8), q in 0..16.
        GgmlDType::Q4_0 => vec![(0, max_abs / 8.0)],
        // d·q, q in −128..128.
        GgmlDType::Q8_0 => vec![(0, max_abs / 127.0)],
        // d·sc·q − dmin·m, sc and m 6-bit, q 4-bit: values in about [−max/2, max].
        GgmlDType::Q4K => vec![(0, max_abs / 945.0), (2, max_abs / 126.0)],
        // d·sc·(q − 32), sc a signed byte, q 6-bit.
        GgmlDType::Q6K => vec![(208, max_abs / 4096.0)],
        // d·sc·q − dmin·m, sc and m 4-bit, q 2-bit: values in about [−max/2, max].
        GgmlDType::Q2K => vec![(80, max_abs / 45.0), (82, max_abs / 30.0)],
        // d·(s − 32)·(q − 4), s 6-bit, q 3-bit.
        GgmlDType::Q3K => vec![(108, max_abs / 128.0)],
        other => {
            return Err(ModelError::Config(format!(
                "dummy weights come in Q4_0, Q8_0, Q2_K, Q3_K, Q4_K or Q6_K blocks, not {}",
                ggml_name(other)
            )))
        }
    })
}

/// A GGML type as llama.cpp names it (`Q4_K`).
pub(crate) fn ggml_name(d: GgmlDType) -> String {
    let debug = format!("{d:?}").to_uppercase();
    match debug.strip_suffix('K') {
        Some(base) if !base.ends_with('_') => format!("{base}_K"),
        _ => debug,
    }
}

/// A stable per-tensor seed: FNV-1a of the name, mixed with the model seed.
pub fn tensor_seed(model_seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ model_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl SyntheticWeight {
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Value `i` as stored: rounded to the weight's dtype.
    pub fn value(&self, i: u64) -> f32 {
        let v = uniform_at(self.seed, i, self.lo, self.hi);
        match self.dtype {
            WeightDtype::BF16 => half::bf16::from_f32(v).to_f32(),
            WeightDtype::F16 => half::f16::from_f32(v).to_f32(),
            _ => v,
        }
    }

    /// The weight as a dense f32 host tensor.
    pub fn to_f32_tensor(&self) -> Result<Tensor> {
        if !matches!(
            self.dtype,
            WeightDtype::F32 | WeightDtype::F16 | WeightDtype::BF16
        ) {
            return Err(ModelError::Config(format!(
                "synthetic weights are float (f32, f16, bf16), not {}",
                self.dtype
            )));
        }
        let data: Vec<f32> = (0..self.elem_count() as u64)
            .map(|i| self.value(i))
            .collect();
        Ok(Tensor::from_vec(data, self.shape.as_slice(), &Device::Cpu)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random blocks of every dummy type decode to values within about the range asked for,
    /// spread over it, the same for the same seed.
    #[test]
    fn ggml_blocks_decode_to_values_of_the_range() {
        let max_abs = 0.5;
        for dtype in [
            GgmlDType::Q4_0,
            GgmlDType::Q8_0,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            let blocks = ggml_blocks(3, vec![4, 512], dtype, max_abs).unwrap();
            assert_eq!(blocks.dtype, BlockType::Ggml(dtype));
            let again = ggml_blocks(3, vec![4, 512], dtype, max_abs).unwrap();
            assert_eq!(blocks.bytes(), again.bytes(), "{dtype:?}: same seed");
            let other = ggml_blocks(4, vec![4, 512], dtype, max_abs).unwrap();
            assert_ne!(blocks.bytes(), other.bytes(), "{dtype:?}: other seed");
            let values: Vec<f32> = blocks
                .to_qtensor()
                .unwrap()
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let largest = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let mean_abs = values.iter().map(|v| v.abs()).sum::<f32>() / values.len() as f32;
            assert!(values.iter().all(|v| v.is_finite()), "{dtype:?}");
            assert!(largest <= 1.01 * max_abs, "{dtype:?}: {largest}");
            assert!(mean_abs > max_abs / 50.0, "{dtype:?}: mean |v| {mean_abs}");
        }
        assert!(ggml_blocks(3, vec![4, 512], GgmlDType::F16, max_abs).is_err());
        assert!(ggml_blocks(3, vec![4, 100], GgmlDType::Q8_0, max_abs).is_err());
    }

    /// Grid blocks: reproducible, the largest value within the range asked (to the f16
    /// rounding of the scale), spread over it; a type that is no grid type refused.
    #[test]
    fn grid_blocks_decode_to_values_of_the_range() {
        use candor_kernels::quant::{iq_grid::GRID_TYPES, QuantType};
        let max_abs = 0.5;
        for ty in GRID_TYPES {
            let blocks = grid_blocks(3, vec![4, 512], ty, max_abs).unwrap();
            assert_eq!(blocks.dtype, BlockType::Grid(ty));
            let again = grid_blocks(3, vec![4, 512], ty, max_abs).unwrap();
            assert_eq!(blocks.bytes(), again.bytes(), "{ty:?}: same seed");
            let values: Vec<f32> = blocks
                .to_f32()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let largest = values.iter().fold(0f32, |m, v| m.max(v.abs()));
            let mean_abs = values.iter().map(|v| v.abs()).sum::<f32>() / values.len() as f32;
            assert!(largest <= 1.001 * max_abs, "{ty:?}: {largest}");
            assert!(mean_abs > max_abs / 50.0, "{ty:?}: mean |v| {mean_abs}");
        }
        assert!(grid_blocks(3, vec![4, 512], QuantType::Q4K, max_abs).is_err());
        assert!(grid_blocks(3, vec![4, 128], QuantType::Iq2Xxs, max_abs).is_err());
    }

    #[test]
    fn values_are_deterministic_in_range_and_spread() {
        let w = SyntheticWeight {
            shape: vec![64, 64],
            dtype: WeightDtype::F32,
            seed: 7,
            lo: -0.5,
            hi: 0.5,
        };
        let a: Vec<f32> = (0..4096).map(|i| w.value(i)).collect();
        let b: Vec<f32> = (0..4096).map(|i| w.value(i)).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (-0.5..0.5).contains(v)));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.02, "mean {mean}");
        // Uniform on a unit interval: variance 1/12.
        assert!((var - 1.0 / 12.0).abs() < 0.005, "variance {var}");
        let other = SyntheticWeight {
            seed: 8,
            ..w.clone()
        };
        assert_ne!(other.value(0), w.value(0));
    }

    /// MXFP4 blocks: deterministic, every code about as frequent, the largest value at the
    /// range asked (to a power of two), and a row that is not whole blocks refused.
    #[test]
    fn mxfp4_blocks_are_reproducible_and_in_range() {
        let a = mxfp4_blocks(3, vec![8, 64], 0.1).unwrap();
        assert_eq!(
            a.bytes(),
            mxfp4_blocks(3, vec![8, 64], 0.1).unwrap().bytes()
        );
        assert_ne!(
            a.bytes(),
            mxfp4_blocks(4, vec![8, 64], 0.1).unwrap().bytes()
        );
        let values = mxfp4::dequantize_ggml(a.bytes());
        let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((0.06..=0.14).contains(&max), "largest {max}");
        let mut counts = [0usize; 16];
        for b in a.bytes().chunks_exact(17) {
            for byte in &b[1..] {
                counts[(byte & 15) as usize] += 1;
                counts[(byte >> 4) as usize] += 1;
            }
        }
        assert!(counts.iter().all(|&c| (16..=48).contains(&c)), "{counts:?}");
        assert!(mxfp4_blocks(0, vec![2, 40], 0.1).is_err());
    }

    #[test]
    fn bf16_values_are_rounded_like_storage() {
        let w = SyntheticWeight {
            shape: vec![16],
            dtype: WeightDtype::BF16,
            seed: 1,
            lo: -1.0,
            hi: 1.0,
        };
        let t = w.to_f32_tensor().unwrap().to_vec1::<f32>().unwrap();
        for v in t {
            assert_eq!(half::bf16::from_f32(v).to_f32(), v);
        }
        assert_ne!(tensor_seed(0, "a"), tensor_seed(0, "b"));
        assert_ne!(tensor_seed(0, "a"), tensor_seed(1, "a"));
    }
}
