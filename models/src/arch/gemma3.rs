//! Gemma 3 (text): embeddings × sqrt(hidden), (1+w) RMSNorm, norms before and after attention
//! and FFN, q/k norm, GeGLU (tanh), interleaved sliding/global layers with their own RoPE bases,
//! attention scale `query_pre_attn_scalar^-0.5`, tied head. Gemma 2 is the same without q/k
//! norms, with one RoPE base, every other layer sliding, and tanh softcaps on the attention
//! scores and the final logits. Gemma (1) and CodeGemma are Gemma 2 without the norms after
//! attention and the FFN, the windows and the softcaps. VaultGemma is Gemma 2 without the norms
//! after attention and the FFN (its pre-FFN norm under Gemma 2's name,
//! `pre_feedforward_layernorm`).
use super::{base_from_gguf, base_from_hf, sliding_pattern};
use crate::backend::{Activation, RopeStyle};
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

fn gemma_common(spec: &mut ModelSpec) {
    spec.qk_norm = true;
    spec.sandwich_norms = true;
    spec.activation = Activation::GeluTanh;
    spec.embed_scale = Some((spec.hidden_size as f32).sqrt());
}

/// What Gemma 2 and 3 read alike from an HF config: `w` stored for `1 + w` norms, and the
/// attention scale `query_pre_attn_scalar^-0.5`.
fn gemma_from_hf(c: &HfConfig, arch: Arch) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, arch)?;
    gemma_common(&mut spec);
    spec.norm_weight_offset = 1.0;
    let scalar = c
        .opt_f32("query_pre_attn_scalar")?
        .unwrap_or(spec.head_dim as f32);
    spec.attn_scale = 1.0 / scalar.sqrt();
    Ok(spec)
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = gemma_from_hf(c, Arch::Gemma3)?;
    spec.rope_local_theta = Some(c.f32("rope_local_base_freq", 10000.0)?);
    if c.0.get("layer_types").is_none() {
        let window = c.opt_usize("sliding_window")?;
        let pattern = c.opt_usize("sliding_window_pattern")?.unwrap_or(6).max(1);
        spec.layer_windows = sliding_pattern(spec.num_layers, pattern, window);
    }
    Ok(spec)
}

/// Gemma 2 from an HF config: layers alternate sliding (even) and global (odd) unless the
/// config lists `layer_types`; the softcaps come from the base.
pub fn gemma2_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = gemma_from_hf(c, Arch::Gemma2)?;
    spec.qk_norm = false;
    if c.0.get("layer_types").is_none() {
        let window = c.opt_usize("sliding_window")?;
        spec.layer_windows = sliding_pattern(spec.num_layers, 2, window);
    }
    Ok(spec)
}

/// VaultGemma (`vaultgemma`: Google's differentially private 1B) from an HF config: Gemma 2
/// with a norm before attention and one before the FFN only; served as Gemma 2's blocks.
pub fn vaultgemma_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = gemma2_from_hf(c)?;
    spec.sandwich_norms = false;
    Ok(spec)
}

/// Gemma (1) from an HF config: the tanh GELU it was trained with, which its configs name
/// `hidden_activation` (the first ones said `hidden_act: gelu` for it, as llama.cpp reads it).
pub fn gemma1_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = gemma_from_hf(c, Arch::Gemma)?;
    gemma1_layers(&mut spec);
    Ok(spec)
}

/// Gemma (1) from llama.cpp's `gemma` keys (norms stored as `1 + w`).
pub fn gemma1_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Gemma, RopeStyle::Neox)?;
    gemma_common(&mut spec);
    gemma1_layers(&mut spec);
    Ok(spec)
}

/// What sets Gemma (1) apart from the common Gemma spec: one norm before attention and one
/// before the FFN, no q/k norms, every layer global.
fn gemma1_layers(spec: &mut ModelSpec) {
    spec.qk_norm = false;
    spec.sandwich_norms = false;
    spec.layer_windows = vec![None; spec.num_layers];
}

/// Gemma 2 from llama.cpp's `gemma2` keys.
pub fn gemma2_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Gemma2, RopeStyle::Neox)?;
    gemma_common(&mut spec);
    spec.qk_norm = false;
    let window = g.get_usize("gemma2.attention.sliding_window");
    spec.layer_windows = sliding_pattern(spec.num_layers, 2, window);
    let cap = |k: &str| g.get_f64(k).map(|v| v as f32).filter(|&v| v > 0.0);
    spec.attn_softcap = cap("gemma2.attn_logit_softcapping");
    spec.final_softcap = cap("gemma2.final_logit_softcapping");
    // Gemma 2 27B (46 layers) scales queries by (hidden / heads)^-0.5, as llama.cpp does.
    if spec.num_layers == 46 {
        spec.attn_scale = 1.0 / ((spec.hidden_size / spec.num_heads) as f32).sqrt();
    }
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Gemma3, RopeStyle::Neox)?;
    gemma_common(&mut spec);
    // llama.cpp writes no pattern or local base for gemma3; these are the model family's.
    let window = g.get_usize("gemma3.attention.sliding_window");
    let pattern = g
        .get_usize("gemma3.attention.sliding_window_pattern")
        .unwrap_or(6)
        .max(1);
    spec.layer_windows = sliding_pattern(spec.num_layers, pattern, window);
    spec.rope_local_theta = Some(10000.0);
    // Gemma 3 27B scales queries by (hidden / heads)^-0.5; the others by head_dim^-0.5.
    if spec.num_layers == 62 {
        spec.attn_scale = 1.0 / ((spec.hidden_size / spec.num_heads) as f32).sqrt();
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    /// A VaultGemma config of the 1B's shape (26 layers, 4 heads of 256, layers alternating
    /// sliding and global).
    fn vaultgemma_config() -> serde_json::Value {
        let layer_types: Vec<&str> = (0..26)
            .map(|l| match l % 2 {
                0 => "sliding_attention",
                _ => "full_attention",
            })
            .collect();
        serde_json::json!({
            "architectures": ["VaultGemmaForCausalLM"], "model_type": "vaultgemma",
            "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
            "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 256,
            "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 256,
            "sliding_window": 512, "layer_types": layer_types, "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0, "vocab_size": 256000, "max_position_embeddings": 1024,
            "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
            "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0
        })
    }

    #[test]
    fn vaultgemma_is_gemma2_without_the_norms_after() {
        let spec = crate::arch::spec_from_hf(&vaultgemma_config()).unwrap();
        assert_eq!(spec.arch, crate::spec::Arch::Gemma2);
        assert!(!spec.sandwich_norms && !spec.qk_norm);
        assert_eq!(spec.layer_windows[..2], [Some(512), None]);
        assert_eq!(
            (spec.attn_softcap, spec.final_softcap),
            (Some(50.0), Some(30.0))
        );
        assert_eq!(spec.norm_weight_offset, 1.0);
        assert_eq!(spec.embed_scale, Some((1152f32).sqrt()));
    }
}
