//! OLMo 2 (`olmo2`): llama whose layers norm the outputs of attention and of the FFN
//! (`post_attention_layernorm`, `post_feedforward_layernorm`) rather than their inputs, with
//! RMSNorms of q and k over their whole projections before RoPE. OLMo 3 (`olmo3`): the same
//! with sliding-window layers (`layer_types`; three of four by default) whose RoPE stays
//! unscaled where the global layers' is scaled (transformers gives them a default rotary
//! embedding of their own).
use super::{base_from_gguf, base_from_hf, sliding_pattern};
use crate::backend::RopeStyle;
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec, RopeScaling};
use crate::weights::gguf::GgufFile;

fn olmo2_common(spec: &mut ModelSpec) {
    spec.qk_norm = true;
    spec.qk_norm_whole = true;
    spec.sandwich_norms = true;
    spec.pre_norms = false;
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Olmo2)?;
    olmo2_common(&mut spec);
    Ok(spec)
}

/// FlexOlmo (`flex_olmo`: FlexOlmo-7x7B): OLMo 2's layers with OLMoE's softmax experts (of
/// `intermediate_size`, weights renormalized where `norm_topk_prob`) in every layer.
pub fn flex_olmo_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::FlexOlmo)?;
    olmo2_common(&mut spec);
    spec.experts = Some(super::experts::softmax_top_k(
        c.usize("num_experts")?,
        c.usize("num_experts_per_tok")?,
        spec.intermediate_size,
        c.bool("norm_topk_prob", false),
        vec![true; spec.num_layers],
    ));
    Ok(spec)
}

pub fn olmo3_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Olmo3)?;
    olmo2_common(&mut spec);
    if c.0.get("layer_types").is_none() {
        let window = c.opt_usize("sliding_window")?.unwrap_or(4096);
        spec.layer_windows = olmo3_windows(spec.num_layers, window);
    }
    olmo3_sliding_rope(&mut spec);
    Ok(spec)
}

/// OLMo 3's default layers: three sliding, then one global.
fn olmo3_windows(layers: usize, window: usize) -> Vec<Option<usize>> {
    sliding_pattern(layers, 4, Some(window))
}

/// The sliding layers' RoPE: the same base, never scaled (`rope_local_theta` selects an
/// unscaled table for windowed layers).
fn olmo3_sliding_rope(spec: &mut ModelSpec) {
    if spec.rope.scaling != RopeScaling::None {
        spec.rope_local_theta = Some(spec.rope.theta);
    }
}

/// An `olmo2` GGUF; with `olmo2.attention.sliding_window` it is an OLMo 3 (llama.cpp converts
/// OLMo 3 as olmo2 with a window, its layers three sliding to one global).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let window = g
        .get_usize("olmo2.attention.sliding_window")
        .filter(|&w| w > 0);
    let arch = if window.is_some() {
        Arch::Olmo3
    } else {
        Arch::Olmo2
    };
    let mut spec = base_from_gguf(g, arch, RopeStyle::Neox)?;
    olmo2_common(&mut spec);
    if let Some(w) = window {
        spec.layer_windows = olmo3_windows(spec.num_layers, w);
        olmo3_sliding_rope(&mut spec);
    }
    Ok(spec)
}
