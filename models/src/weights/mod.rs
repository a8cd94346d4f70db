//! Weight sources: GGUF (mmapped, possibly quantized) and safetensors (mmapped, F32/F16/BF16;
//! FP8 dequantized at load).
//!
//! Models ask for tensors by their canonical GGUF-style name (`blk.3.attn_q.weight`); each source
//! maps that to its own naming.
mod arena;
pub mod bnb;
pub mod fp8;
pub mod gguf;
pub mod gguf_header;
pub mod iq;
pub mod mxfp4;
pub mod names;
pub mod packed_int;
pub mod pytorch;
mod pytorch_legacy;
pub mod quantization;
pub mod safetensors;
pub mod scaled;
pub mod shard_index;
pub mod split;
pub mod synthetic;
pub mod ternary;
pub mod unpermuted;

use crate::backend::WeightDtype;
use crate::error::{ModelError, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;
use std::sync::Arc;
pub use synthetic::SyntheticWeight;

/// The layout of a tensor's blocks: one of candle's GGML types, or one candle has no type
/// for: MXFP4 (GGUF type 39, gpt-oss's experts; `mxfp4`), IQ4_NL and IQ4_XS (types 20 and 23,
/// llama.cpp's non-linear 4-bit codebook), and the grid types: the lattice codebooks IQ1_S/IQ1_M,
/// IQ2_XXS/XS/S, IQ3_XXS/S and the ternary TQ1_0/TQ2_0 (`candor_kernels::quant::iq_grid`; all
/// read by `iq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockType {
    Ggml(GgmlDType),
    Mxfp4,
    Iq4Nl,
    Iq4Xs,
    /// One of the grid types (`iq_grid::GRID_TYPES`).
    Grid(candor_kernels::quant::QuantType),
}

impl BlockType {
    /// Values and bytes per block.
    pub fn block(self) -> (usize, usize) {
        match self {
            BlockType::Ggml(d) => (d.block_size(), d.type_size()),
            BlockType::Mxfp4 => (mxfp4::BLOCK, mxfp4::GGML_BLOCK_BYTES),
            BlockType::Iq4Nl => (32, 18),
            BlockType::Iq4Xs => (256, 136),
            BlockType::Grid(t) => (t.block_elems(), t.block_bytes()),
        }
    }

    /// Bytes of `elems` values, or None when they are not whole blocks.
    pub fn bytes_of(self, elems: usize) -> Option<usize> {
        let (block, bytes) = self.block();
        elems.is_multiple_of(block).then(|| elems / block * bytes)
    }

    /// Bytes of a tensor of `shape` (row-major), or None when its rows are not whole blocks.
    pub fn tensor_bytes(self, shape: &[usize]) -> Option<usize> {
        let rows_whole = shape
            .last()
            .is_some_and(|k| k.is_multiple_of(self.block().0));
        let elems = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
        rows_whole.then(|| self.bytes_of(elems)).flatten()
    }

    /// The kernels' type for the IQ block types candle cannot read, whose exact
    /// dequantization the kernels crate has.
    pub fn iq(self) -> Option<candor_kernels::quant::QuantType> {
        match self {
            BlockType::Iq4Nl => Some(candor_kernels::quant::QuantType::Iq4Nl),
            BlockType::Iq4Xs => Some(candor_kernels::quant::QuantType::Iq4Xs),
            BlockType::Grid(t) => Some(t),
            BlockType::Ggml(_) | BlockType::Mxfp4 => None,
        }
    }
}

/// The blocks of one tensor, used in place: in the huge-page arena the GGUF loader copies them
/// into (`arena`), or in the memory-mapped file where that arena could not be made (either way
/// resident memory holds each weight once), or in an anonymous map of their own (`owned`).
#[derive(Clone)]
pub struct MappedBlocks {
    map: Arc<memmap2::Mmap>,
    offset: usize,
    len: usize,
    pub dtype: BlockType,
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
        dtype: BlockType,
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

    /// A copy of `bytes` in an anonymous map of its own: blocks rebuilt on the host (picked
    /// rows, a checkout's MXFP4 re-laid as ggml's blocks) that candle cannot hold.
    pub fn owned(bytes: &[u8], dtype: BlockType, shape: Vec<usize>) -> Result<Self> {
        Self::owned_with(bytes.len(), dtype, shape, |out| out.copy_from_slice(bytes))
    }

