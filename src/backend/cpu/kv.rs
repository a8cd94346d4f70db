//! The paged KV cache on the host: per layer, K and V as `[slots, kv_heads, head_dim]` f32.
use candor_models::backend::KvCacheSpec;
use candor_models::error::{ModelError, Result};

pub struct CpuKvCache {
    spec: KvCacheSpec,
    /// (K, V) per layer.
    layers: Vec<(Vec<f32>, Vec<f32>)>,
}

impl CpuKvCache {
    pub fn new(spec: &KvCacheSpec) -> Result<Self> {
        let per_layer = spec
            .num_blocks
            .checked_mul(spec.block_size)
            .and_then(|s| s.checked_mul(spec.num_kv_heads * spec.head_dim))
            .ok_or_else(|| ModelError::Backend("KV cache size overflows".into()))?;
        let layers = (0..spec.num_layers)
            .map(|_| (vec![0f32; per_layer], vec![0f32; per_layer]))
            .collect();
        Ok(CpuKvCache {
            spec: spec.clone(),
            layers,
        })
    }

    /// A one-layer cache holding `k` and `v` (each `[slots, kv_heads, head_dim]` of `spec`),
    /// e.g. a device cache layer downloaded for a CPU fallback.
    pub fn from_layer(spec: &KvCacheSpec, k: Vec<f32>, v: Vec<f32>) -> Result<Self> {
        let slots = spec.num_blocks * spec.block_size;
        let want = slots * spec.num_kv_heads * spec.head_dim;
        if k.len() != want || v.len() != want {
            return Err(ModelError::Backend(format!(
                "KV layer of {} values, the spec needs {want}",
                k.len()
            )));
        }
        Ok(CpuKvCache {
            spec: KvCacheSpec {
                num_layers: 1,
                ..spec.clone()
            },
            layers: vec![(k, v)],
        })
    }

    pub fn kv_heads(&self) -> usize {
        self.spec.num_kv_heads
    }
    pub fn head_dim(&self) -> usize {
        self.spec.head_dim
    }
    pub fn block_size(&self) -> usize {
        self.spec.block_size
    }
    pub fn num_blocks(&self) -> usize {
        self.spec.num_blocks
    }

    pub fn layer(&self, layer: usize) -> Result<(&[f32], &[f32])> {
        self.layers
            .get(layer)
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .ok_or_else(|| ModelError::Backend(format!("KV cache has no layer {layer}")))
    }

    /// Scatter rows of `k`, `v` (`[tokens, kv_heads * head_dim]`) to `slots`.
    pub fn write(&mut self, layer: usize, k: &[f32], v: &[f32], slots: &[u32]) -> Result<()> {
        let row = self.spec.num_kv_heads * self.spec.head_dim;
        let num_slots = self.spec.num_blocks * self.spec.block_size;
        if k.len() != slots.len() * row || v.len() != k.len() {
            return Err(ModelError::Backend(format!(
                "kv_write: {} slots for {} values",
                slots.len(),
                k.len()
            )));
        }
        let (kc, vc) = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| ModelError::Backend(format!("KV cache has no layer {layer}")))?;
        for (i, &slot) in slots.iter().enumerate() {
            let slot = slot as usize;
            if slot >= num_slots {
                return Err(ModelError::Backend(format!(
                    "kv_write: slot {slot} past the cache ({num_slots})"
                )));
            }
            kc[slot * row..(slot + 1) * row].copy_from_slice(&k[i * row..(i + 1) * row]);
            vc[slot * row..(slot + 1) * row].copy_from_slice(&v[i * row..(i + 1) * row]);
        }
        Ok(())
    }
}
