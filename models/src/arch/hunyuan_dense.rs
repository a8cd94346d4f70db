//! Hunyuan dense (Tencent Hunyuan-0.5B/1.8B/4B/7B; HF `hunyuan_v1_dense`, GGUF
//! `hunyuan-dense`): llama with per-head RMSNorms of q and k applied after RoPE (the normed
//! keys are cached), and RoPE stretched by Hunyuan's NTK "alpha": a fixed base of
//! θ·α^(d/(d−2)), as transformers computes it within the configured context and as
//! llama.cpp's converter writes it into the GGUF's base.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let alpha = ntk_alpha(c)?;
    // The stretch is taken below, not as a RoPE scaling of the base spec.
    let mut cfg = c.0.clone();
    if alpha.is_some() {
        cfg["rope_scaling"] = serde_json::Value::Null;
    }
    let mut spec = base_from_hf(&HfConfig(&cfg), Arch::HunyuanDense)?;
    if let Some(alpha) = alpha {
        let d = spec.head_dim;
        if d <= 2 {
            return Err(ModelError::Config(format!(
                "config.json: head_dim {d} too small for an NTK alpha"
            )));
        }
        let exponent = d as f64 / (d as f64 - 2.0);
        spec.rope.theta = (spec.rope.theta as f64 * (alpha as f64).powf(exponent)) as f32;
    }
    spec.qkv_bias = c.bool("attention_bias", false);
    spec.qk_norm = true;
    spec.qk_norm_after_rope = true;
    Ok(spec)
}

/// The `alpha` of a `dynamic` rope_scaling (Hunyuan's NTK-aware stretch); None without
/// one. A `dynamic` scaling without alpha is the Dynamic-NTK of other models: refused.
fn ntk_alpha(c: &HfConfig) -> Result<Option<f32>> {
    let Some(rs) = c.0.get("rope_scaling").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let sub = HfConfig(rs);
    let kind = sub.str("rope_type").or_else(|| sub.str("type"));
    match (kind, sub.opt_f32("alpha")?) {
        (Some("dynamic"), Some(alpha)) if alpha.is_finite() && alpha > 0.0 => Ok(Some(alpha)),
        (Some("dynamic"), _) => Err(ModelError::Config(
            "config.json: a `dynamic` rope_scaling needs a positive `alpha` (Hunyuan's NTK \
             stretch); Dynamic NTK by factor is not supported"
                .into(),
        )),
        _ => Ok(None),
    }
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::HunyuanDense, RopeStyle::Neox)?;
    spec.qkv_bias = g.contains(&layer(0, "attn_q.bias"));
    spec.qk_norm = true;
    spec.qk_norm_after_rope = true;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Hunyuan-7B-Instruct's config.json (fewer layers): alpha 1000 over θ 10000, head 128.
    #[test]
    fn alpha_stretches_the_base() {
        let mut cfg = json!({"model_type": "hunyuan_v1_dense", "hidden_size": 4096,
            "intermediate_size": 14336, "num_hidden_layers": 2, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128167,
            "rope_theta": 10000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": true,
            "max_position_embeddings": 32768, "attention_bias": false,
            "rope_scaling": {"alpha": 1000.0, "beta_fast": 32, "beta_slow": 1, "factor": 1.0,
                "mscale": 1.0, "mscale_all_dim": 1.0, "type": "dynamic"}});
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        let want = 10000.0 * 1000f64.powf(128.0 / 126.0);
        assert!(
            (spec.rope.theta as f64 / want - 1.0).abs() < 1e-6,
            "{}",
            spec.rope.theta
        );
        assert!(spec.qk_norm && spec.qk_norm_after_rope);
        cfg["rope_scaling"] = json!({"type": "dynamic", "factor": 2.0});
        assert!(from_hf(&HfConfig(&cfg)).is_err());
    }
}
