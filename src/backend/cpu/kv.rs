//! The paged KV cache on the host: per layer, K and V as `[slots, kv_heads, head_dim]`, in f32,
//! f16 (half the memory and half the bytes decode attention reads) or q8_0 (blocks of 32 bytes
//! and a scale: a little over a quarter). Values are rounded once, when written, and all
//! arithmetic stays in f32.
use candor_kernels::attention::{KvElement, KvQ8, PagedKv};
use candor_models::backend::KvCacheSpec;
use candor_models::error::{ModelError, Result};
use candor_models::kv_rows::KvRows;
use half::f16;
use rayon::prelude::*;

/// The element type of a host KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvDtype {
    /// The reference.
    #[default]
    F32,
    F16,
    /// Blocks of 32 signed bytes and an f16 scale along each head row (`KvQ8`).
    Q8_0,
}

impl KvDtype {
    /// Bytes per cached value (34 / 32 for q8_0 blocks).
    pub fn bytes_per_value(self) -> f64 {
        match self {
            KvDtype::F32 => 4.0,
            KvDtype::F16 => 2.0,
            KvDtype::Q8_0 => std::mem::size_of::<KvQ8>() as f64 / KvQ8::VALUES as f64,
        }
    }
}

/// (K, V) per layer, of one element type.
enum Layers {
    F32(Vec<(Vec<f32>, Vec<f32>)>),
    F16(Vec<(Vec<f16>, Vec<f16>)>),
    Q8(Vec<(Vec<KvQ8>, Vec<KvQ8>)>),
}

/// One layer of the cache, as the attention kernel reads it.
pub enum LayerView<'a> {
    F32(PagedKv<'a, f32>),
    F16(PagedKv<'a, f16>),
    Q8(PagedKv<'a, KvQ8>),
}

pub struct CpuKvCache {
    spec: KvCacheSpec,
    layers: Layers,
}

impl CpuKvCache {
    pub fn new(spec: &KvCacheSpec, dtype: KvDtype) -> Result<Self> {
        if dtype == KvDtype::Q8_0 && !spec.head_dim.is_multiple_of(KvQ8::VALUES) {
            return Err(ModelError::Backend(format!(
                "a q8_0 KV cache keeps heads in blocks of {} values; this model's heads are {} \
                 wide (use f16 or f32)",
                KvQ8::VALUES,
                spec.head_dim
            )));
        }
        let row = spec.num_kv_heads * spec.head_dim;
        if let Some(bad) = spec.key_offsets.iter().flatten().find(|o| o.len() != row) {
            return Err(ModelError::Backend(format!(
                "a key offset of {} values for rows of {row}",
                bad.len()
            )));
        }
        let values = spec
            .num_blocks
            .checked_mul(spec.block_size)
            .and_then(|s| s.checked_mul(row))
            .ok_or_else(|| ModelError::Backend("KV cache size overflows".into()))?;
        // Zeroed vectors come from calloc: pages no sequence has reached are never resident.
        fn alloc<E: KvElement>(layers: usize, values: usize) -> Vec<(Vec<E>, Vec<E>)> {
            let len = values / E::VALUES;
            (0..layers)
                .map(|_| (vec![E::default(); len], vec![E::default(); len]))
                .collect()
        }
        let layers = match dtype {
            KvDtype::F32 => Layers::F32(alloc(spec.num_layers, values)),
            KvDtype::F16 => Layers::F16(alloc(spec.num_layers, values)),
            KvDtype::Q8_0 => Layers::Q8(alloc(spec.num_layers, values)),
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
                key_offsets: vec![],
                ..spec.clone()
            },
            layers: Layers::F32(vec![(k, v)]),
        })
    }

    pub fn dtype(&self) -> KvDtype {
        match self.layers {
            Layers::F32(_) => KvDtype::F32,
            Layers::F16(_) => KvDtype::F16,
            Layers::Q8(_) => KvDtype::Q8_0,
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
            Layers::Q8(l) => LayerView::Q8(view(l, layer, &self.spec)?),
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
            // A slot's heads in elements (whole q8_0 blocks: `new` checked the head width).
            let elems = row / E::VALUES;
            for (i, &slot) in slots.iter().enumerate() {
                let s = slot as usize * elems;
                E::narrow(&k[i * row..][..row], &mut kc[s..s + elems]);
                E::narrow(&v[i * row..][..row], &mut vc[s..s + elems]);
            }
            Ok(())
        }
        match &mut self.layers {
            Layers::F32(l) => scatter(l, layer, k, v, slots, row),
            Layers::F16(l) => scatter(l, layer, k, v, slots, row),
            Layers::Q8(l) => match self.spec.key_offsets.get(layer) {
                // Keys shifted by the layer's offset (`KvCacheSpec::key_offsets`), so a few
                // large, nearly constant channels do not set the step of their blocks.
                Some(Some(offset)) => {
                    let shifted: Vec<f32> = k
                        .chunks_exact(row)
                        .flat_map(|r| r.iter().zip(offset).map(|(x, c)| x - c))
                        .collect();
                    scatter(l, layer, &shifted, v, slots, row)
                }
                _ => scatter(l, layer, k, v, slots, row),
            },
        }
    }

    /// Every layer's block `src` copied over block `dst`, for each pair (blocks are
    /// contiguous runs of slots, so one `copy_within` per layer and side).
    pub fn copy_blocks(&mut self, copies: &[(u32, u32)]) -> Result<()> {
        self.spec.check_block_copies(copies)?;
        fn copy<E: KvElement>(
            layers: &mut [(Vec<E>, Vec<E>)],
            copies: &[(u32, u32)],
            values: usize,
        ) {
            let len = values / E::VALUES;
            for (k, v) in layers {
                for &(src, dst) in copies {
                    let (src, dst) = (src as usize * len, dst as usize * len);
                    k.copy_within(src..src + len, dst);
                    v.copy_within(src..src + len, dst);
                }
            }
        }
        let values = self.spec.block_values();
        match &mut self.layers {
            Layers::F32(l) => copy(l, copies, values),
            Layers::F16(l) => copy(l, copies, values),
            Layers::Q8(l) => copy(l, copies, values),
        }
        Ok(())
    }
}

