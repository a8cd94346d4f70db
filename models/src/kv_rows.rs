//! A KV cache's rows moved in and out as bytes (`Backend::read_kv_rows` / `write_kv_rows`):
//! what a prompt cache saved to disk holds, so a long prompt computed once is not computed
//! again after a restart (llama-server's slot save and restore).
//!
//! Rows go as the cache stores them (f16 as f16, q8_0 as its blocks, keys as shifted by the
//! layer's offset): a restore writes back exactly what was read, with no rounding on the way.
//! So only a cache of the same encoding and row width can take them.
use crate::backend::KvCacheSpec;
use crate::error::{ModelError, Result};

/// Every layer's K and V rows of some cache slots, in slot order.
#[derive(Debug, Clone, PartialEq)]
pub struct KvRows {
    /// How the cache stores a value: "f32", "f16", "bf16" or "q8_0" (little-endian elements).
    pub encoding: String,
    /// Bytes of one slot's K (or V) row in one layer (`kv_heads × head_dim` values).
    pub row_bytes: usize,
    /// Per layer, K then V: `rows × row_bytes` bytes each.
    pub layers: Vec<(Vec<u8>, Vec<u8>)>,
}

impl KvRows {
    /// Empty rows of `layers` layers, to be filled by a cache's reader.
    pub fn new(encoding: &str, row_bytes: usize, layers: usize) -> Self {
        KvRows {
            encoding: encoding.into(),
            row_bytes,
            layers: vec![(Vec::new(), Vec::new()); layers],
        }
    }

    /// Slots' rows held (those of the first layer's K).
    pub fn rows(&self) -> usize {
        match (self.layers.first(), self.row_bytes) {
            (Some((k, _)), b) if b > 0 => k.len() / b,
            _ => 0,
        }
    }

    /// Bytes held over every layer and side.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Whether these rows can be written to `slots` of a cache of `spec` that stores values
    /// as `encoding`, `row_bytes` a row: the same encoding and width, one row per slot in
    /// every layer and side, every slot inside the cache.
    pub fn check_fits(
        &self,
        spec: &KvCacheSpec,
        encoding: &str,
        row_bytes: usize,
        slots: &[u32],
    ) -> Result<()> {
        if self.encoding != encoding || self.row_bytes != row_bytes {
            return Err(refused(format!(
                "rows of {} bytes in {} for a cache of {row_bytes}-byte rows in {encoding}",
                self.row_bytes, self.encoding
            )));
        }
        if self.layers.len() != spec.num_layers {
            return Err(refused(format!(
                "rows of {} layers for a cache of {}",
                self.layers.len(),
                spec.num_layers
            )));
        }
        let want = slots.len() * row_bytes;
        if let Some((k, v)) = self
            .layers
            .iter()
            .find(|(k, v)| k.len() != want || v.len() != want)
        {
            return Err(refused(format!(
                "{} and {} bytes of K and V for {} slots of {row_bytes} bytes",
                k.len(),
                v.len(),
                slots.len()
            )));
        }
        spec.check_slots(slots)
    }

    /// Layer `layer`'s K and V rows widened to f32, as stored (keys shifted by the layer's
    /// offset where a q8_0 cache has one): what a host reads back of a device's cache.
    pub fn layer_values(&self, layer: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let (k, v) = self
            .layers
            .get(layer)
            .ok_or_else(|| refused(format!("no layer {layer} of {}", self.layers.len())))?;
        Ok((widen(&self.encoding, k)?, widen(&self.encoding, v)?))
    }
}

/// Little-endian elements of `encoding` as f32 values.
fn widen(encoding: &str, bytes: &[u8]) -> Result<Vec<f32>> {
    use half::{bf16, f16};
    let pairs = || bytes.chunks_exact(2).map(|b| [b[0], b[1]]);
    Ok(match encoding {
        "f32" => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "f16" => pairs().map(|b| f16::from_le_bytes(b).to_f32()).collect(),
        "bf16" => pairs().map(|b| bf16::from_le_bytes(b).to_f32()).collect(),
        // Blocks of an f16 scale and 32 signed bytes (the CPU cache's `KvQ8`).
        "q8_0" => bytes
            .chunks_exact(34)
            .flat_map(|b| {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                b[2..].iter().map(move |&q| d * q as i8 as f32)
            })
            .collect(),
        other => return Err(refused(format!("no reading of {other} rows as values"))),
    })
}

