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
    /// A PyTorch checkpoint that cannot be rewritten as safetensors (`weights::pytorch`).
    #[error("unreadable PyTorch checkpoint {path}: {reason}")]
    BadCheckpoint { path: String, reason: String },
    #[error(
        "unsupported architecture `{0}` (checkouts: {hf}; vision-language checkouts served as \
         their text model: {wrappers}; GGUF: {gguf}; encoders: bert, roberta, xlm-roberta, camembert, \
         nomic_bert, modernbert, gte (`new`), distilbert)",
        hf = crate::arch::HF_MODEL_TYPES.join(", "),
        wrappers = crate::arch::text_model_wrappers().join(", "),
        gguf = crate::arch::GGUF_ARCHITECTURES.join(", ")
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
