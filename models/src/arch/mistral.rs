//! Mistral: llama with a sliding attention window on every layer.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Mistral)?;
    if c.0.get("layer_types").is_none() {
        let window = c.opt_usize("sliding_window")?;
        spec.layer_windows = vec![window; spec.num_layers];
    }
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Mistral, RopeStyle::Interleaved)?;
    let window = g.get_usize(&format!("{}.attention.sliding_window", g.architecture()?));
    spec.layer_windows = vec![window; spec.num_layers];
    Ok(spec)
}
