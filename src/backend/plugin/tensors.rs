//! What the plugin backend's tensors, weights and KV cache are: device buffers with shapes,
//! plus the host copies the CPU fallback needs.
use super::buffer::DeviceBuffer;
use super::ffi::{self, CandorDtype, CandorTensor};
use crate::backend::cpu::CpuWeight;
use candle_core::quantized::GgmlDType;
use candor_models::backend::KvCacheSpec;
use candor_models::error::{ModelError, Result};
use candor_models::kv_rows::{slot_runs, KvRows};
use candor_models::weights::{weight_dtype_of, BlockType, HostWeight};
use std::sync::Arc;

pub(super) fn err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Backend(e.to_string())
}

/// A contiguous f32 activation on the device. Clones share the buffer.
#[derive(Clone)]
pub struct PluginTensor {
    pub(super) buf: Arc<DeviceBuffer>,
    pub(super) shape: Vec<usize>,
}

impl std::fmt::Debug for PluginTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PluginTensor({:?}, {:?})", self.shape, self.buf)
    }
}

impl PluginTensor {
    pub(super) fn elems(&self) -> usize {
        self.shape.iter().product()
    }
    pub(super) fn desc(&self) -> CandorTensor {
        self.buf.tensor(ffi::DTYPE_F32, &self.shape)
    }
    /// `[rows, cols]` with cols the last dimension.
    pub(super) fn rows_cols(&self) -> (usize, usize) {
        let cols = self.shape.last().copied().unwrap_or(1);
        (self.elems() / cols.max(1), cols)
    }
}

/// A weight: on the device when the plugin keeps its dtype, and always on the host for the CPU
/// fallback (a mapped GGUF weight costs no host memory: its pages are the file's).
pub struct PluginWeight {
    pub(super) device: Option<DeviceWeight>,
    pub(super) host: CpuWeight,
    pub(super) dtype: CandorDtype,
    pub(super) shape: Vec<usize>,
}

pub struct DeviceWeight {
    pub(super) buf: DeviceBuffer,
}

impl PluginWeight {
    /// The device descriptor, when the weight is on the device.
    pub(super) fn desc(&self) -> Option<CandorTensor> {
        self.device
            .as_ref()
            .map(|d| d.buf.tensor(self.dtype, &self.shape))
    }
}

/// The bytes to upload for a host weight and their ABI dtype. Rank-1 weights (norms, biases)
/// are always f32, as the header promises; matrices keep their stored type.
/// MXFP4 goes as it is to a plugin that keeps it (`mxfp4`: ABI 1.1 and the dtype's bit), else
/// as the Q5_0 blocks it is exactly (29% more bytes, the same values). Block types the ABI has
/// no code for go dequantized to f32 (`ffi::dtype_code`).
pub(super) fn weight_bytes(w: &HostWeight, mxfp4: bool) -> Result<(CandorDtype, Vec<u8>)> {
    let code = |ggml: GgmlDType| {
        weight_dtype_of(ggml)
            .map(ffi::dtype_code)
            .ok_or_else(|| err(format!("weight type {ggml:?} has no ABI code")))
    };
    // A GGML type the ABI has no code for travels as f32 (`ffi::dtype_code`).
    let as_sent = |ggml: GgmlDType, blocks: Vec<u8>| -> Result<(CandorDtype, Vec<u8>)> {
        match code(ggml)? {
            ffi::DTYPE_F32 if ggml != GgmlDType::F32 => {
                Ok((ffi::DTYPE_F32, f32_bytes(&dense_f32(&w.to_f32()?)?)))
            }
            code => Ok((code, blocks)),
        }
    };
    match w {
        HostWeight::Dense { tensor, .. } => Ok((ffi::DTYPE_F32, f32_bytes(&dense_f32(tensor)?))),
        _ if w.shape().len() == 1 => Ok((ffi::DTYPE_F32, f32_bytes(&dense_f32(&w.to_f32()?)?))),
        HostWeight::Quant(q) => as_sent(q.dtype(), q.data()?.into_owned()),
        HostWeight::Mapped(m) if mxfp4 && m.dtype == BlockType::Mxfp4 => {
            Ok((ffi::DTYPE_MXFP4, m.bytes().to_vec()))
        }
        HostWeight::Mapped(m) => {
            let (ggml, bytes) = m.ggml_blocks()?;
            as_sent(ggml, bytes.into_owned())
        }
        // Dummy weights (`--load-format dummy`) are made on the host for a plugin, as f32.
        HostWeight::Synthetic(_) => Ok((ffi::DTYPE_F32, f32_bytes(&dense_f32(&w.to_f32()?)?))),
    }
}

