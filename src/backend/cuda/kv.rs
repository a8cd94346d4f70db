//! The paged KV cache on the GPU: per layer, K and V buffers of `[slots, kv_heads, head_dim]` in
//! the activation dtype (bf16 for bf16 models halves the cache against f32; f32 for f32 models
//! keeps them bit-comparable with the CPU backend).
use super::error::CudaError;
use super::tensors::{with_kernel_dtype, KernelDType};
use candle_core::backend::BackendStorage;
use candle_core::{CudaDevice, CudaStorage, DType};
use candor_models::backend::KvCacheSpec;
use candor_models::error::Result;
use candor_models::kv_rows::{slot_runs, KvRows};

pub struct CudaKvCache {
    pub spec: KvCacheSpec,
    /// (K, V) per layer.
    layers: Vec<(CudaStorage, CudaStorage)>,
}

fn zeros<T: KernelDType>(dev: &CudaDevice, n: usize) -> Result<CudaStorage> {
    Ok(CudaStorage::wrap_cuda_slice(
        dev.alloc_zeros::<T>(n)?,
        dev.clone(),
    ))
}

impl CudaKvCache {
    pub fn new(dev: &CudaDevice, spec: &KvCacheSpec, dtype: DType) -> Result<Self> {
        let per_layer = spec
            .num_blocks
            .checked_mul(spec.block_size)
            .and_then(|s| s.checked_mul(spec.num_kv_heads * spec.head_dim))
            .ok_or_else(|| CudaError::Launch("KV cache size overflows".into()))?;
        let mut layers = Vec::with_capacity(spec.num_layers);
        for _ in 0..spec.num_layers {
            let pair: Result<(CudaStorage, CudaStorage)> = with_kernel_dtype!(dtype, T, {
                Ok((zeros::<T>(dev, per_layer)?, zeros::<T>(dev, per_layer)?))
            });
            layers.push(pair?);
        }
        Ok(CudaKvCache {
            spec: spec.clone(),
            layers,
        })
    }

    pub fn num_slots(&self) -> usize {
        self.spec.num_blocks * self.spec.block_size
    }

    pub fn layer(&self, layer: usize) -> Result<&(CudaStorage, CudaStorage)> {
        self.layers
            .get(layer)
            .ok_or_else(|| CudaError::Launch(format!("KV cache has no layer {layer}")).into())
    }

    pub fn layer_mut(&mut self, layer: usize) -> Result<&mut (CudaStorage, CudaStorage)> {
        self.layers
            .get_mut(layer)
            .ok_or_else(|| CudaError::Launch(format!("KV cache has no layer {layer}")).into())
    }

    /// Every layer's block `src` copied over block `dst`, for each pair: device-to-device
    /// copies on the device's stream, ordered with the kernels before and after them.
    pub fn copy_blocks(&mut self, copies: &[(u32, u32)]) -> Result<()> {
        self.spec.check_block_copies(copies)?;
        let len = self.spec.block_values();
        for (k, v) in &mut self.layers {
            for side in [k, v] {
                with_kernel_dtype!(side.dtype(), T, { copy_within::<T>(side, copies, len) })?;
            }
        }
        Ok(())
    }
}

impl CudaKvCache {
    /// The cache's element type (that of its layers; f32 for a cache of none).
    fn dtype(&self) -> DType {
        self.layers.first().map_or(DType::F32, |(k, _)| k.dtype())
    }

    /// Every layer's K and V rows of `slots`, copied to the host a run of slots at a time.
    pub fn read_rows(&self, slots: &[u32]) -> Result<KvRows> {
        self.spec.check_slots(slots)?;
        with_kernel_dtype!(self.dtype(), T, {
            let row = self.spec.num_kv_heads * self.spec.head_dim;
            let mut rows = KvRows::new(T::SUFFIX, row * T::BYTES, self.layers.len());
            for ((k, v), (kb, vb)) in self.layers.iter().zip(&mut rows.layers) {
                for (side, out) in [(k, kb), (v, vb)] {
                    let values = read_runs::<T>(side, slots, row)?;
                    out.reserve(values.len() * T::BYTES);
                    values.iter().for_each(|x| x.put_le(out));
                }
            }
            Ok(rows)
        })
    }

