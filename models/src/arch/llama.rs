//! Llama 2/3.x: SwiGLU, RMSNorm, GQA, RoPE (incl. Llama-3 frequency scaling), untied head.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    base_from_hf(c, Arch::Llama)
}

/// Kyutai's Helium (`helium`): llama's blocks whose checkouts rotate each head in interleaved
/// pairs (its `rotate_half` pairs x[2i] with x[2i+1]), as llama.cpp's converted llama GGUFs do.
pub fn helium_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Llama)?;
    spec.rope.style = RopeStyle::Interleaved;
    Ok(spec)
}

/// llama.cpp's converter permutes Q/K rows of llama models so that RoPE pairs adjacent
/// dimensions; Llama-3 scaling arrives as a `rope_freqs.weight` tensor (see the decoder).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    base_from_gguf(g, Arch::Llama, RopeStyle::Interleaved)
}
