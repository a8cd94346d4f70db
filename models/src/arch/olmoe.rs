//! OLMoE (`olmoe`; AllenAI's OLMoE-1B-7B): llama with RMSNorms of q and k over their whole
//! projections (not per head) before RoPE, and in every layer a softmax mixture of experts of
//! `intermediate_size`, the chosen weights as the softmax gave them unless `norm_topk_prob`.
use super::experts::softmax_top_k;
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if c.opt_f32("clip_qkv")?.is_some() {
        return Err(ModelError::Config(
            "olmoe: clip_qkv (q/k/v clamped after the products) is not supported".into(),
        ));
    }
    let mut spec = base_from_hf(c, Arch::Olmoe)?;
    spec.qk_norm = true;
    spec.qk_norm_whole = true;
    spec.experts = Some(softmax_top_k(
        c.usize("num_experts")?,
        c.usize("num_experts_per_tok")?,
        c.usize("intermediate_size")?,
        c.bool("norm_topk_prob", false),
        vec![true; spec.num_layers],
    ));
    Ok(spec)
}

/// A llama.cpp `olmoe` GGUF: the experts from `olmoe.expert_*` (`arch::experts::from_gguf`).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Olmoe, RopeStyle::Neox)?;
    spec.qk_norm = g.contains(&layer(0, "attn_q_norm.weight"));
    spec.qk_norm_whole = spec.qk_norm;
    Ok(spec)
}
