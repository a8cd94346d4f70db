//! CPU weights: dense f32 tensors, f16/bf16 matrices kept in 16 bits, or GGML blocks kept
//! quantized.
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use candor_kernels::half_matmul::HalfType;
use candor_kernels::quant::QuantType;
use candor_models::backend::WeightDtype;
use candor_models::error::{ModelError, Result};
use candor_models::weights::{weight_dtype_of, BlockType, HostWeight, MappedBlocks};
use std::sync::Arc;

pub enum CpuWeight {
    Dense(Tensor),
    /// An f16/bf16 matrix (`[rows, cols]`) in its own 16 bits: decode reads half the bytes of
    /// an f32 copy (candor-kernels' `half_matmul`). Vectors (norms, biases) stay dense f32.
    Half {
        bits: Arc<[u16]>,
        ty: HalfType,
        shape: [usize; 2],
    },
    /// The block tensor serves both as a matmul weight and as an embedding table (tied heads
    /// share one copy).
    Quant {
        qmm: QMatMul,
        q: Arc<QTensor>,
        /// Set when candor-kernels has a fast product for this block type.
        fast: Option<QuantType>,
    },
    /// Blocks read in place from the mapped model file by candor-kernels (no copy).
    Mapped {
        blocks: MappedBlocks,
        ty: QuantType,
    },
    /// A skinny matrix (`[rows, cols]`, a handful of long columns: a LoRA adapter's B) kept
    /// transposed, f32 `[cols, rows]`: the product then runs along contiguous rows of the
    /// transposed weight instead of taking `rows` dot products of `cols` values, each closed
    /// by a horizontal sum (4864 x 16 at decode on the Xeon VM: ~40 µs, against ~65 µs for the
    /// f32 matrix as stored and ~75 µs for the f16 kernel).
    Skinny(Tensor),
}

/// Whether a `[rows, cols]` matrix is kept `Skinny`: few columns, many more rows (no model
/// weight is: their rows hold the hidden size).
fn is_skinny(rows: usize, cols: usize) -> bool {
    cols <= 64 && rows >= 16 * cols
}

/// The candor-kernels type for a GGML block type, where it has one.
fn kernel_type(d: GgmlDType) -> Option<QuantType> {
    match d {
        GgmlDType::Q4_0 => Some(QuantType::Q4_0),
        GgmlDType::Q5_0 => Some(QuantType::Q5_0),
        GgmlDType::Q8_0 => Some(QuantType::Q8_0),
        GgmlDType::Q4K => Some(QuantType::Q4K),
        GgmlDType::Q5K => Some(QuantType::Q5K),
        GgmlDType::Q6K => Some(QuantType::Q6K),
        GgmlDType::Q4_1 => Some(QuantType::Q4_1),
        GgmlDType::Q5_1 => Some(QuantType::Q5_1),
        GgmlDType::Q2K => Some(QuantType::Q2K),
        GgmlDType::Q3K => Some(QuantType::Q3K),
        _ => None,
    }
}

/// The candor-kernels type for mapped blocks, where it has one (always for the types candle
/// lacks).
fn blocks_type(d: BlockType) -> Option<QuantType> {
    match d {
        BlockType::Ggml(d) => kernel_type(d),
        BlockType::Mxfp4 => Some(QuantType::Mxfp4),
        BlockType::Iq4Nl | BlockType::Iq4Xs | BlockType::Grid(_) => d.iq(),
    }
}

