//! StarCoder2 (`starcoder2`): pre-norm blocks of LayerNorms with biases, biases on every
//! projection, an ungated MLP (`c_fc`, tanh-GELU, `c_proj`), NeoX RoPE and, in the released
//! checkpoints, a sliding window on every layer.
use super::{base_from_gguf, base_from_hf, layer_norm_eps_from_gguf};
use crate::backend::{Activation, RopeStyle};
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' default `norm_epsilon`.
const DEFAULT_EPS: f32 = 1e-5;

fn starcoder2_common(spec: &mut ModelSpec) {
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.gated_ffn = false;
    spec.qkv_bias = true;
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Starcoder2)?;
    if !c.bool("use_bias", true) {
        return Err(crate::error::ModelError::Config(
            "config.json: StarCoder2 without `use_bias` is not supported".into(),
        ));
    }
    spec.rms_eps = c.f32("norm_epsilon", DEFAULT_EPS)?;
    if c.0.get("layer_types").is_none() {
        // Every layer attends within the window (transformers' Starcoder2Attention).
        let window = c.opt_usize("sliding_window")?;
        spec.layer_windows = vec![window; spec.num_layers];
    }
    starcoder2_common(&mut spec);
    Ok(spec)
}

/// A `starcoder2` GGUF: llama.cpp's converter keeps q/k rows as they are (NeoX RoPE); its
/// LayerNorm epsilon under `attention.layer_norm_epsilon`. llama.cpp runs no window for it;
/// one the file states is taken, as transformers runs the checkout.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Starcoder2, RopeStyle::Neox)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    if let Some(w) = g
        .get_usize("starcoder2.attention.sliding_window")
        .filter(|&w| w > 0)
    {
        spec.layer_windows = vec![Some(w); spec.num_layers];
    }
    spec.activation = Activation::GeluTanh;
    starcoder2_common(&mut spec);
    Ok(spec)
}