impl CpuKvCache {
    /// Layer `layer`'s K and V rows of `slots` as f32 values (keys as stored: shifted by the
    /// layer's offset where it has one), for the ops that read cached rows other than
    /// attention (LFM2's short convolutions).
    pub fn layer_values(&self, layer: usize, slots: &[u32]) -> Result<(Vec<f32>, Vec<f32>)> {
        self.spec.check_slots(slots)?;
        let row = self.spec.num_kv_heads * self.spec.head_dim;
        fn gather<E: Widen>(
            layers: &[(Vec<E>, Vec<E>)],
            layer: usize,
            slots: &[u32],
            row: usize,
        ) -> Result<(Vec<f32>, Vec<f32>)> {
            let (k, v) = layers.get(layer).ok_or_else(|| no_layer(layer))?;
            let elems = row / E::VALUES;
            let side = |c: &[E]| {
                let mut out = Vec::with_capacity(slots.len() * row);
                for &s in slots {
                    let s = s as usize * elems;
                    c[s..s + elems].iter().for_each(|e| e.widen(&mut out));
                }
                out
            };
            Ok((side(k), side(v)))
        }
        match &self.layers {
            Layers::F32(l) => gather(l, layer, slots, row),
            Layers::F16(l) => gather(l, layer, slots, row),
            Layers::Q8(l) => gather(l, layer, slots, row),
        }
    }

