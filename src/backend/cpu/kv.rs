//! The paged KV cache on the host: per layer, K and V as `[slots, kv_heads, head_dim]`, in f32
//! or f16 (half the memory and half the bytes decode attention reads; values are rounded once,
//! when written, and all arithmetic stays in f32).
use candor_kernels::attention::{KvElement, PagedKv};
use candor_models::backend::KvCacheSpec;
use candor_models::error::{ModelError, Result};
use half::f16;

/// The element type of a host KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvDtype {
    /// The reference.
    #[default]
    F32,
    F16,
}

impl KvDtype {
    pub fn bytes(self) -> usize {
        match self {
            KvDtype::F32 => 4,
            KvDtype::F16 => 2,
        }
    }
}

/// (K, V) per layer, of one element type.
enum Layers {
    F32(Vec<(Vec<f32>, Vec<f32>)>),
    F16(Vec<(Vec<f16>, Vec<f16>)>),
}

/// One layer of the cache, as the attention kernel reads it.
pub enum LayerView<'a> {
    F32(PagedKv<'a, f32>),
    F16(PagedKv<'a, f16>),
}

pub struct CpuKvCache {
    spec: KvCacheSpec,
    layers: Layers,
}

impl CpuKvCache {
    pub fn new(spec: &KvCacheSpec, dtype: KvDtype) -> Result<Self> {
        let per_layer = spec
            .num_blocks
            .checked_mul(spec.block_size)
            .and_then(|s| s.checked_mul(spec.num_kv_heads * spec.head_dim))
            .ok_or_else(|| ModelError::Backend("KV cache size overflows".into()))?;
        // Zeroed vectors come from calloc: pages no sequence has reached are never resident.
        fn alloc<E: KvElement>(layers: usize, len: usize) -> Vec<(Vec<E>, Vec<E>)> {
            (0..layers)
                .map(|_| (vec![E::default(); len], vec![E::default(); len]))
                .collect()
        }
        let layers = match dtype {
            KvDtype::F32 => Layers::F32(alloc(spec.num_layers, per_layer)),
            KvDtype::F16 => Layers::F16(alloc(spec.num_layers, per_layer)),
        };
        Ok(CpuKvCache {
            spec: spec.clone(),
            layers,
        })
    }

    /// A one-layer f32 cache holding `k` and `v` (each `[slots, kv_heads, head_dim]` of
    /// `spec`), e.g. a device cache layer downloaded for a CPU fallback.
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
            layers: Layers::F32(vec![(k, v)]),
        })
    }

    pub fn dtype(&self) -> KvDtype {
        match self.layers {
            Layers::F32(_) => KvDtype::F32,
            Layers::F16(_) => KvDtype::F16,
        }
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

    /// Layer `layer` for the attention kernel.
    pub fn layer(&self, layer: usize) -> Result<LayerView<'_>> {
        fn view<'a, E>(
            layers: &'a [(Vec<E>, Vec<E>)],
            layer: usize,
            spec: &KvCacheSpec,
        ) -> Result<PagedKv<'a, E>> {
            let (k, v) = layers.get(layer).ok_or_else(|| no_layer(layer))?;
            Ok(PagedKv {
                k,
                v,
                block_size: spec.block_size,
                kv_heads: spec.num_kv_heads,
                head_dim: spec.head_dim,
            })
        }
        Ok(match &self.layers {
            Layers::F32(l) => LayerView::F32(view(l, layer, &self.spec)?),
            Layers::F16(l) => LayerView::F16(view(l, layer, &self.spec)?),
        })
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
        if let Some(&slot) = slots.iter().find(|&&s| s as usize >= num_slots) {
            return Err(ModelError::Backend(format!(
                "kv_write: slot {slot} past the cache ({num_slots})"
            )));
        }
        fn scatter<E: KvElement>(
            layers: &mut [(Vec<E>, Vec<E>)],
            layer: usize,
            k: &[f32],
            v: &[f32],
            slots: &[u32],
            row: usize,
        ) -> Result<()> {
            let (kc, vc) = layers.get_mut(layer).ok_or_else(|| no_layer(layer))?;
            for (i, &slot) in slots.iter().enumerate() {
                let s = slot as usize * row;
                E::narrow(&k[i * row..][..row], &mut kc[s..s + row]);
                E::narrow(&v[i * row..][..row], &mut vc[s..s + row]);
            }
            Ok(())
        }
        match &mut self.layers {
            Layers::F32(l) => scatter(l, layer, k, v, slots, row),
            Layers::F16(l) => scatter(l, layer, k, v, slots, row),
        }
    }
}

fn no_layer(layer: usize) -> ModelError {
    ModelError::Backend(format!("KV cache has no layer {layer}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> KvCacheSpec {
        KvCacheSpec {
            num_layers: 2,
            num_blocks: 3,
            block_size: 2,
            num_kv_heads: 2,
            head_dim: 4,
        }
    }

    /// Row `i` of K (V is its negation), values that f16 cannot all hold exactly.
    fn rows(n: usize) -> (Vec<f32>, Vec<f32>) {
        let k: Vec<f32> = (0..n * 8).map(|i| 0.1 + i as f32 / 3.0).collect();
        let v = k.iter().map(|x| -x).collect();
        (k, v)
    }

    fn stored(cache: &CpuKvCache, layer: usize, slot: usize) -> (Vec<f32>, Vec<f32>) {
        let row = |s: &[f32]| s[slot * 8..(slot + 1) * 8].to_vec();
        let widen = |s: &[f16]| {
            s[slot * 8..(slot + 1) * 8]
                .iter()
                .map(|x| x.to_f32())
                .collect()
        };
        match cache.layer(layer).unwrap() {
            LayerView::F32(kv) => (row(kv.k), row(kv.v)),
            LayerView::F16(kv) => (widen(kv.k), widen(kv.v)),
        }
    }

    #[test]
    fn rows_land_in_their_slots_exact_in_f32_and_rounded_in_f16() {
        let (k, v) = rows(2);
        for dtype in [KvDtype::F32, KvDtype::F16] {
            let mut cache = CpuKvCache::new(&spec(), dtype).unwrap();
            assert_eq!(cache.dtype(), dtype);
            cache.write(1, &k, &v, &[5, 0]).unwrap();
            for (i, slot) in [(0usize, 5usize), (1, 0)] {
                let (ks, vs) = stored(&cache, 1, slot);
                for (e, (a, b)) in ks.iter().zip(&vs).enumerate() {
                    let want = k[i * 8 + e];
                    let want = match dtype {
                        KvDtype::F32 => want,
                        KvDtype::F16 => f16::from_f32(want).to_f32(),
                    };
                    assert_eq!((*a, *b), (want, -want), "{dtype:?} slot {slot}");
                }
            }
            // Layer 0 and the untouched slots stay zero.
            assert!(stored(&cache, 0, 5).0.iter().all(|&x| x == 0.0));
            assert!(stored(&cache, 1, 3).1.iter().all(|&x| x == 0.0));
        }
    }

    #[test]
    fn bad_writes_are_errors_and_change_nothing() {
        let (k, v) = rows(2);
        let mut cache = CpuKvCache::new(&spec(), KvDtype::F16).unwrap();
        assert!(
            cache.write(0, &k, &v, &[1, 6]).is_err(),
            "slot past the cache"
        );
        assert!(stored(&cache, 0, 1).0.iter().all(|&x| x == 0.0));
        assert!(cache.write(2, &k, &v, &[0, 1]).is_err(), "no such layer");
        assert!(cache.write(0, &k, &v, &[0]).is_err(), "row count");
        assert!(cache.layer(2).is_err());
    }
}
