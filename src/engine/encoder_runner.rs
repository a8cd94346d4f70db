//! The runner of a bidirectional encoder (`candor_models::encoder`): each step's prompts run
//! whole, in one pass (the engine hands them so: `whole_prompts`), and the final hidden states
//! the step asks for come back for pooling, or each prompt's sparse vector over the
//! vocabulary (a SPLADE masked LM's, pooled on the device; BGE-M3's lexical weights). An
//! encoder has no KV cache, so the engine's blocks are bookkeeping only: nothing is stored or
//! copied, and no prefix is cached.
use super::error::EngineError;
use super::runner::{Logits, Runner};
use candle_core::Tensor;
use candor_models::backend::DeviceInfo;
use candor_models::encoder::{token_types, BertEncoder, EncoderInput, SparseHead};
use candor_models::lora::LoraAdapter;
use candor_models::{Batch, LogitsWanted, ModelSpec};

pub struct EncoderRunner {
    encoder: BertEncoder,
    /// The head that makes sparse vectors (`LogitsWanted::Sparse`): a SPLADE checkout's
    /// masked LM, BGE-M3's lexical layer.
    sparse: Option<SparseHead>,
    spec: ModelSpec,
    device: DeviceInfo,
    /// The pair separator the token types are read from (`[SEP]`).
    separator: Option<u32>,
    block_size: usize,
    num_blocks: usize,
    /// The CPU threads a pass runs on (None: the device's own, CUDA).
    threads: Option<rayon::ThreadPool>,
}

impl EncoderRunner {
    /// `blocks` of `block_size` tokens to account for (the engine admits by them; they hold
    /// nothing); `threads` is the CPU pool a pass runs in, where it runs on the CPU.
    pub fn new(
        encoder: BertEncoder,
        sparse: Option<SparseHead>,
        device: DeviceInfo,
        separator: Option<u32>,
        blocks: usize,
        block_size: usize,
        threads: Option<rayon::ThreadPool>,
    ) -> Self {
        EncoderRunner {
            spec: encoder.config().spec(),
            encoder,
            sparse,
            device,
            separator,
            block_size,
            num_blocks: blocks,
            threads,
        }
    }

    fn pass(&self, batch: &Batch) -> Result<Logits, EngineError> {
        let type_vocab = self.encoder.config().type_vocab_size;
        let mut types = Vec::with_capacity(batch.seqs.len());
        for (i, seq) in batch.seqs.iter().enumerate() {
            if seq.start_pos != 0 {
                return Err(EngineError::Backend(format!(
                    "sequence {i} starts at position {}: an encoder reads whole prompts",
                    seq.start_pos
                )));
            }
            if !seq.logit_rows().is_empty() {
                return Err(EngineError::Backend(
                    "an encoder has no language-model head: it embeds and classifies, it does \
                     not generate"
                        .into(),
                ));
            }
            types.push(token_types(&seq.tokens, self.separator, type_vocab));
        }
        let inputs: Vec<EncoderInput> = (batch.seqs.iter().zip(&types))
            .map(|(seq, type_ids)| EncoderInput {
                ids: &seq.tokens,
                type_ids,
            })
            .collect();
        let states = self.encoder.forward(&inputs)?;
        let mut rows = Vec::new();
        let mut sparse = Vec::new();
        let mut first = 0u32;
        for seq in &batch.seqs {
            rows.extend(seq.hidden_rows().map(|r| first + r as u32));
            if seq.logits == LogitsWanted::Sparse {
                let head = self.sparse.as_ref().ok_or_else(|| {
                    EngineError::Backend(
                        "a sparse vector needs a SPLADE masked LM's or BGE-M3's lexical head; \
                         this encoder has neither"
                            .into(),
                    )
                })?;
                let own = states.narrow(0, first as usize, seq.tokens.len());
                let vocab = self.spec.vocab_size;
                sparse.extend(head.pool(&own.map_err(model)?, &seq.tokens, vocab)?);
            }
            first += seq.tokens.len() as u32;
        }
        let hidden_size = self.spec.hidden_size;
        let hidden = match rows.is_empty() {
            true => Vec::new(),
            false => {
                let n = rows.len();
                let index = Tensor::from_vec(rows, n, self.encoder.device()).map_err(model)?;
                let picked = states.index_select(&index, 0).map_err(model)?;
                picked
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(model)?
            }
        };
        Ok(Logits {
            vocab: self.spec.vocab_size,
            hidden,
            hidden_size,
            sparse,
            ..Default::default()
        })
    }
}

fn model(e: candle_core::Error) -> EngineError {
    EngineError::Model(e.into())
}

impl Runner for EncoderRunner {
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
        // Nothing is cached.
        0.0
    }
    fn forward(&mut self, batch: &Batch) -> Result<Logits, EngineError> {
        match &self.threads {
            Some(pool) => pool.install(|| self.pass(batch)),
            None => self.pass(batch),
        }
    }
    fn copy_blocks(&mut self, _copies: &[(u32, u32)]) -> Result<(), EngineError> {
        // The blocks hold nothing to copy.
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
            "LoRA adapters run on decoders; this model is an encoder".into(),
        ))
    }
}
