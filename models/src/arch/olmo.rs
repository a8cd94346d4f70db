//! OLMo (`olmo`: OLMo-1B, OLMo-7B and their 0424 / 0724 releases): llama's projections and
//! SwiGLU under LayerNorms without weights or biases (transformers' `OlmoLayerNorm`, epsilon
//! 1e-5: unit weights stand in, `ModelSpec::weightless_norms`), and q, k and v clamped to
//! ±`clip_qkv` where the config says (`ModelSpec::clip_qkv`; llama.cpp's `clamp_kqv`).
//! llama.cpp's converter permutes q/k rows as for llama.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

/// transformers' `OlmoLayerNorm` epsilon (fixed: no config key).
const EPS: f32 = 1e-5;

fn olmo_common(spec: &mut ModelSpec, clip: Option<f32>) -> Result<()> {
    if clip.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
        return Err(ModelError::Config(format!(
            "OLMo: clip_qkv {clip:?} must be positive"
        )));
    }
    spec.layer_norm = true;
    spec.weightless_norms = true;
    spec.rms_eps = EPS;
    spec.clip_qkv = clip;
    Ok(())
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Olmo)?;
    olmo_common(&mut spec, c.opt_f32("clip_qkv")?)?;
    Ok(spec)
}

/// An `olmo` GGUF: q/k rows permuted as llama's, no norm tensors, `clamp_kqv` where set.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Olmo, RopeStyle::Interleaved)?;
    let clip = g.get_f64("olmo.attention.clamp_kqv").map(|c| c as f32);
    olmo_common(&mut spec, clip)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// allenai/OLMo-7B-0424-hf's config.json (fewer layers).
    #[test]
    fn olmo_norms_without_weights_and_clamps_qkv() {
        let mut cfg = serde_json::json!({"model_type": "olmo", "hidden_size": 4096,
            "intermediate_size": 11008, "num_hidden_layers": 2, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": 50304, "rope_theta": 10000.0,
            "max_position_embeddings": 4096, "clip_qkv": 8.0, "attention_bias": false,
            "tie_word_embeddings": false, "hidden_act": "silu"});
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, Arch::Olmo);
        assert!(spec.layer_norm && spec.weightless_norms && !spec.norm_bias);
        assert_eq!((spec.clip_qkv, spec.rms_eps), (Some(8.0), 1e-5));
        cfg["clip_qkv"] = serde_json::Value::Null;
        assert_eq!(crate::arch::spec_from_hf(&cfg).unwrap().clip_qkv, None);
        cfg["clip_qkv"] = (-1.0).into();
        assert!(crate::arch::spec_from_hf(&cfg).is_err());
    }
}
