//! Command-line interface: `candor serve`, `candor run-batch`, `candor generate`, `candor
//! bench`, `candor report`, `candor pull`, `candor devices`, `candor perplexity`.
pub mod batch_urls;
pub mod bench;
pub mod devices;
pub mod dummy;
pub mod generate;
pub mod lora_args;
pub mod model_args;
pub mod perplexity;
pub mod pull;
pub mod report;
pub mod run_batch;
pub mod sampling_args;
pub mod serve;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "candor",
    version,
    about = "LLM inference server and honest tokens/s benchmark"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate text from a prompt.
    Generate(generate::GenerateArgs),
    /// Serve a model over an OpenAI-compatible HTTP API.
    Serve(serve::ServeArgs),
    /// Run a file of requests in OpenAI's Batch API format offline (`vllm run-batch`): one
    /// result line per request line, in order.
    RunBatch(run_batch::RunBatchArgs),
    /// Measure prefill/decode tok/s (llama-bench style), or load-test a server with --serve.
    Bench(bench::BenchArgs),
    /// Write report.md and a self-contained report.html from result JSON files.
    Report(report::ReportArgs),
    /// Perplexity of a text file (llama-perplexity's method): a check that a device computes
    /// the model right, beside its speed.
    Perplexity(perplexity::PerplexityArgs),
    /// Download a model from the catalogue or the Hugging Face Hub.
    Pull(pull::PullArgs),
    /// List the devices candor can run on; check a device plugin with --conformance.
    Devices(devices::DevicesArgs),
}
