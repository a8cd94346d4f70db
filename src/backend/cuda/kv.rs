//! The paged KV cache on the GPU: per layer, K and V buffers of `[slots, kv_heads, head_dim]` in
//! the activation dtype (bf16 for bf16 models halves the cache against f32; f32 for f32 models
//! keeps them bit-comparable with the CPU backend).
use super::error::CudaError;
use super::tensors::{with_kernel_dtype, KernelDType};
use candle_core::{CudaDevice, CudaStorage, DType};
use candor_models::backend::KvCacheSpec;
use candor_models::error::Result;

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
}
