//! candor: LLM inference server and benchmark.
pub mod backend;
pub mod bench;
pub mod cli;
pub mod engine;
pub mod error;
pub mod loadgen;
pub mod pull;
pub mod report;
pub mod rss;
pub mod server;