impl CpuWeight {
    pub fn from_host(w: HostWeight) -> Result<Self> {
        match w {
            HostWeight::Dense { tensor, .. } => match (half_type(tensor.dtype()), tensor.dims()) {
                (_, &[rows, cols]) if is_skinny(rows, cols) => Ok(CpuWeight::Skinny(
                    tensor.to_dtype(DType::F32)?.t()?.contiguous()?,
                )),
                (Some(ty), &[rows, cols]) => {
                    Ok(Self::half(tensor_bits(&tensor, ty)?, ty, [rows, cols]))
                }
                _ => Ok(CpuWeight::Dense(tensor.to_dtype(DType::F32)?.contiguous()?)),
            },
            HostWeight::Synthetic(s) => match (half_of(s.dtype), &s.shape[..]) {
                (Some(ty), &[rows, cols]) => {
                    // `value` is already rounded to the weight's type: rounding again is exact.
                    let bits = (0..s.elem_count() as u64).map(|i| ty.from_f32(s.value(i)));
                    Ok(Self::half(bits.collect(), ty, [rows, cols]))
                }
                _ => Ok(CpuWeight::Dense(s.to_f32_tensor()?)),
            },
            HostWeight::Mapped(blocks) => match blocks_type(blocks.dtype) {
                Some(ty) => Ok(CpuWeight::Mapped { blocks, ty }),
                // A type the kernels do not read: candle's copy.
                None => CpuWeight::from_host(HostWeight::Quant(blocks.to_qtensor()?)),
            },
            HostWeight::Quant(q) => {
                let half = weight_dtype_of(q.dtype()).and_then(half_of);
                match (half, q.shape().dims()) {
                    (Some(ty), &[rows, cols]) => Ok(Self::half(
                        le_bits(&q.data()?, [rows, cols])?,
                        ty,
                        [rows, cols],
                    )),
                    // Small float tensors (norms, biases) are used dense.
                    _ if matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) => {
                        Ok(CpuWeight::Dense(q.dequantize(&Device::Cpu)?.contiguous()?))
                    }
                    _ => {
                        let fast = kernel_type(q.dtype());
                        let q = Arc::new(q);
                        Ok(CpuWeight::Quant {
                            qmm: QMatMul::QTensor(q.clone()),
                            q,
                            fast,
                        })
                    }
                }
            }
        }
    }

    /// The rows of `parts` as one weight, for layouts held in memory of their own: dense f32
    /// (matrices or vectors) and f16/bf16 matrices of one type and width. Blocks stay apart:
    /// mapped ones are read in place from the file, which stays mapped for the other weights,
    /// so a joined copy would be a second resident copy.
    pub fn concat_rows(parts: &[&CpuWeight]) -> Result<Option<CpuWeight>> {
        let Some(first) = parts.first() else {
            return Ok(None);
        };
        match first {
            CpuWeight::Dense(t0) => {
                let mut tensors = Vec::with_capacity(parts.len());
                for p in parts {
                    match p {
                        CpuWeight::Dense(t) if t.dims()[1..] == t0.dims()[1..] => tensors.push(t),
                        _ => return Ok(None),
                    }
                }
                Ok(Some(CpuWeight::Dense(Tensor::cat(&tensors, 0)?)))
            }
            &&CpuWeight::Half {
                ty,
                shape: [_, cols],
                ..
            } => {
                let mut bits = Vec::new();
                let mut rows = 0;
                for p in parts {
                    match p {
                        CpuWeight::Half {
                            bits: b,
                            ty: t,
                            shape: [r, c],
                        } if *t == ty && *c == cols => {
                            bits.extend_from_slice(b);
                            rows += r;
                        }
                        _ => return Ok(None),
                    }
                }
                Ok(Some(Self::half(bits, ty, [rows, cols])))
            }
            // Joined projections have long rows; skinny matrices are LoRA updates, not joined.
            CpuWeight::Quant { .. } | CpuWeight::Mapped { .. } | CpuWeight::Skinny(_) => Ok(None),
        }
    }

    fn half(bits: Vec<u16>, ty: HalfType, shape: [usize; 2]) -> Self {
        CpuWeight::Half {
            bits: bits.into(),
            ty,
            shape,
        }
    }

    pub fn dense(&self) -> Option<&Tensor> {
        match self {
            CpuWeight::Dense(t) => Some(t),
            CpuWeight::Half { .. }
            | CpuWeight::Quant { .. }
            | CpuWeight::Mapped { .. }
            | CpuWeight::Skinny(_) => None,
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        match self {
            CpuWeight::Dense(t) => t.dims().to_vec(),
            CpuWeight::Half { shape, .. } => shape.to_vec(),
            CpuWeight::Quant { q, .. } => q.shape().dims().to_vec(),
            CpuWeight::Mapped { blocks, .. } => blocks.shape.clone(),
            CpuWeight::Skinny(t) => t.dims().iter().rev().copied().collect(),
        }
    }
}

fn half_type(d: DType) -> Option<HalfType> {
    match d {
        DType::F16 => Some(HalfType::F16),
        DType::BF16 => Some(HalfType::Bf16),
        _ => None,
    }
}

fn half_of(d: WeightDtype) -> Option<HalfType> {
    match d {
        WeightDtype::F16 => Some(HalfType::F16),
        WeightDtype::BF16 => Some(HalfType::Bf16),
        _ => None,
    }
}

/// The 16-bit values of an f16/bf16 tensor.
fn tensor_bits(t: &Tensor, ty: HalfType) -> Result<Vec<u16>> {
    let flat = t.flatten_all()?;
    Ok(match ty {
        HalfType::F16 => flat
            .to_vec1::<half::f16>()?
            .iter()
            .map(|v| v.to_bits())
            .collect(),
        HalfType::Bf16 => flat
            .to_vec1::<half::bf16>()?
            .iter()
            .map(|v| v.to_bits())
            .collect(),
    })
}

/// GGML's F16/BF16 data: little-endian 16-bit values.
fn le_bits(bytes: &[u8], shape: [usize; 2]) -> Result<Vec<u16>> {
    if bytes.len() != 2 * shape[0] * shape[1] {
        return Err(ModelError::Backend(format!(
            "a {shape:?} 16-bit tensor of {} bytes",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect())
}
