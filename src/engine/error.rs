//! Errors of the engine layer.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] candor_models::ModelError),
    #[error("out of KV cache blocks: need {needed}, {free} free")]
    OutOfBlocks { needed: usize, free: usize },
    #[error("prompt of {prompt} tokens plus {max_new} new tokens exceeds the context of {context} tokens")]
    ContextTooLong {
        prompt: usize,
        max_new: usize,
        context: usize,
    },
    #[error("empty prompt: at least one token is needed")]
    EmptyPrompt,
    #[error("invalid sampling parameter: {0}")]
    BadSampling(String),
    /// A perplexity run that cannot score anything (text or chunk too short).
    #[error("perplexity: {0}")]
    Perplexity(String),
    /// The chosen backend cannot be used (not built in, device missing, plugin rejected).
    #[error("backend: {0}")]
    Backend(String),
}
