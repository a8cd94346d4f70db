//! CPU weights: dense f32 tensors, or GGML blocks kept quantized.
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use candor_kernels::quant::QuantType;
use candor_models::error::Result;
use candor_models::weights::{HostWeight, MappedBlocks};
use std::sync::Arc;

pub enum CpuWeight {
    Dense(Tensor),
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
        _ => None,
    }
}

impl CpuWeight {
    pub fn from_host(w: HostWeight) -> Result<Self> {
        match w {
            HostWeight::Dense { tensor, .. } => {
                Ok(CpuWeight::Dense(tensor.to_dtype(DType::F32)?.contiguous()?))
            }
            HostWeight::Synthetic(s) => Ok(CpuWeight::Dense(s.to_f32_tensor()?)),
            HostWeight::Mapped(blocks) => match kernel_type(blocks.dtype) {
                Some(ty) => Ok(CpuWeight::Mapped { blocks, ty }),
                // A type the kernels do not read: candle's copy.
                None => CpuWeight::from_host(HostWeight::Quant(blocks.to_qtensor()?)),
            },
            HostWeight::Quant(q) => match q.dtype() {
                // Small float tensors (norms, biases) are used dense.
                GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
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
            },
        }
    }

    pub fn dense(&self) -> Option<&Tensor> {
        match self {
            CpuWeight::Dense(t) => Some(t),
            CpuWeight::Quant { .. } | CpuWeight::Mapped { .. } => None,
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        match self {
            CpuWeight::Dense(t) => t.dims().to_vec(),
            CpuWeight::Quant { q, .. } => q.shape().dims().to_vec(),
            CpuWeight::Mapped { blocks, .. } => blocks.shape.clone(),
        }
    }
}
