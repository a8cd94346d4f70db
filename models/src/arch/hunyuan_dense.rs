//! Hunyuan dense (Tencent Hunyuan-0.5B/1.8B/4B/7B; HF `hunyuan_v1_dense`, GGUF
//! `hunyuan-dense`) and its mixture of experts (Hunyuan-A13B; HF `hunyuan_v1_moe`, GGUF
//! `hunyuan-moe`): llama with per-head RMSNorms of q and k applied after RoPE (the normed
//! keys are cached), and RoPE stretched by Hunyuan's NTK "alpha": a fixed base of
//! θ·α^(d/(d−2)), as transformers computes it within the configured context and as
//! llama.cpp's converter writes it into the GGUF's base. The experts: in every layer, a
//! softmax over the router's logits, the top k renormalized, one shared expert beside them,
//! each of `intermediate_size`.
use super::experts::softmax_top_k;
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, MixtureOfExperts, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    hunyuan_from_hf(c, Arch::HunyuanDense)
}

fn hunyuan_from_hf(c: &HfConfig, arch: Arch) -> Result<ModelSpec> {
    let alpha = ntk_alpha(c)?;
    // The stretch is taken below, not as a RoPE scaling of the base spec.
    let mut cfg = c.0.clone();
    if alpha.is_some() {
        cfg["rope_scaling"] = serde_json::Value::Null;
    }
    let mut spec = base_from_hf(&HfConfig(&cfg), arch)?;
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
    hunyuan_from_gguf(g, Arch::HunyuanDense)
}

fn hunyuan_from_gguf(g: &GgufFile, arch: Arch) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, arch, RopeStyle::Neox)?;
    spec.qkv_bias = g.contains(&layer(0, "attn_q.bias"));
    spec.qk_norm = true;
    spec.qk_norm_after_rope = true;
    Ok(spec)
}

pub fn moe_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = hunyuan_from_hf(c, Arch::HunyuanMoe)?;
    spec.experts = Some(experts_from_hf(c, spec.num_layers, spec.intermediate_size)?);
    Ok(spec)
}

/// A `hunyuan-moe` GGUF: the experts where a router is, the shared expert's width by
/// `expert_shared_feed_forward_length`.
pub fn moe_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = hunyuan_from_gguf(g, Arch::HunyuanMoe)?;
    spec.experts = Some(super::experts::required_from_gguf(g, spec.num_layers)?);
    Ok(spec)
}

/// `num_experts` and `moe_topk` (a number, or one per layer: all the same in the released
/// model), one shared expert (`num_shared_expert`, transformers' port has always one) of the
/// experts' `intermediate_size`.
fn experts_from_hf(
    c: &HfConfig,
    num_layers: usize,
    intermediate: usize,
) -> Result<MixtureOfExperts> {
    let per_layer = |key: &str| -> Result<usize> {
        let bad = || {
            ModelError::Config(format!(
                "config.json: `{key}` must be a number, or the same number for every layer"
            ))
        };
        match c.0.get(key) {
            Some(serde_json::Value::Array(v)) => {
                let first = v.first().and_then(|x| x.as_u64()).ok_or_else(bad)?;
                match v.iter().all(|x| x.as_u64() == Some(first)) {
                    true => Ok(first as usize),
                    false => Err(bad()),
                }
            }
            _ => c.usize(key),
        }
    };
    let shared = match c.0.get("num_shared_expert") {
        None | Some(serde_json::Value::Null) => 1,
        Some(_) => per_layer("num_shared_expert")?,
    };
    let mut m = softmax_top_k(
        per_layer("num_experts")?,
        per_layer("moe_topk")?,
        intermediate,
        true,
        vec![true; num_layers],
    );
    m.shared_intermediate_size = shared * intermediate;
    Ok(m)
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

    /// Hunyuan-A13B-Instruct's config.json (fewer layers): 64 experts, 8 per token, per-layer
    /// lists of equal numbers, one shared expert.
    #[test]
    fn a13b_runs_experts_in_every_layer() {
        let mut cfg = json!({"model_type": "hunyuan_v1_moe", "hidden_size": 4096,
            "intermediate_size": 3072, "num_hidden_layers": 2, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128167,
            "rope_theta": 10000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": true,
            "max_position_embeddings": 32768, "attention_bias": false,
            "num_experts": 64, "moe_topk": [8, 8], "num_shared_expert": [1, 1],
            "moe_intermediate_size": [3072, 3072], "use_mixed_mlp_moe": true,
            "rope_scaling": {"alpha": 1000.0, "factor": 1.0, "type": "dynamic"}});
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, Arch::HunyuanMoe);
        let m = spec.experts.as_ref().unwrap();
        assert_eq!((m.num_experts, m.experts_per_token), (64, 8));
        assert_eq!(
            (m.expert_intermediate_size, m.shared_intermediate_size),
            (3072, 3072)
        );
        assert!(m.normalize && m.layers.iter().all(|&l| l));
        cfg["moe_topk"] = json!([8, 4]);
        assert!(crate::arch::spec_from_hf(&cfg).is_err());
    }
}
