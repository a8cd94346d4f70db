//! A runner whose forward pass is a closure, so each engine test scripts what a step returns
//! (tests only).
use super::error::EngineError;
use super::runner::{Logits, Runner};
use candor_models::backend::DeviceInfo;
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
