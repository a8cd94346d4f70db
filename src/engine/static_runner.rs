//! The runner of a static embedding model (`candor_models::static_embedding`): no layers, so a
//! step's "final hidden states" are its tokens' rows of the table, weighed so that their mean,
//! which mean pooling takes, is the model's embedding of the text. Like an encoder it reads
//! whole prompts and keeps no KV cache.
use super::error::EngineError;
use super::runner::{Logits, Runner};
use candor_models::backend::DeviceInfo;
use candor_models::lora::LoraAdapter;
use candor_models::static_embedding::StaticEmbedding;
use candor_models::{Batch, ModelSpec};

pub struct StaticRunner {
    model: StaticEmbedding,
    spec: ModelSpec,
    device: DeviceInfo,
    block_size: usize,
    num_blocks: usize,
}

impl StaticRunner {
    pub fn new(
        model: StaticEmbedding,
        spec: ModelSpec,
        device: DeviceInfo,
        blocks: usize,
        block_size: usize,
    ) -> Self {
        StaticRunner {
            model,
            spec,
            device,
            block_size,
            num_blocks: blocks,
        }
    }
}

impl Runner for StaticRunner {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn device(&self) -> DeviceInfo {
        self.device.clone()
    }
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn num_blocks(&self) -> usize {
        self.num_blocks
    }
    fn kv_bytes_per_value(&self) -> f64 {
        0.0
    }
    fn forward(&mut self, batch: &Batch) -> Result<Logits, EngineError> {
        let dim = self.model.dim();
        let mut hidden = Vec::new();
        for (i, seq) in batch.seqs.iter().enumerate() {
            if seq.start_pos != 0 || !seq.logit_rows().is_empty() {
                return Err(EngineError::Backend(format!(
                    "sequence {i}: a static embedding model embeds whole texts; it does not \
                     generate"
                )));
            }
            let rows = self.model.rows(&seq.tokens).map_err(EngineError::Model)?;
            for r in seq.hidden_rows() {
                hidden.extend_from_slice(&rows[r * dim..(r + 1) * dim]);
            }
        }
        Ok(Logits {
            vocab: self.spec.vocab_size,
            hidden,
            hidden_size: dim,
            ..Default::default()
        })
    }
    fn copy_blocks(&mut self, _copies: &[(u32, u32)]) -> Result<(), EngineError> {
        Ok(())
    }
    fn fallback_ops(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    fn whole_prompts(&self) -> bool {
        true
    }
    fn lora_slots(&self) -> usize {
        0
    }
    fn set_lora_slot(
        &mut self,
        _slot: usize,
        _adapter: Option<LoraAdapter>,
    ) -> Result<(), EngineError> {
        Err(EngineError::Backend(
            "LoRA adapters run on decoders; this model is a static embedding table".into(),
        ))
    }
}
