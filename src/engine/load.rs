//! Building a runner from an opened model on a chosen backend.
use super::block_manager::BLOCK_SIZE;
use super::error::EngineError;
use super::runner::{ModelRunner, Runner};
use crate::backend::cpu::CpuBackend;
use candor_models::loader::OpenedModel;
use candor_models::DecoderModel;

/// A CPU runner whose KV cache holds `kv_tokens` tokens (rounded up to whole blocks).
pub fn cpu_runner(opened: &OpenedModel, threads: usize, kv_tokens: usize) -> Result<Box<dyn Runner>, EngineError> {
    let backend = CpuBackend::new(threads);
    let model = DecoderModel::load(&backend, opened.spec.clone(), opened.source.as_ref())?;
    let blocks = kv_tokens.div_ceil(BLOCK_SIZE).max(1);
    Ok(Box::new(ModelRunner::new(backend, model, blocks, BLOCK_SIZE)?))
}
