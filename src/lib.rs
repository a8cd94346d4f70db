//! candor: LLM inference server and benchmark.
pub mod backend;
pub mod engine;
pub mod pull;