    /// `rows` copied to `slots` a run at a time; refused whole if they do not fit.
    pub fn write_rows(&mut self, slots: &[u32], rows: &KvRows) -> Result<()> {
        with_kernel_dtype!(self.dtype(), T, {
            let row = self.spec.num_kv_heads * self.spec.head_dim;
            rows.check_fits(&self.spec, T::SUFFIX, row * T::BYTES, slots)?;
            for ((k, v), (kb, vb)) in self.layers.iter_mut().zip(&rows.layers) {
                for (side, bytes) in [(k, kb), (v, vb)] {
                    let values: Vec<T> = bytes.chunks_exact(T::BYTES).map(T::from_le).collect();
                    write_runs::<T>(side, slots, row, &values)?;
                }
            }
            Ok(())
        })
    }
}

fn rows_error(e: candle_core::cuda_backend::cudarc::driver::DriverError) -> CudaError {
    CudaError::Launch(format!("KV rows: {e}"))
}

/// The rows (`row` elements each) of `slots` in `storage`, in slot order, on the host.
fn read_runs<T: KernelDType>(storage: &CudaStorage, slots: &[u32], row: usize) -> Result<Vec<T>> {
    let stream = storage.device().cuda_stream();
    let slice = storage.as_cuda_slice::<T>()?;
    let mut out = vec![T::from_f64(0.0); slots.len() * row];
    let mut at = 0;
    for (first, count) in slot_runs(slots) {
        let n = count * row;
        stream
            .memcpy_dtoh(
                &slice.slice(first * row..first * row + n),
                &mut out[at..at + n],
            )
            .map_err(rows_error)?;
        at += n;
    }
    stream.synchronize().map_err(rows_error)?;
    Ok(out)
}

/// `values` (`row` elements a slot, in slot order) copied into the rows of `slots`.
fn write_runs<T: KernelDType>(
    storage: &mut CudaStorage,
    slots: &[u32],
    row: usize,
    values: &[T],
) -> Result<()> {
    let stream = storage.device().cuda_stream();
    let slice = storage.as_cuda_slice_mut::<T>()?;
    let mut at = 0;
    for (first, count) in slot_runs(slots) {
        let n = count * row;
        stream
            .memcpy_htod(
                &values[at..at + n],
                &mut slice.slice_mut(first * row..first * row + n),
            )
            .map_err(rows_error)?;
        at += n;
    }
    Ok(())
}

/// Runs of `len` elements of `storage` copied from `src * len` to `dst * len` for each pair.
fn copy_within<T: KernelDType>(
    storage: &mut CudaStorage,
    copies: &[(u32, u32)],
    len: usize,
) -> Result<()> {
    let stream = storage.device().cuda_stream();
    let slice = storage.as_cuda_slice_mut::<T>()?;
    let launch = |e: candle_core::cuda_backend::cudarc::driver::DriverError| {
        CudaError::Launch(format!("copy_kv_blocks: {e}"))
    };
    for &(src, dst) in copies {
        let (s, d) = (src as usize * len, dst as usize * len);
        if s == d {
            continue;
        }
        // Two views of one buffer, one read and one written: split it between them.
        let (mut low, mut high) = slice.split_at_mut(s.max(d));
        if s < d {
            stream
                .memcpy_dtod(&low.slice(s..s + len), &mut high.slice_mut(..len))
                .map_err(launch)?;
        } else {
            stream
                .memcpy_dtod(&high.slice(..len), &mut low.slice_mut(d..d + len))
                .map_err(launch)?;
        }
    }
    Ok(())
}