    /// `len` bytes of blocks of `dtype` and `shape` written by `fill` straight into a map of
    /// their own (no copy: synthetic weights).
    pub fn owned_with(
        len: usize,
        dtype: BlockType,
        shape: Vec<usize>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Self> {
        if dtype.bytes_of(shape.iter().product()) != Some(len) {
            return Err(ModelError::Config(format!(
                "{len} bytes of {dtype:?} blocks for a tensor of shape {shape:?}"
            )));
        }
        let no_map = |e: std::io::Error| ModelError::Backend(format!("a weight's memory: {e}"));
        // A map is never empty; a weight of no bytes keeps one unused byte.
        let mut map = memmap2::MmapMut::map_anon(len.max(1)).map_err(no_map)?;
        // Huge pages where the kernel has them, as the GGUF arena's (`arena`): decode streams
        // these blocks from memory every token. Advice only.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        fill(&mut map[..len]);
        let map = Arc::new(map.make_read_only().map_err(no_map)?);
        Ok(MappedBlocks {
            map,
            offset: 0,
            len,
            dtype,
            shape,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.len]
    }

    /// The blocks in a GGML type candle reads: as they are, MXFP4's as the Q5_0 blocks they
    /// are exactly, the IQ types' as Q8_0 blocks (`iq::to_q8_0`) (a copy; for CUDA and
    /// plugins, which have no products of those types).
    pub fn ggml_blocks(&self) -> Result<(GgmlDType, std::borrow::Cow<'_, [u8]>)> {
        Ok(match self.dtype {
            BlockType::Ggml(d) => (d, self.bytes().into()),
            BlockType::Mxfp4 => (GgmlDType::Q5_0, mxfp4::ggml_to_q5_0(self.bytes())?.into()),
            BlockType::Iq4Nl | BlockType::Iq4Xs | BlockType::Grid(_) => (
                GgmlDType::Q8_0,
                iq::to_q8_0(self.dtype, self.bytes())?.into(),
            ),
        })
    }

    /// The values, in f32 (the IQ types exactly, from their own blocks; the other types
    /// through candle's dequantization of `ggml_blocks`).
    pub fn to_f32(&self) -> Result<Tensor> {
        let Some(ty) = self.dtype.iq() else {
            return Ok(self.to_qtensor()?.dequantize(&candle_core::Device::Cpu)?);
        };
        let mut values = vec![0f32; self.shape.iter().product()];
        candor_kernels::quant::dequantize(ty, self.bytes(), &mut values);
        Ok(Tensor::from_vec(
            values,
            self.shape.clone(),
            &candle_core::Device::Cpu,
        )?)
    }

    /// A candle block tensor (a copy, `ggml_blocks`), for the paths candle serves.
    pub fn to_qtensor(&self) -> Result<QTensor> {
        let (dtype, bytes) = self.ggml_blocks()?;
        Ok(candle_core::quantized::ggml_file::qtensor_from_ggml(
            dtype,
            &bytes,
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
            HostWeight::Mapped(m) => match m.dtype {
                BlockType::Ggml(d) => weight_dtype_of(d),
                // No backend-facing type names MXFP4 or the IQ types: their blocks reach
                // backends as they are (CPU) or as Q5_0 / Q8_0 (`MappedBlocks::ggml_blocks`).
                BlockType::Mxfp4 | BlockType::Iq4Nl | BlockType::Iq4Xs | BlockType::Grid(_) => None,
            },
            HostWeight::Synthetic(s) => Some(s.dtype),
        }
    }

    /// Dense f32 copy of the weight (dequantizing blocks).
    pub fn to_f32(&self) -> Result<Tensor> {
        match self {
            HostWeight::Dense { tensor, .. } => Ok(tensor.to_dtype(candle_core::DType::F32)?),
            HostWeight::Quant(q) => Ok(q.dequantize(&candle_core::Device::Cpu)?),
            HostWeight::Mapped(m) => m.to_f32(),
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

impl HostWeight {
    /// Block bytes rebuilt on the host as a weight: a candle tensor for GGML types, blocks of
    /// their own for MXFP4.
    pub fn from_block_bytes(dtype: BlockType, bytes: &[u8], shape: Vec<usize>) -> Result<Self> {
        Ok(match dtype {
            BlockType::Ggml(d) => {
                HostWeight::Quant(candle_core::quantized::ggml_file::qtensor_from_ggml(
                    d,
                    bytes,
                    shape,
                    &candle_core::Device::Cpu,
                )?)
            }
            BlockType::Mxfp4 | BlockType::Iq4Nl | BlockType::Iq4Xs | BlockType::Grid(_) => {
                HostWeight::Mapped(MappedBlocks::owned(bytes, dtype, shape)?)
            }
        })
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
            HostWeight::Quant(q) => Some((BlockType::Ggml(q.dtype()), q.data()?.into_owned())),
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
            let shape = vec![sources.len(), cols];
            return HostWeight::from_block_bytes(dtype, &out, shape);
        }
        self.rebuilt(pick_tensor_rows(&self.to_f32()?, sources, None)?)
    }

    /// A weight of f32 values `t` computed from this one's: a dense weight stays dense in its
    /// tensor's dtype (one dequantized at load, `--dequantize`, stays f32 rather than going
    /// back to blocks), another is kept `stored_like` its source.
    fn rebuilt(&self, t: Tensor) -> Result<HostWeight> {
        match self {
            HostWeight::Dense { tensor, source } => Ok(HostWeight::Dense {
                tensor: t.to_dtype(tensor.dtype())?,
                source: *source,
            }),
            _ => HostWeight::stored_like(t, self.dtype().unwrap_or(WeightDtype::F32)),
        }
    }

    /// Rows `start..start + len` of this weight: `pick_rows` of a 2-D weight, exactly as
    /// stored; of a 1-D one (a bias), those values kept in its storage (`stored_like`). One
    /// member of a tensor that holds several projections (and of its bias).
    pub fn rows(&self, start: usize, len: usize) -> Result<HostWeight> {
        if self.shape().len() == 1 {
            let source = self.dtype().unwrap_or(WeightDtype::F32);
            let values = self.to_f32()?.narrow(0, start, len)?.contiguous()?;
            return HostWeight::stored_like(values, source);
        }
        let picks: Vec<Option<usize>> = (start..start + len).map(Some).collect();
        self.pick_rows(&picks)
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
        self.rebuilt(pick_tensor_rows(&self.to_f32()?, sources, Some(scales))?)
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
        GgmlDType::Q4_1 => WeightDtype::Q4_1,
        GgmlDType::Q5_1 => WeightDtype::Q5_1,
        GgmlDType::Q2K => WeightDtype::Q2K,
        GgmlDType::Q3K => WeightDtype::Q3K,
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

    /// A weight dequantized at load (`--dequantize`) stays f32 through row picks, scaled or
    /// not: it does not go back to blocks (which would run it through the quantized kernels).
    #[test]
    fn picked_rows_of_a_dequantized_weight_stay_f32() {
        let t = ramp(3, 64);
        let w = HostWeight::Dense {
            tensor: t.clone(),
            source: WeightDtype::Q8_0,
        };
        for picked in [
            w.pick_rows(&[Some(2), None]).unwrap(),
            w.pick_rows_scaled(&[Some(2), Some(0)], &[0.5, 1.0])
                .unwrap(),
        ] {
            let HostWeight::Dense { tensor, source } = &picked else {
                panic!("went back to blocks: {:?}", picked.dtype());
            };
            assert_eq!(
                (tensor.dtype(), *source),
                (candle_core::DType::F32, WeightDtype::Q8_0)
            );
        }
        let scaled = w.pick_rows_scaled(&[Some(2)], &[0.5]).unwrap();
        let want = (t.get(2).unwrap() * 0.5).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(scaled.to_f32().unwrap().to_vec2::<f32>().unwrap()[0], want);
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

    /// MXFP4 blocks, which candle cannot hold, live in memory of their own: picked rows stay
    /// MXFP4 blocks, exactly, and a byte count that does not fit the shape is refused.
    #[test]
    fn mxfp4_blocks_keep_their_own_storage() {
        let values: Vec<f32> = ramp(3, 64).flatten_all().unwrap().to_vec1().unwrap();
        let blocks = mxfp4::quantize_ggml(&values);
        let w = MappedBlocks::owned(&blocks, BlockType::Mxfp4, vec![3, 64]).unwrap();
        assert!(MappedBlocks::owned(&blocks[1..], BlockType::Mxfp4, vec![3, 64]).is_err());
        let w = HostWeight::Mapped(w);
        assert_eq!(w.dtype(), None);
        let all = w.to_f32().unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(all.concat(), mxfp4::dequantize_ggml(&blocks));
        let HostWeight::Mapped(picked) = w.pick_rows(&[Some(2), None]).unwrap() else {
            panic!("MXFP4 rows stay blocks");
        };
        assert_eq!(picked.dtype, BlockType::Mxfp4);
        assert_eq!(&picked.bytes()[..34], &blocks[4 * 17..6 * 17]);
        assert!(picked.bytes()[34..].iter().all(|&b| b == 0));
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