    /// How `KvRows` name this cache's elements.
    pub fn encoding(&self) -> &'static str {
        match self.layers {
            Layers::F32(_) => "f32",
            Layers::F16(_) => "f16",
            Layers::Q8(_) => "q8_0",
        }
    }

    /// Bytes of one slot's K (or V) row in one layer.
    fn row_bytes(&self) -> usize {
        let row = self.spec.num_kv_heads * self.spec.head_dim;
        match self.layers {
            Layers::F32(_) => row * 4,
            Layers::F16(_) => row * 2,
            Layers::Q8(_) => row / KvQ8::VALUES * <KvQ8 as KvBytes>::BYTES,
        }
    }

    /// Every layer's K and V rows of `slots`, as stored.
    pub fn read_rows(&self, slots: &[u32]) -> Result<KvRows> {
        self.spec.check_slots(slots)?;
        fn gather<E: KvBytes + Sync>(
            layers: &[(Vec<E>, Vec<E>)],
            slots: &[u32],
            rows: &mut KvRows,
        ) {
            let elems = rows.row_bytes / E::BYTES;
            // A prompt's slots run through whole blocks: each run is one slice to encode.
            let runs = candor_models::kv_rows::slot_runs(slots);
            let row_bytes = rows.row_bytes;
            // Layers in parallel: the engine waits for the copy, and its first touch of the
            // fresh pages is most of its time.
            let pairs = layers.par_iter().zip(rows.layers.par_iter_mut());
            pairs.for_each(|((k, v), (kb, vb))| {
                kb.reserve_exact(slots.len() * row_bytes);
                vb.reserve_exact(slots.len() * row_bytes);
                for &(first, count) in &runs {
                    let (s, end) = (first * elems, (first + count) * elems);
                    E::put_all(&k[s..end], kb);
                    E::put_all(&v[s..end], vb);
                }
            });
        }
        let mut rows = KvRows::new(self.encoding(), self.row_bytes(), self.spec.num_layers);
        match &self.layers {
            Layers::F32(l) => gather(l, slots, &mut rows),
            Layers::F16(l) => gather(l, slots, &mut rows),
            Layers::Q8(l) => gather(l, slots, &mut rows),
        }
        Ok(rows)
    }

    /// `rows` (read from a cache like this one) written to `slots`; refused whole if they do
    /// not fit.
    pub fn write_rows(&mut self, slots: &[u32], rows: &KvRows) -> Result<()> {
        rows.check_fits(&self.spec, self.encoding(), self.row_bytes(), slots)?;
        fn scatter<E: KvBytes + Send>(
            layers: &mut [(Vec<E>, Vec<E>)],
            slots: &[u32],
            rows: &KvRows,
        ) {
            let elems = rows.row_bytes / E::BYTES;
            let row_bytes = rows.row_bytes;
            // Runs of slots and layers in parallel, as `read_rows` gathers them.
            let runs = candor_models::kv_rows::slot_runs(slots);
            let pairs = layers.par_iter_mut().zip(rows.layers.par_iter());
            pairs.for_each(|((k, v), (kb, vb))| {
                let mut at = 0;
                for &(first, count) in &runs {
                    let (s, end) = (first * elems, (first + count) * elems);
                    let bytes = at..at + count * row_bytes;
                    E::take_all(&kb[bytes.clone()], &mut k[s..end]);
                    E::take_all(&vb[bytes], &mut v[s..end]);
                    at += count * row_bytes;
                }
            });
        }
        match &mut self.layers {
            Layers::F32(l) => scatter(l, slots, rows),
            Layers::F16(l) => scatter(l, slots, rows),
            Layers::Q8(l) => scatter(l, slots, rows),
        }
        Ok(())
    }
}

/// A cache element's values as f32.
trait Widen: KvElement {
    fn widen(&self, out: &mut Vec<f32>);
}

impl Widen for f32 {
    fn widen(&self, out: &mut Vec<f32>) {
        out.push(*self);
    }
}

impl Widen for f16 {
    fn widen(&self, out: &mut Vec<f32>) {
        out.push(self.to_f32());
    }
}

impl Widen for KvQ8 {
    fn widen(&self, out: &mut Vec<f32>) {
        let d = self.d.to_f32();
        out.extend(self.qs.iter().map(|&q| d * q as f32));
    }
}

/// A cache element as little-endian bytes, for `KvRows`.
trait KvBytes: Sized {
    const BYTES: usize;
    /// The element's `BYTES` bytes written to `bytes`.
    fn write(&self, bytes: &mut [u8]);
    /// The element `bytes` (`BYTES` of them) hold.
    fn take(bytes: &[u8]) -> Self;
    /// `src`'s bytes appended to `out` (sized once, then filled: a push per element took
    /// most of a 33 MB slot save).
    fn put_all(src: &[Self], out: &mut Vec<u8>) {
        let at = out.len();
        out.resize(at + src.len() * Self::BYTES, 0);
        for (b, e) in out[at..].chunks_exact_mut(Self::BYTES).zip(src) {
            e.write(b);
        }
    }
    fn take_all(bytes: &[u8], dst: &mut [Self]) {
        for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(Self::BYTES)) {
            *d = Self::take(b);
        }
    }
}

