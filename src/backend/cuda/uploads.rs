//! Host arrays a forward pass sends once per layer (positions, KV slots, the packed attention
//! metadata) or once per model (RoPE frequencies, attention sinks, ALiBi slopes) are uploaded
//! once: each kind keeps its last upload and reuses it while the host data is equal. Comparing
//! a few hundred integers on the host is far cheaper than a host-to-device copy and its
//! synchronisation on every layer.
use super::block_table::PackedBatch;
use super::kernels::DeviceBatch;
use candle_core::{Device, Tensor};
use candor_models::error::Result;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct UploadCache {
    u32s: Mutex<HashMap<&'static str, (Vec<u32>, Tensor)>>,
    /// RoPE tables, attention sinks and ALiBi slopes by their bits (a model has one or two
    /// tables and a set of sinks or slopes per layer): for data fixed for the model's life only, as nothing is evicted.
    f32s: Mutex<HashMap<Vec<u32>, Tensor>>,
    batch: Mutex<Option<(PackedBatch, DeviceBatch)>>,
}

impl UploadCache {
    /// `data` as a u32 tensor on `device`, reusing the last upload of `kind` when equal.
    pub fn u32s(&self, device: &Device, kind: &'static str, data: &[u32]) -> Result<Tensor> {
        let mut map = self.u32s.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((host, t)) = map.get(kind) {
            if host.as_slice() == data {
                return Ok(t.clone());
            }
        }
        let t = Tensor::from_slice(data, data.len(), device)?;
        map.insert(kind, (data.to_vec(), t.clone()));
        Ok(t)
    }

    /// `data` as an f32 tensor on `device`, uploaded once per distinct content.
    pub fn f32s(&self, device: &Device, data: &[f32]) -> Result<Tensor> {
        let key: Vec<u32> = data.iter().map(|v| v.to_bits()).collect();
        let mut map = self.f32s.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = map.get(&key) {
            return Ok(t.clone());
        }
        let t = Tensor::from_slice(data, data.len(), device)?;
        map.insert(key, t.clone());
        Ok(t)
    }

    /// The packed attention metadata on `device`, reusing the last upload when equal.
    pub fn batch(&self, device: &Device, packed: PackedBatch) -> Result<DeviceBatch> {
        let mut last = self.batch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((host, dev)) = last.as_ref() {
            if *host == packed {
                return Ok(dev.clone());
            }
        }
        let dev = packed.to_device(device)?;
        *last = Some((packed, dev.clone()));
        Ok(dev)
    }
}
