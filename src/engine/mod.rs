//! The engine: runners over a paged KV cache, block allocation, sampling, generation.
pub mod banned;
pub mod block_manager;
pub mod candidates;
pub mod dense;
pub mod dry;
pub mod encoder_runner;
pub mod error;
#[cfg(test)]
pub(crate) mod fake_runner;
pub mod generate;
pub mod grammar;
pub mod infill;
pub mod load;
pub mod load_encoder;
mod load_sparse;
pub mod load_static;
pub mod mirostat;
pub mod op_profile;
pub mod penalties;
pub mod perplexity;
pub mod pick;
pub mod pooling;
pub mod runner;
pub mod sampler;
pub mod sampler_order;
pub mod saved_prompts;
pub mod scheduler;
pub mod speculate;
pub mod state_cache;
pub mod static_runner;
pub mod stats;
pub mod temperature;
pub mod thought;

pub use block_manager::{BlockManager, BlockTable};
pub use error::EngineError;
pub use runner::{Logits, ModelRunner, Runner};
