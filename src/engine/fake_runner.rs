//! A runner whose forward pass is a closure, so each engine test scripts what a step returns
//! (tests only).
use super::error::EngineError;
use super::runner::{Logits, Runner};
use candor_models::backend::DeviceInfo;
use candor_models::kv_rows::KvRows;
use candor_models::{Batch, ModelSpec};
use std::sync::{Arc, Mutex};

/// The `(src, dst)` block copies a runner was asked for, in order.
pub type CopyLog = Arc<Mutex<Vec<(u32, u32)>>>;

pub struct FakeRunner {
    spec: ModelSpec,
    num_blocks: usize,
    block_size: usize,
    forward: Box<dyn FnMut(&Batch) -> Logits + Send>,
    /// Per LoRA slot: whether an adapter is in it (a step naming an empty one fails, as the
    /// model's does).
    lora: Vec<bool>,
    /// Every block copy asked for, in order; None makes copies fail.
    copies: Option<CopyLog>,
    /// Whether it asks for whole prompts (`Runner::whole_prompts`, an encoder's).
    whole_prompts: bool,
    /// The K/V rows written to each cache slot (`Runner::write_kv_rows`, block copies); a
    /// slot never written reads as its own number.
    kv: std::collections::HashMap<u32, Vec<u8>>,
}

impl FakeRunner {
    /// `num_blocks` KV blocks of 16 tokens, the spec of Qwen2.5 0.5B.
    pub fn new(num_blocks: usize, forward: impl FnMut(&Batch) -> Logits + Send + 'static) -> Self {
        FakeRunner {
            spec: candor_models::dummy::find("qwen2.5", "0.5b")
                .and_then(|s| s.spec())
                .expect("dummy spec"),
            num_blocks,
            block_size: 16,
            forward: Box::new(forward),
            lora: Vec::new(),
            copies: Some(Arc::default()),
            whole_prompts: false,
            kv: Default::default(),
        }
    }

    /// A runner that reads each prompt whole, in one step (an encoder's).
    pub fn reading_whole_prompts(mut self) -> Self {
        self.whole_prompts = true;
        self
    }

    /// The block copies this runner will be asked for (`Runner::copy_blocks`), in order.
    pub fn copies(&self) -> CopyLog {
        self.copies.clone().unwrap_or_default()
    }

    /// A runner whose block copies fail (a device error).
    pub fn failing_copies(mut self) -> Self {
        self.copies = None;
        self
    }

    pub fn with_block_size(mut self, block_size: usize) -> Self {
        self.block_size = block_size;
        self
    }

    /// A vocabulary of `vocab` tokens (the logits the closure returns must have as many).
    pub fn with_vocab(mut self, vocab: usize) -> Self {
        self.spec.vocab_size = vocab;
        self
    }
}

impl FakeRunner {
    fn kv_row(&self, slot: u32) -> Vec<u8> {
        self.kv
            .get(&slot)
            .cloned()
            .unwrap_or_else(|| slot.to_le_bytes().to_vec())
    }
}

impl Runner for FakeRunner {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn device(&self) -> DeviceInfo {
        DeviceInfo::default()
    }
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn num_blocks(&self) -> usize {
        self.num_blocks
    }
    fn kv_bytes_per_value(&self) -> f64 {
        4.0
    }
    fn whole_prompts(&self) -> bool {
        self.whole_prompts
    }
    fn forward(&mut self, batch: &Batch) -> Result<Logits, EngineError> {
        let absent = |a: u32| !self.lora.get(a as usize).copied().unwrap_or(false);
        if let Some(a) = batch
            .seqs
            .iter()
            .flat_map(|s| s.lora.slots())
            .find(|&a| absent(a))
        {
            return Err(EngineError::Backend(format!("LoRA slot {a} is empty")));
        }
        Ok((self.forward)(batch))
    }
    fn fallback_ops(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    fn copy_blocks(&mut self, copies: &[(u32, u32)]) -> Result<(), EngineError> {
        let log = self
            .copies
            .as_ref()
            .ok_or_else(|| EngineError::Backend("block copies fail on this runner".into()))?;
        log.lock()
            .map_err(|_| EngineError::Backend("copy log poisoned".into()))?
            .extend_from_slice(copies);
        let bs = self.block_size as u32;
        for &(src, dst) in copies {
            for o in 0..bs {
                let row = self.kv_row(src * bs + o);
                self.kv.insert(dst * bs + o, row);
            }
        }
        Ok(())
    }
    fn read_kv_rows(&self, slots: &[u32]) -> Result<KvRows, EngineError> {
        let mut rows = KvRows::new("fake", 4, 1);
        for &slot in slots {
            let row = self.kv_row(slot);
            rows.layers[0].0.extend_from_slice(&row);
            rows.layers[0].1.extend_from_slice(&row);
        }
        Ok(rows)
    }
    fn write_kv_rows(&mut self, slots: &[u32], rows: &KvRows) -> Result<(), EngineError> {
        if rows.encoding != "fake" || rows.rows() != slots.len() {
            return Err(EngineError::Backend("rows of another cache".into()));
        }
        for (&slot, row) in slots.iter().zip(rows.layers[0].0.chunks_exact(4)) {
            self.kv.insert(slot, row.to_vec());
        }
        Ok(())
    }
    fn lora_slots(&self) -> usize {
        self.lora.len()
    }
    fn set_lora_slot(
        &mut self,
        slot: usize,
        adapter: Option<candor_models::lora::LoraAdapter>,
    ) -> Result<(), EngineError> {
        if slot == self.lora.len() {
            self.lora.push(false);
        }
        match self.lora.get_mut(slot) {
            Some(present) => *present = adapter.is_some(),
            None => return Err(EngineError::Backend(format!("no LoRA slot {slot}"))),
        }
        Ok(())
    }
}
