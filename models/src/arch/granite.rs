//! IBM Granite 3.x (`granite`): llama with four scalars of its own. The embeddings are
//! multiplied by `embedding_multiplier`, the attention scores by `attention_multiplier` (in
//! place of 1/sqrt(head_dim)), each attention and FFN output by `residual_multiplier` before
//! it joins the residual stream, and the logits divided by `logits_scaling`. llama.cpp's
//! `granite` GGUFs keep them as `embedding_scale`, `attention.scale`, `residual_scale` and
//! `logit_scale`, with llama's Q/K rows permuted for its interleaved RoPE.
//!
//! Granite 3.x MoE (`granitemoe`: granite-3.x-1b-a400m, 3b-a800m) adds Mixtral's experts to
//! every layer (softmax over the top-k router logits); its checkouts stack each layer's expert
//! projections (`input_linear` `[experts, 2·ffn, hidden]`, gate rows then up rows;
//! `output_linear`), which `weights::safetensors` reads one expert at a time. Granite MoE with
//! a shared expert (`granitemoeshared`) adds an ungated MLP of `shared_intermediate_size` to
//! the experts' output (`shared_mlp.input_linear`, gate rows then up rows; `output_linear`);
//! llama.cpp converts it as `granitemoe` with `expert_shared_feed_forward_length` and
//! `ffn_*_shexp` tensors, which the generic `experts::from_gguf` reads.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    granite_from_hf(c, Arch::Granite)
}

pub fn moe_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = granite_from_hf(c, Arch::GraniteMoe)?;
    let mut experts = super::experts::mixtral_from_hf(c, spec.num_layers)?;
    // granitemoeshared's MLP beside the experts, without a gate of its own.
    experts.shared_intermediate_size = c.opt_usize("shared_intermediate_size")?.unwrap_or(0);
    spec.experts = Some(experts);
    Ok(spec)
}

fn granite_from_hf(c: &HfConfig, arch: Arch) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, arch)?;
    if c.bool("mlp_bias", false) {
        return Err(ModelError::Config(
            "config.json: Granite with `mlp_bias` is not supported".into(),
        ));
    }
    apply(
        &mut spec,
        Scalars {
            embedding: c.opt_f32("embedding_multiplier")?,
            attention: c.opt_f32("attention_multiplier")?,
            residual: c.opt_f32("residual_multiplier")?,
            logits: c.opt_f32("logits_scaling")?,
        },
    );
    Ok(spec)
}

/// A `granite` or `granitemoe` GGUF (the experts of the latter are read by the generic
/// `experts::from_gguf`).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let a = g.architecture()?;
    let arch = match a.as_str() {
        "granitemoe" => Arch::GraniteMoe,
        _ => Arch::Granite,
    };
    let mut spec = base_from_gguf(g, arch, RopeStyle::Interleaved)?;
    let key = |k: &str| g.get_f64(&format!("{a}.{k}")).map(|v| v as f32);
    apply(
        &mut spec,
        Scalars {
            embedding: key("embedding_scale"),
            attention: key("attention.scale"),
            residual: key("residual_scale"),
            logits: key("logit_scale"),
        },
    );
    Ok(spec)
}

/// Granite's scalars, each None where the file leaves it out (transformers' defaults then:
/// 1, 1/sqrt(head_dim), 1, 1; llama.cpp treats a 0 the same way).
struct Scalars {
    embedding: Option<f32>,
    attention: Option<f32>,
    residual: Option<f32>,
    logits: Option<f32>,
}

fn apply(spec: &mut ModelSpec, s: Scalars) {
    let set = |v: Option<f32>| v.filter(|&v| v != 0.0 && v != 1.0);
    spec.embed_scale = set(s.embedding);
    spec.residual_scale = set(s.residual);
    spec.logit_divisor = set(s.logits);
    if let Some(a) = s.attention.filter(|&a| a != 0.0) {
        spec.attn_scale = a;
    }
}
