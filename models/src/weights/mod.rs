//! Weight sources: GGUF (mmapped, possibly quantized) and safetensors (mmapped, F32/F16/BF16).
//!
//! Models ask for tensors by their canonical GGUF-style name (`blk.3.attn_q.weight`); each source
//! maps that to its own naming.
mod arena;
pub mod gguf;
pub mod gguf_header;
pub mod mxfp4;
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
            HostWeight::Dense { tensor, .. } => Ok(tensor.to_dtype(candle_core::DType::F32)?),
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

impl HostWeight {
    /// GGML blocks read out of a file as `q` (tensor `name`): f32 where the file is opened
    /// dequantized, else the blocks as they are.
    pub fn from_blocks(name: &str, q: QTensor, dequantize: bool) -> Result<HostWeight> {
        let Some(source) = weight_dtype_of(q.dtype()) else {
            return Err(ModelError::UnsupportedDtype {
                tensor: name.to_string(),
                dtype: format!("{:?}", q.dtype()),
            });
        };
        if dequantize {
            let tensor = q.dequantize(&candle_core::Device::Cpu)?;
            return Ok(HostWeight::Dense { tensor, source });
        }
        Ok(HostWeight::Quant(q))
    }
}

/// Rows of a weight rebuilt on the host (a model's load-time rewrites of its tensors),
/// stored as close to how the file stored them as the rewrite allows.
impl HostWeight {
    /// Rows of this 2-D weight by `sources` (None: a row of zeros), in the weight's own
    /// storage: GGML blocks stay the blocks they are (a row of zero bytes is a row of zeros in
    /// every GGML type), dense tensors keep their dtype. Exact.
    pub fn pick_rows(&self, sources: &[Option<usize>]) -> Result<HostWeight> {
        let shape = self.shape();
        let &[rows, cols] = &shape[..] else {
            return Err(ModelError::Config(format!(
                "row picks of a weight of shape {shape:?}"
            )));
        };
        if let Some(bad) = sources.iter().flatten().find(|&&r| r >= rows) {
            return Err(ModelError::Config(format!(
                "row {bad} of a {rows}-row weight"
            )));
        }
        let blocks = match self {
            HostWeight::Quant(q) => Some((q.dtype(), q.data()?.into_owned())),
            HostWeight::Mapped(m) => Some((m.dtype, m.bytes().to_vec())),
            _ => None,
        };
        if let Some((dtype, bytes)) = blocks {
            let row_bytes = bytes.len() / rows.max(1);
            let mut out = vec![0u8; sources.len() * row_bytes];
            for (dst, src) in out.chunks_exact_mut(row_bytes.max(1)).zip(sources) {
                if let Some(r) = *src {
                    dst.copy_from_slice(&bytes[r * row_bytes..(r + 1) * row_bytes]);
                }
            }
            let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
                dtype,
                &out,
                vec![sources.len(), cols],
                &candle_core::Device::Cpu,
            )?;
            return Ok(HostWeight::Quant(q));
        }
        let source = self.dtype().unwrap_or(WeightDtype::F32);
        HostWeight::stored_like(pick_tensor_rows(&self.to_f32()?, sources, None)?, source)
    }

    /// `pick_rows` with each picked row times its scale: exact picks in the weight's own
    /// storage where every scale is 1, a weight rebuilt from f32 (`stored_like`) otherwise.
    pub fn pick_rows_scaled(
        &self,
        sources: &[Option<usize>],
        scales: &[f32],
    ) -> Result<HostWeight> {
        if scales.iter().all(|&s| s == 1.0) {
            return self.pick_rows(sources);
        }
        let source = self.dtype().unwrap_or(WeightDtype::F32);
        let t = pick_tensor_rows(&self.to_f32()?, sources, Some(scales))?;
        HostWeight::stored_like(t, source)
    }

    /// A weight of f32 values `t` computed from one stored as `source`, kept in that storage
    /// where it is exact or close: f16/bf16 in their dtype (the values came from it), GGML
    /// blocks as Q8_0 (8 bits a value where the file had 4 to 8; rows of whole 32-value
    /// blocks), f32 otherwise.
    pub fn stored_like(t: Tensor, source: WeightDtype) -> Result<HostWeight> {
        use candle_core::DType;
        let tensor = match source {
            WeightDtype::F32 => t,
            WeightDtype::F16 => t.to_dtype(DType::F16)?,
            WeightDtype::BF16 => t.to_dtype(DType::BF16)?,
            _ => {
                let whole_blocks =
                    t.rank() == 2 && t.dims()[1].is_multiple_of(GgmlDType::Q8_0.block_size());
                if whole_blocks {
                    return Ok(HostWeight::Quant(QTensor::quantize(&t, GgmlDType::Q8_0)?));
                }
                t
            }
        };
        Ok(HostWeight::Dense { tensor, source })
    }
}

