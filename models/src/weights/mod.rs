//! Weight sources: GGUF (mmapped, possibly quantized) and safetensors (mmapped, F32/F16/BF16).
//!
//! Models ask for tensors by their canonical GGUF-style name (`blk.3.attn_q.weight`); each source
//! maps that to its own naming.
mod arena;
pub mod gguf;
pub mod names;
pub mod safetensors;
pub mod synthetic;

use crate::backend::WeightDtype;
use crate::error::{ModelError, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;
use std::sync::Arc;
pub use synthetic::SyntheticWeight;

/// The GGML blocks of one tensor, used in place: in the huge-page arena the GGUF loader copies
/// them into (`arena`), or in the memory-mapped file where that arena could not be made.
/// Either way resident memory holds each weight once.
#[derive(Clone)]
pub struct MappedBlocks {
    map: Arc<memmap2::Mmap>,
    offset: usize,
    len: usize,
    pub dtype: GgmlDType,
    pub shape: Vec<usize>,
}

impl std::fmt::Debug for MappedBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedBlocks")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("bytes", &self.len)
            .finish()
    }
}

impl MappedBlocks {
    /// `len` bytes at `offset` of `map`; None when the range is outside the file.
    pub fn new(
        map: Arc<memmap2::Mmap>,
        offset: usize,
        len: usize,
        dtype: GgmlDType,
        shape: Vec<usize>,
    ) -> Option<Self> {
        (offset.checked_add(len)? <= map.len()).then_some(MappedBlocks {
            map,
            offset,
            len,
            dtype,
            shape,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.len]
    }

    /// A candle block tensor (a copy), for the paths candle serves.
    pub fn to_qtensor(&self) -> Result<QTensor> {
        Ok(candle_core::quantized::ggml_file::qtensor_from_ggml(
            self.dtype,
            self.bytes(),
            self.shape.clone(),
            &candle_core::Device::Cpu,
        )?)
    }
}

/// A weight in host memory, as it came from the file (or dequantized to f32).
#[derive(Debug)]
pub enum HostWeight {
    /// A dense f32 CPU tensor; `source` is the dtype stored in the file.
    Dense { tensor: Tensor, source: WeightDtype },
    /// A GGML block tensor (quantized or f16/bf16/f32) kept as stored.
    Quant(QTensor),
    /// Quantized blocks used in place in the mapped file.
    Mapped(MappedBlocks),
    /// Random values made where the weight will live (`--load-format dummy`).
    Synthetic(SyntheticWeight),
}

impl HostWeight {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            HostWeight::Dense { tensor, .. } => tensor.dims().to_vec(),
            HostWeight::Quant(q) => q.shape().dims().to_vec(),
            HostWeight::Mapped(m) => m.shape.clone(),
            HostWeight::Synthetic(s) => s.shape.clone(),
        }
    }

    pub fn dtype(&self) -> Option<WeightDtype> {
        match self {
            HostWeight::Dense { source, .. } => Some(*source),
            HostWeight::Quant(q) => weight_dtype_of(q.dtype()),
            HostWeight::Mapped(m) => weight_dtype_of(m.dtype),
            HostWeight::Synthetic(s) => Some(s.dtype),
        }
    }

    /// Dense f32 copy of the weight (dequantizing blocks).
    pub fn to_f32(&self) -> Result<Tensor> {
        match self {
            HostWeight::Dense { tensor, .. } => Ok(tensor.clone()),
            HostWeight::Quant(q) => Ok(q.dequantize(&candle_core::Device::Cpu)?),
            HostWeight::Mapped(m) => Ok(m.to_qtensor()?.dequantize(&candle_core::Device::Cpu)?),
            HostWeight::Synthetic(s) => s.to_f32_tensor(),
        }
    }

    /// Apply an elementwise host transform (e.g. Gemma's `1 + w` norm weights) on a dense copy.
    pub fn map_dense(
        self,
        f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<HostWeight> {
        let source = self.dtype().unwrap_or(WeightDtype::F32);
        let t = self.to_f32()?;
        Ok(HostWeight::Dense {
            tensor: f(&t)?,
            source,
        })
    }
}

pub fn weight_dtype_of(d: GgmlDType) -> Option<WeightDtype> {
    Some(match d {
        GgmlDType::F32 => WeightDtype::F32,
        GgmlDType::F16 => WeightDtype::F16,
        GgmlDType::BF16 => WeightDtype::BF16,
        GgmlDType::Q4_0 => WeightDtype::Q4_0,
        GgmlDType::Q8_0 => WeightDtype::Q8_0,
        GgmlDType::Q5_0 => WeightDtype::Q5_0,
        GgmlDType::Q4K => WeightDtype::Q4K,
        GgmlDType::Q5K => WeightDtype::Q5K,
        GgmlDType::Q6K => WeightDtype::Q6K,
        _ => return None,
    })
}

/// Where a model's tensors come from.
pub trait WeightSource {
    /// The tensor with this canonical name, or `None` when the file has none by that name.
    fn get(&self, name: &str) -> Result<Option<HostWeight>>;
    /// Whether a tensor with this canonical name exists.
    fn contains(&self, name: &str) -> bool;
}

/// Fetch a tensor that must exist.
pub fn require(src: &dyn WeightSource, name: &str) -> Result<HostWeight> {
    src.get(name)?
        .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
}
