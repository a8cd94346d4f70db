//! Loading a static embedding model (Model2Vec, sentence-transformers' `StaticEmbedding`) for
//! serving: its table on the host behind `StaticRunner`, its tokenizer without special tokens
//! (both tokenize so), mean pooling (its embedding is the mean of its tokens' rows), and the
//! prompts of its sentence-transformers files. Inputs are as long as Model2Vec's `max_length`
//! (512 by default), or unbounded up to the served context for sentence-transformers'.
use super::block_manager::BLOCK_SIZE;
use super::error::EngineError;
use super::load::{checkout_tokenizer, fitting, LoadOptions, LoadedModel};
use super::pooling::Pooling;
use super::static_runner::StaticRunner;
use crate::backend::BackendChoice;
use candor_models::backend::Backend;
use candor_models::encoder::{EncoderActivation, EncoderConfig, Family};
use candor_models::generation_config::GenerationDefaults;
use candor_models::loader::ModelFormat;
use candor_models::spec::Arch;
use candor_models::static_embedding::StaticEmbedding;
use candor_models::ModelError;
use std::path::Path;

/// The positions a static model without a `max_length` is said to read: its mean has no
/// limit; the served context (`--max-model-len`) bounds an input.
const UNBOUNDED: usize = 1 << 20;

pub fn load_static(
    path: &Path,
    mut model: StaticEmbedding,
    opts: &LoadOptions,
) -> Result<LoadedModel, EngineError> {
    if !matches!(opts.backend, BackendChoice::Cpu) {
        return Err(refused(
            "a static embedding model is a table lookup served on the CPU: serve it with \
             --backend cpu",
        ));
    }
    if !opts.lora.is_empty() || !opts.classifier_tokens.is_empty() {
        return Err(refused(
            "a static embedding model has no layers for LoRA adapters and no language-model \
             head to classify with",
        ));
    }
    let tokenizer = match checkout_tokenizer(&model.tokenizer_dir)? {
        Some(tok) => fitting(
            tok.without_truncation().map_err(ModelError::from)?,
            model.tokens(),
        )?,
        None => {
            return Err(refused(
                "a static embedding model without its tokenizer.json",
            ))
        }
    };
    model.leave_out_unknown(&tokenizer);
    // The spec any model has: its width, vocabulary and context; no layers.
    let config = EncoderConfig {
        family: Family::Bert,
        vocab_size: model.tokens(),
        hidden_size: model.dim(),
        num_layers: 0,
        num_heads: 1,
        intermediate_size: 0,
        max_position_embeddings: model.max_length.unwrap_or(UNBOUNDED),
        type_vocab_size: 1,
        layer_norm_eps: 0.0,
        activation: EncoderActivation::GeluErf,
        position_offset: 0,
        classifies: false,
        rotary_theta: None,
        rotary_divisor: 1.0,
        gated: false,
        local_attention: None,
    };
    let mut spec = config.spec();
    spec.arch = Arch::StaticEmbedding;
    let info = crate::backend::cpu::CpuBackend::new(opts.threads).info();
    let blocks = opts.kv_tokens.div_ceil(BLOCK_SIZE).max(1);
    let runner = StaticRunner::new(model, spec.clone(), info, blocks, BLOCK_SIZE);
    Ok(LoadedModel {
        runner: Box::new(runner),
        tokenizer: Some(tokenizer),
        chat_template: None,
        tool_use_template: None,
        spec,
        path: path.to_path_buf(),
        format: ModelFormat::Safetensors,
        quantization: None,
        parameters: None,
        pooling: Some(Pooling::Mean),
        dense: None,
        classifier: None,
        generates: false,
        sparse: false,
        colbert: None,
        token_weights: None,
        static_sparse: None,
        token_classifier: None,
        generation: Ok(GenerationDefaults::default()),
    })
}

fn refused(message: &str) -> EngineError {
    EngineError::Model(ModelError::Config(message.into()))
}