fn dense_f32(t: &candle_core::Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?)
}

pub(super) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// The paged KV cache: per layer, K and V as `[slots, kv_heads, head_dim]` device buffers of
/// `dtype` (F32, or F16 where the plugin keeps it: ABI 1.1).
pub struct PluginKvCache {
    pub(super) spec: KvCacheSpec,
    pub(super) dtype: CandorDtype,
    pub(super) layers: Vec<(DeviceBuffer, DeviceBuffer)>,
}

/// Bytes of one cache element of `dtype` (F32 or F16).
pub(super) fn kv_element_bytes(dtype: CandorDtype) -> usize {
    if dtype == ffi::DTYPE_F16 {
        2
    } else {
        4
    }
}

/// `values` as the cache's elements of `dtype` (native byte order, as the device holds them).
pub(super) fn kv_bytes(values: &[f32], dtype: CandorDtype) -> Vec<u8> {
    if dtype == ffi::DTYPE_F16 {
        values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_bits().to_ne_bytes())
            .collect()
    } else {
        f32_bytes(values)
    }
}

/// Cache elements of `dtype` as f32 (exact: f16 widens without rounding).
pub(super) fn kv_values(bytes: &[u8], dtype: CandorDtype) -> Vec<f32> {
    if dtype == ffi::DTYPE_F16 {
        bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_bits(u16::from_ne_bytes([c[0], c[1]])).to_f32())
            .collect()
    } else {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

impl PluginKvCache {
    pub(super) fn slots(&self) -> usize {
        self.spec.num_blocks * self.spec.block_size
    }
    pub(super) fn layer_shape(&self) -> [usize; 3] {
        [self.slots(), self.spec.num_kv_heads, self.spec.head_dim]
    }
    pub(super) fn layer(&self, layer: usize) -> Result<&(DeviceBuffer, DeviceBuffer)> {
        self.layers
            .get(layer)
            .ok_or_else(|| err(format!("KV cache has no layer {layer}")))
    }

    /// How `KvRows` name this cache's elements.
    pub(super) fn encoding(&self) -> &'static str {
        match self.dtype == ffi::DTYPE_F16 {
            true => "f16",
            false => "f32",
        }
    }

    fn row_bytes(&self) -> usize {
        self.spec.num_kv_heads * self.spec.head_dim * kv_element_bytes(self.dtype)
    }

    /// Every layer's K and V rows of `slots`, read from the device a run of slots at a time.
    pub(super) fn read_rows(&self, slots: &[u32]) -> Result<KvRows> {
        self.spec.check_slots(slots)?;
        let row = self.row_bytes();
        let mut rows = KvRows::new(self.encoding(), row, self.layers.len());
        for ((k, v), (kb, vb)) in self.layers.iter().zip(&mut rows.layers) {
            for (side, out) in [(k, kb), (v, vb)] {
                out.resize(slots.len() * row, 0);
                let mut at = 0;
                for (first, count) in slot_runs(slots) {
                    side.read((first * row) as u64, &mut out[at..at + count * row])?;
                    at += count * row;
                }
            }
        }
        Ok(rows)
    }

    /// `rows` written to `slots` a run at a time; refused whole if they do not fit.
    pub(super) fn write_rows(&self, slots: &[u32], rows: &KvRows) -> Result<()> {
        let row = self.row_bytes();
        rows.check_fits(&self.spec, self.encoding(), row, slots)?;
        for ((k, v), (kb, vb)) in self.layers.iter().zip(&rows.layers) {
            for (side, bytes) in [(k, kb), (v, vb)] {
                let mut at = 0;
                for (first, count) in slot_runs(slots) {
                    side.write((first * row) as u64, &bytes[at..at + count * row])?;
                    at += count * row;
                }
            }
        }
        Ok(())
    }

    /// Every layer's block `src` copied over block `dst`, for each pair, through the host:
    /// the plugin ABI moves bytes only between host and device (a block is a few KiB per
    /// layer, and copies happen once per admitted request at most).
    pub(super) fn copy_blocks(&self, copies: &[(u32, u32)]) -> Result<()> {
        self.spec.check_block_copies(copies)?;
        let len = self.spec.block_values() * kv_element_bytes(self.dtype);
        let mut block = vec![0u8; len];
        for (k, v) in &self.layers {
            for side in [k, v] {
                for &(src, dst) in copies.iter().filter(|(s, d)| s != d) {
                    side.read((src as usize * len) as u64, &mut block)?;
                    side.write((dst as usize * len) as u64, &block)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_models::weights::{mxfp4, MappedBlocks};

    fn mxfp4_weight() -> (Vec<u8>, HostWeight) {
        let values: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 9.0).collect();
        let blocks = mxfp4::quantize_ggml(&values);
        let w = MappedBlocks::owned(&blocks, BlockType::Mxfp4, vec![2, 32]).unwrap();
        (blocks, HostWeight::Mapped(w))
    }

    /// Block types the ABI has no code for go dequantized, as f32, whether read in place
    /// (mapped) or copied (candle's blocks); the types it has go as they are.
    #[test]
    fn blocks_without_an_abi_code_go_as_f32() {
        let values: Vec<f32> = (0..512)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let t =
            candle_core::Tensor::from_slice(&values, (2, 256), &candle_core::Device::Cpu).unwrap();
        for (ggml, code) in [
            (GgmlDType::Q2K, ffi::DTYPE_F32),
            (GgmlDType::Q3K, ffi::DTYPE_F32),
            (GgmlDType::Q4_1, ffi::DTYPE_F32),
            (GgmlDType::Q5_1, ffi::DTYPE_F32),
            (GgmlDType::Q4K, ffi::DTYPE_Q4_K),
        ] {
            let q = candle_core::quantized::QTensor::quantize(&t, ggml).unwrap();
            let want = match code {
                ffi::DTYPE_F32 => f32_bytes(
                    &dense_f32(&q.dequantize(&candle_core::Device::Cpu).unwrap()).unwrap(),
                ),
                _ => q.data().unwrap().into_owned(),
            };
            let mapped =
                MappedBlocks::owned(&q.data().unwrap(), BlockType::Ggml(ggml), vec![2, 256])
                    .unwrap();
            for w in [HostWeight::Quant(q), HostWeight::Mapped(mapped)] {
                assert_eq!(
                    weight_bytes(&w, true).unwrap(),
                    (code, want.clone()),
                    "{ggml:?}"
                );
            }
        }
    }

    /// The fallbacks' conversions between f32 and the cache's elements: f16 rounds to nearest
    /// and widens back exactly; f32 is the bytes as they are.
    #[test]
    fn cache_elements_convert_both_ways() {
        let values = [1.0f32, -2.5, 65504.0, 1e-8, 0.1];
        for dtype in [ffi::DTYPE_F32, ffi::DTYPE_F16] {
            let bytes = kv_bytes(&values, dtype);
            assert_eq!(bytes.len(), values.len() * kv_element_bytes(dtype));
            let back = kv_values(&bytes, dtype);
            for (v, b) in values.iter().zip(&back) {
                let want = match dtype {
                    ffi::DTYPE_F16 => half::f16::from_f32(*v).to_f32(),
                    _ => *v,
                };
                assert_eq!(b.to_bits(), want.to_bits(), "{v} as dtype {dtype}");
            }
        }
    }

    /// A plugin that keeps MXFP4 (ABI 1.1) gets the blocks byte for byte.
    #[test]
    fn mxfp4_blocks_go_as_they_are_where_kept() {
        let (blocks, w) = mxfp4_weight();
        assert_eq!(
            weight_bytes(&w, true).unwrap(),
            (ffi::DTYPE_MXFP4, blocks.clone())
        );
        assert_eq!(blocks.len(), 2 * 17, "17 bytes a block of 32");
    }

    /// Elsewhere MXFP4 blocks go as the Q5_0 blocks they are exactly (the values a plugin's
    /// Q5_0 dequantization reads are MXFP4's).
    #[test]
    fn mxfp4_blocks_go_as_q5_0_elsewhere() {
        let (blocks, w) = mxfp4_weight();
        let (dtype, bytes) = weight_bytes(&w, false).unwrap();
        assert_eq!(
            dtype,
            ffi::dtype_code(candor_models::backend::WeightDtype::Q5_0)
        );
        assert_eq!(bytes, mxfp4::ggml_to_q5_0(&blocks).unwrap());
        let q5 = mxfp4::q5_0_tensor(&bytes, vec![64]).unwrap();
        let got: Vec<f32> = q5
            .dequantize(&candle_core::Device::Cpu)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got, mxfp4::dequantize_ggml(&blocks));
    }
}
