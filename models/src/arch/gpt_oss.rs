//! gpt-oss (`gpt_oss`, GGUF `gpt-oss`): OpenAI's open-weight mixture of experts. Llama-shaped
//! attention with q/k/v/o biases, sliding-window (128) and global layers alternating (the
//! first sliding), a learned sink logit per head in every softmax, YaRN without rounding the
//! ramp's ends; every layer's FFN a softmax top-k of experts whose router and projections
//! have biases, run through a clamped SwiGLU (`Activation::SwigluOai`).
use super::experts::softmax_top_k;
use super::{base_from_gguf, base_from_hf, sliding_pattern};
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec, RopeScaling};
use crate::weights::gguf::GgufFile;

fn gpt_oss_common(spec: &mut ModelSpec) {
    spec.qkv_bias = true;
    spec.attn_sinks = true;
    spec.activation = Activation::SwigluOai;
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::GptOss)?;
    if c.0.get("layer_types").is_none() {
        let window = c.opt_usize("sliding_window")?.unwrap_or(128);
        // Sliding and global alternating, the first sliding (transformers' default).
        spec.layer_windows = sliding_pattern(spec.num_layers, 2, Some(window));
    }
    gpt_oss_common(&mut spec);
    // The router softmaxes its top-k logits: the same weights as a softmax over all of them
    // renormalized over the chosen.
    spec.experts = Some(softmax_top_k(
        c.usize("num_local_experts")?,
        c.usize("num_experts_per_tok")?,
        c.usize("intermediate_size")?,
        true,
        vec![true; spec.num_layers],
    ));
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::GptOss, RopeStyle::Neox)?;
    let window = g
        .get_usize("gpt-oss.attention.sliding_window")
        .ok_or_else(|| ModelError::Config("GGUF: gpt-oss without a sliding window".into()))?;
    // llama.cpp's SWA pattern 2: the first layer sliding, every other after it.
    spec.layer_windows = sliding_pattern(spec.num_layers, 2, Some(window));
    // The model's YaRN keeps the ramp's ends fractional (its config's `truncate: false`);
    // the GGUF has no key for it.
    if let RopeScaling::Yarn { truncate, .. } = &mut spec.rope.scaling {
        *truncate = false;
    }
    gpt_oss_common(&mut spec);
    spec.experts = super::experts::from_gguf(g, spec.num_layers)?;
    if spec.experts.is_none() {
        return Err(ModelError::Config(
            "GGUF: gpt-oss without `gpt-oss.expert_count`".into(),
        ));
    }
    Ok(spec)
}
