//! OLMo 2 (`olmo2`): llama whose layers norm the outputs of attention and of the FFN
//! (`post_attention_layernorm`, `post_feedforward_layernorm`) rather than their inputs, with
//! RMSNorms of q and k over their whole projections before RoPE.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
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

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Olmo2, RopeStyle::Neox)?;
    olmo2_common(&mut spec);
    Ok(spec)
}