impl KvBytes for f32 {
    const BYTES: usize = 4;
    fn write(&self, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.to_le_bytes());
    }
    fn take(b: &[u8]) -> Self {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl KvBytes for f16 {
    const BYTES: usize = 2;
    fn write(&self, bytes: &mut [u8]) {
        bytes.copy_from_slice(&self.to_le_bytes());
    }
    fn take(b: &[u8]) -> Self {
        f16::from_le_bytes([b[0], b[1]])
    }
}

/// Its scale, then its 32 quants (the layout of `KvQ8`'s fields, 34 bytes).
impl KvBytes for KvQ8 {
    const BYTES: usize = 2 + KvQ8::VALUES;
    fn write(&self, bytes: &mut [u8]) {
        bytes[..2].copy_from_slice(&self.d.to_le_bytes());
        for (b, &q) in bytes[2..].iter_mut().zip(&self.qs) {
            *b = q as u8;
        }
    }
    fn take(b: &[u8]) -> Self {
        let mut qs = [0i8; KvQ8::VALUES];
        for (q, &byte) in qs.iter_mut().zip(&b[2..]) {
            *q = byte as i8;
        }
        KvQ8 {
            d: f16::from_le_bytes([b[0], b[1]]),
            qs,
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
            key_offsets: vec![],
        }
    }

    /// Row `i` of K (V is its negation), values that f16 cannot all hold exactly.
    fn rows(n: usize) -> (Vec<f32>, Vec<f32>) {
        let k: Vec<f32> = (0..n * 8).map(|i| 0.1 + i as f32 / 3.0).collect();
        let v = k.iter().map(|x| -x).collect();
        (k, v)
    }

    fn stored(cache: &CpuKvCache, layer: usize, slot: usize) -> (Vec<f32>, Vec<f32>) {
        let width = cache.kv_heads() * cache.head_dim();
        let row = |s: &[f32]| s[slot * width..(slot + 1) * width].to_vec();
        let widen = |s: &[f16]| {
            s[slot * width..(slot + 1) * width]
                .iter()
                .map(|x| x.to_f32())
                .collect()
        };
        match cache.layer(layer).unwrap() {
            LayerView::F32(kv) => (row(kv.k), row(kv.v)),
            LayerView::F16(kv) => (widen(kv.k), widen(kv.v)),
            LayerView::Q8(kv) => {
                let blocks = width / 32;
                let values = |s: &[KvQ8]| -> Vec<f32> {
                    s[slot * blocks..(slot + 1) * blocks]
                        .iter()
                        .flat_map(KvQ8::values)
                        .collect()
                };
                (values(kv.k), values(kv.v))
            }
        }
    }

    /// A q8_0 cache keeps each head row as its blocks: what `KvQ8::quantize` makes of them, in
    /// the slot written; heads that are no whole number of blocks are refused.
    #[test]
    fn q8_rows_are_quantized_into_their_slots() {
        let spec = KvCacheSpec {
            head_dim: 64,
            ..spec()
        };
        let mut cache = CpuKvCache::new(&spec, KvDtype::Q8_0).unwrap();
        assert_eq!(cache.dtype(), KvDtype::Q8_0);
        let k: Vec<f32> = (0..2 * 128).map(|i| (i as f32 * 0.7).sin() * 5.0).collect();
        let v: Vec<f32> = k.iter().map(|x| x * -0.5).collect();
        cache.write(1, &k, &v, &[4, 1]).unwrap();
        for (i, slot) in [(0usize, 4usize), (1, 1)] {
            let (ks, vs) = stored(&cache, 1, slot);
            let want = |x: &[f32]| -> Vec<f32> {
                x[i * 128..(i + 1) * 128]
                    .chunks_exact(32)
                    .flat_map(|c| KvQ8::quantize(c).values())
                    .collect()
            };
            assert_eq!((ks, vs), (want(&k), want(&v)), "slot {slot}");
        }
        assert!(stored(&cache, 1, 0).0.iter().all(|&x| x == 0.0));
        assert!(
            cache.write(1, &k, &v, &[6, 1]).is_err(),
            "slot past the cache"
        );
        // A layer's key offset is subtracted from its keys before they are rounded; values
        // and the other layers keep theirs.
        let offset: Vec<f32> = (0..128)
            .map(|i| if i % 64 == 63 { 150.0 } else { 0.5 })
            .collect();
        let shifted = KvCacheSpec {
            key_offsets: vec![None, Some(offset.clone())],
            ..spec.clone()
        };
        let mut cache = CpuKvCache::new(&shifted, KvDtype::Q8_0).unwrap();
        cache.write(1, &k, &v, &[4, 1]).unwrap();
        cache.write(0, &k, &v, &[4, 1]).unwrap();
        let (ks, vs) = stored(&cache, 1, 4);
        let minus: Vec<f32> = k[..128].iter().zip(&offset).map(|(x, c)| x - c).collect();
        let want: Vec<f32> = minus
            .chunks_exact(32)
            .flat_map(|c| KvQ8::quantize(c).values())
            .collect();
        assert_eq!(ks, want);
        assert_eq!(vs, stored(&cache, 0, 4).1);
        assert_ne!(ks, stored(&cache, 0, 4).0);
        let wrong = KvCacheSpec {
            key_offsets: vec![None, Some(vec![0.0; 3])],
            ..spec.clone()
        };
        assert!(
            CpuKvCache::new(&wrong, KvDtype::Q8_0).is_err(),
            "offset length"
        );
        let odd = KvCacheSpec {
            head_dim: 48,
            ..spec
        };
        let e = CpuKvCache::new(&odd, KvDtype::Q8_0).err().expect("refused");
        assert!(e.to_string().contains("48 wide"), "{e}");
        assert!(CpuKvCache::new(&odd, KvDtype::F16).is_ok());
        assert_eq!(KvDtype::Q8_0.bytes_per_value(), 34.0 / 32.0);
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
                        KvDtype::Q8_0 => unreachable!("heads of 4 are no q8_0 block"),
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

    /// A copied block holds its source's rows in every layer, in every element type; the
    /// other blocks keep theirs; a block past the cache is an error that changes nothing.
    #[test]
    fn copied_blocks_hold_their_sources_rows_in_every_layer() {
        for (dtype, head_dim) in [(KvDtype::F32, 4), (KvDtype::F16, 4), (KvDtype::Q8_0, 64)] {
            let spec = KvCacheSpec { head_dim, ..spec() };
            let width = spec.num_kv_heads * head_dim;
            let mut cache = CpuKvCache::new(&spec, dtype).unwrap();
            // Block 0 is slots 0 and 1; block 1 holds one row, in slot 2.
            for layer in 0..2 {
                let k: Vec<f32> = (0..3 * width)
                    .map(|i| ((i + 7 * layer) as f32 * 0.37).sin() * 3.0)
                    .collect();
                let v: Vec<f32> = k.iter().map(|x| 0.5 - x).collect();
                cache.write(layer, &k, &v, &[0, 1, 2]).unwrap();
            }
            let before: Vec<_> = (0..2)
                .flat_map(|l| (0..6).map(move |s| (l, s)))
                .map(|(l, s)| stored(&cache, l, s))
                .collect();
            cache.copy_blocks(&[(0, 2)]).unwrap();
            for layer in 0..2 {
                let at = |s: usize| before[layer * 6 + s].clone();
                assert_eq!(stored(&cache, layer, 4), at(0), "{dtype:?} layer {layer}");
                assert_eq!(stored(&cache, layer, 5), at(1), "{dtype:?} layer {layer}");
                for slot in 0..4 {
                    assert_eq!(stored(&cache, layer, slot), at(slot), "{dtype:?}");
                }
            }
            assert!(cache.copy_blocks(&[(1, 0), (0, 3)]).is_err());
            assert_eq!(stored(&cache, 0, 0), before[0], "{dtype:?}: nothing copied");
        }
    }

    /// Rows read from one cache and written to other slots of another of the same encoding
    /// come back exactly as stored (q8_0's blocks, f16's rounding, every layer); a cache of
    /// another encoding, or slots past it, refuse them.
    #[test]
    fn rows_read_are_written_back_exactly_into_a_cache_of_their_encoding() {
        let spec = KvCacheSpec {
            head_dim: 32,
            ..spec()
        };
        let k: Vec<f32> = (0..3 * 64).map(|i| (i as f32 * 0.37).cos() * 3.0).collect();
        let v: Vec<f32> = k.iter().map(|x| x * 0.25 - 1.0).collect();
        for dtype in [KvDtype::F32, KvDtype::F16, KvDtype::Q8_0] {
            let mut from = CpuKvCache::new(&spec, dtype).unwrap();
            for layer in 0..2 {
                let k: Vec<f32> = k.iter().map(|x| x + layer as f32).collect();
                from.write(layer, &k, &v, &[1, 2, 3]).unwrap();
            }
            let rows = from.read_rows(&[1, 2, 3]).unwrap();
            assert_eq!((rows.rows(), rows.encoding.as_str()), (3, from.encoding()));
            let mut to = CpuKvCache::new(&spec, dtype).unwrap();
            to.write_rows(&[5, 0, 4], &rows).unwrap();
            for layer in 0..2 {
                for (a, b) in [(1, 5), (2, 0), (3, 4)] {
                    assert_eq!(
                        stored(&from, layer, a),
                        stored(&to, layer, b),
                        "{dtype:?} {layer} {a}"
                    );
                }
            }
            assert_eq!(to.read_rows(&[5, 0, 4]).unwrap(), rows, "{dtype:?}");
            assert!(to.write_rows(&[5, 0, 6], &rows).is_err(), "past the cache");
            assert!(to.read_rows(&[6]).is_err(), "past the cache");
        }
        let f16 = CpuKvCache::new(&spec, KvDtype::F16).unwrap();
        let rows = f16.read_rows(&[0]).unwrap();
        let mut f32 = CpuKvCache::new(&spec, KvDtype::F32).unwrap();
        assert!(f32.write_rows(&[0], &rows).is_err(), "another encoding");
    }
}