/// `slots` as runs of consecutive slots, `(first, count)`, in order: a sequence's slots run
/// through whole blocks, so a device moves a block's rows in one copy, not one per row.
pub fn slot_runs(slots: &[u32]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &s in slots {
        let s = s as usize;
        match runs.last_mut() {
            Some((first, count)) if *first + *count == s => *count += 1,
            _ => runs.push((s, 1)),
        }
    }
    runs
}

impl KvCacheSpec {
    /// Slots the cache holds (`num_blocks × block_size`).
    pub fn num_slots(&self) -> usize {
        self.num_blocks * self.block_size
    }

    /// An error naming the first of `slots` past the cache, if one is.
    pub fn check_slots(&self, slots: &[u32]) -> Result<()> {
        match slots.iter().find(|&&s| s as usize >= self.num_slots()) {
            Some(s) => Err(refused(format!(
                "slot {s} past a cache of {}",
                self.num_slots()
            ))),
            None => Ok(()),
        }
    }
}

fn refused(message: String) -> ModelError {
    ModelError::Backend(format!("KV rows: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> KvCacheSpec {
        KvCacheSpec {
            num_layers: 2,
            num_blocks: 2,
            block_size: 4,
            num_kv_heads: 1,
            head_dim: 2,
            key_offsets: vec![],
        }
    }

    #[test]
    fn layer_values_widen_every_encoding() {
        let half = |x: f32| half::f16::from_f32(x).to_le_bytes();
        let mut q8 = half(0.5).to_vec();
        q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
        for (encoding, bytes, want) in [
            ("f32", 1.5f32.to_le_bytes().to_vec(), vec![1.5]),
            ("f16", half(-2.25).to_vec(), vec![-2.25]),
            (
                "bf16",
                half::bf16::from_f32(3.0).to_le_bytes().to_vec(),
                vec![3.0],
            ),
            (
                "q8_0",
                q8,
                (0..32).map(|i| (i as f32 - 16.0) * 0.5).collect(),
            ),
        ] {
            let rows = KvRows {
                encoding: encoding.into(),
                row_bytes: bytes.len(),
                layers: vec![(bytes.clone(), bytes)],
            };
            let (k, v) = rows.layer_values(0).unwrap();
            assert_eq!((&k, &v), (&want, &want), "{encoding}");
            assert!(rows.layer_values(1).is_err());
        }
    }

    fn rows(n: usize) -> KvRows {
        let side = vec![7u8; n * 8];
        KvRows {
            encoding: "f32".into(),
            row_bytes: 8,
            layers: vec![(side.clone(), side); 2],
        }
    }

    #[test]
    fn rows_fit_a_cache_of_their_encoding_width_and_layers_only() {
        let spec = spec();
        assert_eq!(rows(3).rows(), 3);
        assert_eq!(rows(3).bytes(), 3 * 8 * 4);
        rows(3).check_fits(&spec, "f32", 8, &[0, 1, 7]).unwrap();
        for (encoding, width, slots) in [
            ("f16", 8, vec![0, 1, 2]),
            ("f32", 4, vec![0, 1, 2]),
            ("f32", 8, vec![0, 1]),
            ("f32", 8, vec![0, 1, 8]),
        ] {
            let e = rows(3).check_fits(&spec, encoding, width, &slots);
            assert!(e.is_err(), "{encoding} {width} {slots:?}");
        }
        let mut one_layer = rows(3);
        one_layer.layers.pop();
        assert!(one_layer.check_fits(&spec, "f32", 8, &[0, 1, 2]).is_err());
        assert_eq!(KvRows::new("q8_0", 34, 2).rows(), 0);
    }

    #[test]
    fn slots_group_into_runs_of_consecutive_slots() {
        assert_eq!(slot_runs(&[]), vec![]);
        assert_eq!(
            slot_runs(&[4, 5, 6, 7, 0, 1, 9, 8]),
            vec![(4, 4), (0, 2), (9, 1), (8, 1)]
        );
    }
}
