//! The options every command that loads a model for one local run shares (`candor generate`,
//! `candor perplexity`; flattened into their arguments).
use super::lora_args::LoraArgs;
use crate::backend::cpu::configure_threads;
use crate::backend::BackendChoice;
use crate::engine::load::{load_model, KvCacheDtype, LoadOptions, LoadedModel};
use crate::error::CliError;
use crate::pull;

#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Model: a .gguf file (a split model's first part), a safetensors directory, a catalogue
    /// name or hf:ORG/REPO[:FILE|:TAG] (those two pulled if missing).
    #[arg(long, env = "CANDOR_MODEL", default_value = pull::DEFAULT_MODEL)]
    pub model: String,
    /// Dequantize every GGUF weight to f32 (the reference path).
    #[arg(long)]
    pub dequantize: bool,
    /// KV cache element type: auto (CPU, and plugins that keep f16 caches: f16 for quantized
    /// weights; CUDA: the activation dtype; other plugins: f32), f32, f16, q8_0 (CPU: blocks of
    /// 32 bytes and a scale, about half f16's memory). CUDA keeps its one type, and a plugin
    /// f32 or f16: another asked of them is an error.
    #[arg(long, env = "CANDOR_KV_CACHE_DTYPE", value_enum, default_value_t)]
    pub kv_cache_dtype: KvCacheDtype,
    /// Compute threads (default: all cores).
    #[arg(long, env = "CANDOR_THREADS")]
    pub threads: Option<usize>,
    /// cpu, cuda[:N] or plugin:PATH.
    #[arg(long, env = "CANDOR_BACKEND", default_value = "cpu")]
    pub backend: BackendChoice,
    /// Never download: fail if the model is not on disk.
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub lora: LoraArgs,
}

impl ModelArgs {
    /// Fix the compute threads for the process (first, before anything starts a thread pool);
    /// returns how many.
    pub fn configure_threads(&self) -> usize {
        configure_threads(self.threads)
    }

    /// The model's path: a file or directory as given, or the catalogue's (pulled if missing and
    /// allowed).
    pub fn resolve(&self) -> Result<std::path::PathBuf, CliError> {
        Ok(pull::resolve_model(&self.model, !self.offline)?)
    }

    /// Load the model at `path` with a KV cache of `kv_tokens`, computing on `threads`.
    pub fn load(
        &self,
        path: &std::path::Path,
        kv_tokens: usize,
        threads: usize,
    ) -> Result<LoadedModel, CliError> {
        Ok(load_model(
            path,
            &LoadOptions {
                dequantize: self.dequantize,
                kv_cache_dtype: self.kv_cache_dtype,
                op_profiler: None,
                lora: self.lora.read()?,
                threads,
                kv_tokens,
                backend: self.backend.clone(),
                classifier_tokens: Vec::new(),
            },
        )?)
    }
}
