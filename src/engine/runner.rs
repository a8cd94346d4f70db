//! The object-safe `Runner` the engine drives: a model and its backend and KV cache behind one
//! batched forward call, returning logits on the host. No generics leak past this point.
use super::error::EngineError;
use candor_models::backend::{Backend, DeviceInfo};
use candor_models::{Batch, DecoderModel, FlatBatch, ModelSpec};

/// Host logits, one row per requested position.
#[derive(Debug, Clone)]
pub struct Logits {
    pub rows: usize,
    pub vocab: usize,
    pub data: Vec<f32>,
}

impl Logits {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.vocab..(i + 1) * self.vocab]
    }
}

pub trait Runner: Send {
    fn spec(&self) -> &ModelSpec;
    fn device(&self) -> DeviceInfo;
    fn block_size(&self) -> usize;
    fn num_blocks(&self) -> usize;
    /// Bytes of one K or V element as the backend stores its KV cache.
    fn kv_element_bytes(&self) -> usize;
    /// Run one batched step (prefill chunks and decode tokens mixed).
    fn forward(&mut self, batch: &Batch) -> Result<Logits, EngineError>;
    /// Ops the backend ran on another device so far (a plugin's CPU fallback), by op name.
    fn fallback_ops(&self) -> Vec<(&'static str, u64)>;
}

pub struct ModelRunner<B: Backend> {
    backend: B,
    model: DecoderModel<B>,
    kv: B::KvCache,
    block_size: usize,
    num_blocks: usize,
}

impl<B: Backend> ModelRunner<B> {
    pub fn new(
        backend: B,
        model: DecoderModel<B>,
        num_blocks: usize,
        block_size: usize,
    ) -> Result<Self, EngineError> {
        let kv = backend.alloc_kv_cache(&model.kv_cache_spec(num_blocks, block_size))?;
        Ok(ModelRunner {
            backend,
            model,
            kv,
            block_size,
            num_blocks,
        })
    }
}

impl<B: Backend> Runner for ModelRunner<B> {
    fn spec(&self) -> &ModelSpec {
        self.model.spec()
    }

    fn device(&self) -> DeviceInfo {
        self.backend.info()
    }

    fn block_size(&self) -> usize {
        self.block_size
    }

    fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    fn kv_element_bytes(&self) -> usize {
        self.backend.kv_element_bytes()
    }

    fn fallback_ops(&self) -> Vec<(&'static str, u64)> {
        self.backend.fallback_ops()
    }

    fn forward(&mut self, batch: &Batch) -> Result<Logits, EngineError> {
        let vocab = self.model.spec().vocab_size;
        let flat = FlatBatch::new(batch, self.block_size, self.num_blocks, vocab)?;
        let rows = flat.logit_rows.len();
        let logits = self.model.forward(&self.backend, &mut self.kv, &flat)?;
        let data = self.backend.download(&logits)?;
        Ok(Logits { rows, vocab, data })
    }
}
