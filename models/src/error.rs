//! Errors of the model layer: loading, configuration, forward.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a model: {reason}")]
    NotAModel { path: String, reason: String },
    #[error("invalid GGUF file {path}: {reason}")]
    BadGguf { path: String, reason: String },
    #[error("invalid safetensors model {path}: {reason}")]
    BadSafetensors { path: String, reason: String },
    #[error(
        "unsupported architecture `{0}` (supported: llama, mistral, mixtral, qwen2, qwen2_moe, \
         qwen3, qwen3_moe, gemma2, gemma3, phi, phi3, gpt2, gpt_neox, falcon, deepseek_v2, deepseek_v3, glm4, glm4_moe, olmo2, \
         olmo3, olmoe, gpt_oss, granite, granitemoe, granitemoeshared, smollm3, exaone4, ernie4_5, \
         seed_oss, hunyuan_v1_dense, cohere, cohere2, starcoder2, stablelm, nemotron, lfm2; encoders: bert, roberta, xlm-roberta)"
    )]
    UnsupportedArch(String),
    #[error("unsupported tensor type {dtype} for tensor {tensor}")]
    UnsupportedDtype { tensor: String, dtype: String },
    #[error("config error: {0}")]
    Config(String),
    #[error("missing tensor `{0}` in the weights")]
    MissingTensor(String),
    #[error("config disagrees with the weights: tensor `{tensor}` has shape {actual:?}, the config implies {expected:?}")]
    ShapeMismatch {
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("invalid LoRA adapter {path}: {reason}")]
    BadAdapter { path: String, reason: String },
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    #[error("token id {id} is out of the vocabulary (size {vocab})")]
    TokenOutOfVocab { id: u32, vocab: usize },
    #[error("backend error: {0}")]
    Backend(String),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error(transparent)]
    Template(#[from] crate::chat_template::TemplateError),
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Backend(candle_message(&e))
    }
}

/// A candle error's message without the backtrace candle appends when RUST_BACKTRACE is set.
pub fn candle_message(e: &candle_core::Error) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or("").trim().to_string()
}

pub type Result<T> = std::result::Result<T, ModelError>;
