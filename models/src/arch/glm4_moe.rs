//! GLM-4.5 / 4.6 and GLM-4.5-Air (`glm4_moe`): grouped-query attention with q/k/v biases and
//! optionally per-head q/k norms, RoPE over the first half of each head (`partial_rotary_factor`,
//! 0.5), and DeepSeek-V3's experts (sigmoid scores with a correction bias, group-limited
//! choice, normalized and scaled weights, shared experts) past `first_k_dense_replace` dense
//! layers. The multi-token-prediction layers past `num_hidden_layers` are not loaded.
use super::{
    base_from_gguf, base_from_hf, rotary_dim_from_gguf, rotary_dim_from_hf, skip_prediction_layers,
};
use crate::backend::RopeStyle;
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Glm4Moe)?;
    spec.qkv_bias = c.bool("attention_bias", false);
    spec.qk_norm = c.bool("use_qk_norm", false);
    spec.rotary_dim = rotary_dim_from_hf(c, spec.head_dim, Some(0.5))?;
    spec.experts = super::deepseek::experts(c, true, spec.num_layers)?;
    Ok(spec)
}

/// Solar Open (`solar_open`: Upstage's Solar-Open-100B): Llama's attention (RoPE over whole
/// heads unless `partial_rotary_factor` says otherwise, biases where `attention_bias` says)
/// with GLM-4.5's experts in every layer. Its config has no dense FFN width (no layer is
/// dense) and a base of 1,000,000 where it names none.
pub fn solar_open_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let cfg = c.with_keys(
        &[("moe_intermediate_size", "intermediate_size")],
        &[("rope_theta", 1_000_000.0.into())],
    );
    let c = &HfConfig(&cfg);
    let mut spec = base_from_hf(c, Arch::SolarOpen)?;
    spec.rotary_dim = rotary_dim_from_hf(c, spec.head_dim, None)?;
    spec.experts = super::deepseek::experts(c, true, spec.num_layers)?;
    Ok(spec)
}

/// Sarvam-30B (`sarvam_moe`): GLM-4.5's blocks with RoPE over whole heads unless
/// `partial_rotary_factor` says otherwise, its config in the original release's names
/// (`num_experts`, `num_shared_experts`, `use_qkv_bias`) or transformers'; a base of 8e6 and
/// q/k norms where it names none.
pub fn sarvam_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let cfg = c.with_keys(
        &[
            ("num_experts", "n_routed_experts"),
            ("num_shared_experts", "n_shared_experts"),
            ("use_qkv_bias", "attention_bias"),
        ],
        // transformers' `SarvamMoEConfig` defaults.
        &[
            ("rope_theta", 8_000_000.0.into()),
            ("use_qk_norm", true.into()),
            ("partial_rotary_factor", 1.0.into()),
            ("first_k_dense_replace", 1.into()),
            ("norm_topk_prob", true.into()),
            ("routed_scaling_factor", 2.5.into()),
        ],
    );
    from_hf(&HfConfig(&cfg))
}

/// A llama.cpp `glm4moe` GGUF: its blocks count the multi-token-prediction layers
/// (`nextn_predict_layers`, kept at the end), which are not run.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Glm4Moe, RopeStyle::Neox)?;
    skip_prediction_layers(&mut spec, g)?;
    spec.qkv_bias = g.contains(&layer(0, "attn_q.bias"));
    spec.qk_norm = g.contains(&layer(0, "attn_q_norm.weight"));
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    spec.experts = super::deepseek::gguf_experts(g, spec.num_layers)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::GroupScore;
    use serde_json::json;

    /// A Solar Open config as transformers 5 writes its defaults (fewer layers): no dense
    /// width, no base, RoPE over whole heads, experts in every layer.
    #[test]
    fn solar_open_is_llama_attention_over_glm_experts() {
        let cfg = json!({"model_type": "solar_open", "vocab_size": 196608, "hidden_size": 4096,
            "num_hidden_layers": 4, "num_attention_heads": 64, "num_key_value_heads": 8,
            "head_dim": 128, "rms_norm_eps": 1e-5, "moe_intermediate_size": 1280,
            "num_experts_per_tok": 8, "n_shared_experts": 1, "n_routed_experts": 128,
            "routed_scaling_factor": 1.0, "n_group": 1, "topk_group": 1, "norm_topk_prob": true});
        let spec = solar_open_from_hf(&HfConfig(&cfg)).unwrap();
        spec.validate().unwrap();
        assert_eq!((spec.rope.theta, spec.rotary_dim), (1e6, None));
        assert!(!spec.qkv_bias && !spec.qk_norm);
        let m = spec.experts.unwrap();
        assert_eq!(m.layers, vec![true; 4]);
        assert!(m.correction_bias && m.normalize);
        assert_eq!(m.shared_intermediate_size, 1280);
    }

    /// A config in the original Sarvam-30B release's names (fewer layers): its experts, biases
    /// and the defaults transformers fills in.
    #[test]
    fn sarvam_reads_its_original_names() {
        let cfg = json!({"model_type": "sarvam_moe", "vocab_size": 262144, "hidden_size": 4096,
            "intermediate_size": 8192, "num_hidden_layers": 3, "num_attention_heads": 64,
            "num_key_value_heads": 4, "head_dim": 64, "moe_intermediate_size": 1024,
            "num_experts": 128, "num_shared_experts": 1, "num_experts_per_tok": 6,
            "use_qkv_bias": true});
        let spec = sarvam_from_hf(&HfConfig(&cfg)).unwrap();
        spec.validate().unwrap();
        assert!(spec.qkv_bias && spec.qk_norm);
        assert_eq!((spec.rope.theta, spec.rotary_dim), (8e6, None));
        let m = spec.experts.unwrap();
        assert_eq!((m.num_experts, m.shared_intermediate_size), (128, 1024));
        assert_eq!(m.layers, [false, true, true]);
        assert!(m.normalize && m.correction_bias);
        assert_eq!(m.routed_scaling, 2.5);
    }

    /// GLM-4.5-Air's config.json (fewer layers).
    #[test]
    fn air_shapes() {
        let cfg = json!({"model_type": "glm4_moe", "hidden_size": 4096, "intermediate_size": 10944,
            "moe_intermediate_size": 1408, "num_hidden_layers": 4, "num_attention_heads": 96,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151552,
            "partial_rotary_factor": 0.5, "attention_bias": true, "use_qk_norm": false,
            "n_routed_experts": 128, "num_experts_per_tok": 8, "n_shared_experts": 1,
            "first_k_dense_replace": 1, "n_group": 1, "topk_group": 1, "norm_topk_prob": true,
            "routed_scaling_factor": 1.0, "rope_theta": 1000000, "max_position_embeddings": 131072});
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        assert_eq!((spec.head_dim, spec.rotary_dim), (128, Some(64)));
        assert!(spec.qkv_bias && !spec.qk_norm);
        let e = spec.experts.unwrap();
        assert_eq!(e.layers, vec![false, true, true, true]);
        assert_eq!(
            (e.group_score, e.correction_bias),
            (GroupScore::TopTwoSum, true)
        );
        assert_eq!(e.shared_intermediate_size, 1408);
    }
}