/// Rows of the host f32 matrix `t` (`[rows, cols]`) by `sources` (None: a row of zeros),
/// each times its scale where `scales` are given: the load-time rewrites of weights into the
/// layouts candor runs (latent attention's heads, partial RoPE's rows).
pub fn pick_tensor_rows(
    t: &Tensor,
    sources: &[Option<usize>],
    scales: Option<&[f32]>,
) -> Result<Tensor> {
    let (rows, cols) = t.dims2()?;
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; sources.len() * cols];
    for (i, (dst, src)) in out.chunks_exact_mut(cols.max(1)).zip(sources).enumerate() {
        let Some(src) = *src else { continue };
        if src >= rows {
            return Err(ModelError::Config(format!(
                "row pick: row {src} of a {rows}-row weight"
            )));
        }
        let scale = scales.and_then(|s| s.get(i)).copied().unwrap_or(1.0);
        for (d, &v) in dst.iter_mut().zip(&values[src * cols..(src + 1) * cols]) {
            *d = v * scale;
        }
    }
    Ok(Tensor::from_vec(
        out,
        (sources.len(), cols),
        &candle_core::Device::Cpu,
    )?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn ramp(rows: usize, cols: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| (i % 97) as f32 / 50.0 - 1.0)
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn picked_rows_keep_blocks_and_dtypes_exactly() {
        let t = ramp(3, 64);
        let q = HostWeight::Quant(QTensor::quantize(&t, GgmlDType::Q8_0).unwrap());
        let all = q.to_f32().unwrap().to_vec2::<f32>().unwrap();
        let picked = q.pick_rows(&[Some(2), None, Some(0)]).unwrap();
        assert_eq!(picked.dtype(), Some(WeightDtype::Q8_0));
        let rows = picked.to_f32().unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(rows, vec![all[2].clone(), vec![0.0; 64], all[0].clone()]);

        let half = HostWeight::Dense {
            tensor: t.to_dtype(candle_core::DType::BF16).unwrap(),
            source: WeightDtype::BF16,
        };
        let HostWeight::Dense { tensor, .. } = half.pick_rows(&[Some(1)]).unwrap() else {
            panic!("a dense weight stays dense");
        };
        assert_eq!(tensor.dtype(), candle_core::DType::BF16);
        assert!(q.pick_rows(&[Some(3)]).is_err());
    }

    #[test]
    fn picked_rows_are_scaled_and_padded() {
        let w = Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0], (2, 2), &Device::Cpu).unwrap();
        let p = pick_tensor_rows(&w, &[Some(1), None, Some(0)], Some(&[2.0, 1.0, 1.0])).unwrap();
        assert_eq!(
            p.to_vec2::<f32>().unwrap(),
            vec![vec![6.0, 8.0], vec![0.0, 0.0], vec![1.0, 2.0]]
        );
        assert!(pick_tensor_rows(&w, &[Some(2)], None).is_err());
    }

    #[test]
    fn rebuilt_weights_keep_their_storage_where_they_can() {
        let t = ramp(2, 64);
        let bf16 = HostWeight::stored_like(t.clone(), WeightDtype::BF16).unwrap();
        assert!(matches!(&bf16, HostWeight::Dense { tensor, .. }
            if tensor.dtype() == candle_core::DType::BF16));
        let from_blocks = HostWeight::stored_like(t.clone(), WeightDtype::Q4K).unwrap();
        assert_eq!(from_blocks.dtype(), Some(WeightDtype::Q8_0));
        let odd = HostWeight::stored_like(ramp(2, 40), WeightDtype::Q4K).unwrap();
        assert!(matches!(odd, HostWeight::Dense { .. }));
    }
}
