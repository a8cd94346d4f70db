//! Qwen2/2.5: llama with Q/K/V biases; tied head in small sizes (decided by the weights).
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Qwen2)?;
    spec.qkv_bias = true;
    // HF Qwen2: sliding window only when enabled, on layers from `max_window_layers` on.
    if c.0.get("layer_types").is_none() && c.bool("use_sliding_window", false) {
        let window = c.opt_usize("sliding_window")?;
        let from = c.opt_usize("max_window_layers")?.unwrap_or(0);
        spec.layer_windows = (0..spec.num_layers)
            .map(|l| if l >= from { window } else { None })
            .collect();
    }
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Qwen2, RopeStyle::Neox)?;
    spec.qkv_bias = true;
    Ok(spec)
}
