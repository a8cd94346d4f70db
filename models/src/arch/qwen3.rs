//! Qwen3: llama with per-head RMSNorm of Q and K before RoPE, explicit head_dim, no biases.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Qwen3)?;
    spec.qk_norm = true;
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Qwen3, RopeStyle::Neox)?;
    spec.qk_norm = true;
    Ok(spec)
}
