//! candor-models: everything about a model that is independent of where it runs: configs,
//! weight files, tokenizers, chat templates, and the forward pass written once over `Backend`.
pub mod arch;
mod attention_heads;
pub mod backend;
pub mod batch;
pub mod chat_template;
pub mod classifier;
pub mod decoder;
pub mod dummy;
pub mod encoder;
pub mod error;
pub mod generation_config;
pub mod key_offset;
pub mod kv_rows;
mod layer_loader;
pub mod loader;
pub mod lora;
pub mod mla;
pub mod moe;
pub mod partial_rope;
pub mod projection;
pub mod py_json;
mod py_repr;
mod query_temperature;
pub mod rope;
pub mod sentence_transformers;
pub mod short_conv;
pub mod spec;
pub mod static_embedding;
pub mod tokenizer;
pub mod weights;
pub mod xielu;

pub use backend::Backend;
pub use batch::{Batch, FlatBatch, LogitsWanted, SeqInput};
pub use decoder::{DecoderModel, StepOutputs};
pub use error::{ModelError, Result};
pub use spec::ModelSpec;
