//! DeepSeek-V2 and V3 (`deepseek_v2`, `deepseek_v3`; Kimi K2 and Moonlight keep V3's
//! architecture): latent attention in every layer (`crate::mla`) and, past the first dense
//! layers, mixture-of-experts FFNs with shared experts (`crate::moe`).
//!
//! The spec's `head_dim` and `num_kv_heads` are the cache's: every head keeps its own key and
//! value, `max(qk_head_dim, v_head_dim)` wide (see `crate::mla` for why).
use super::base_from_hf;
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{
    yarn_mscale, Arch, ExpertScoring, GroupScore, HfConfig, LatentAttention, MixtureOfExperts,
    ModelSpec,
};

pub fn from_hf(c: &HfConfig, v3: bool) -> Result<ModelSpec> {
    if c.bool("attention_bias", false) {
        return Err(ModelError::Config(
            "deepseek: biases on the latent attention's projections are not supported".into(),
        ));
    }
    let mut spec = base_from_hf(c, Arch::Deepseek)?;
    let latent = LatentAttention {
        q_lora_rank: c.opt_usize("q_lora_rank")?,
        kv_lora_rank: c.usize("kv_lora_rank")?,
        qk_nope_head_dim: c.usize("qk_nope_head_dim")?,
        qk_rope_head_dim: c.usize("qk_rope_head_dim")?,
        v_head_dim: c.usize("v_head_dim")?,
    };
    let qk = latent.qk_head_dim();
    spec.head_dim = qk.max(latent.v_head_dim);
    spec.num_kv_heads = spec.num_heads;
    // YaRN's temperature of the whole head (`mscale_all_dim`) scales the scores twice over (q
    // and k); the rotary part's own factor is folded into the weights (`crate::mla`).
    let mut scale = 1.0 / (qk as f32).sqrt();
    if let Some(rs) = c.0.get("rope_scaling").filter(|v| v.is_object()) {
        let rs = HfConfig(rs);
        let all_dim = rs.opt_f32("mscale_all_dim")?.unwrap_or(0.0);
        if all_dim != 0.0 {
            let m = yarn_mscale(rs.f32("factor", 1.0)?, all_dim);
            scale *= m * m;
        }
    }
    spec.attn_scale = scale;
    // V2 always pairs dimensions 2i and 2i+1 (its complex-number RoPE); V3 does unless
    // `rope_interleave` is false, which pairs i with i + d/2.
    spec.rope.style = if !v3 || c.bool("rope_interleave", true) {
        RopeStyle::Interleaved
    } else {
        RopeStyle::Neox
    };
    spec.latent_attention = Some(latent);
    spec.experts = experts(c, v3, spec.num_layers)?;
    Ok(spec)
}

/// The mixture of experts, when `n_routed_experts` is set.
fn experts(c: &HfConfig, v3: bool, num_layers: usize) -> Result<Option<MixtureOfExperts>> {
    let Some(num_experts) = c.opt_usize("n_routed_experts")? else {
        return Ok(None);
    };
    let first_dense = c.opt_usize("first_k_dense_replace")?.unwrap_or(0);
    let freq = c.opt_usize("moe_layer_freq")?.unwrap_or(1).max(1);
    let layers = (0..num_layers)
        .map(|l| l >= first_dense && l % freq == 0)
        .collect();
    let expert_intermediate_size = c.usize("moe_intermediate_size")?;
    let shared = c.opt_usize("n_shared_experts")?.unwrap_or(0);
    let scoring = match c
        .str("scoring_func")
        .unwrap_or(if v3 { "sigmoid" } else { "softmax" })
    {
        "sigmoid" => ExpertScoring::Sigmoid,
        "softmax" => ExpertScoring::Softmax,
        other => {
            return Err(ModelError::Config(format!(
                "deepseek: unsupported expert scoring `{other}`"
            )))
        }
    };
    let method = c
        .str("topk_method")
        .unwrap_or(if v3 { "noaux_tc" } else { "greedy" });
    let (group_score, correction_bias) = match method {
        "noaux_tc" => (GroupScore::TopTwoSum, true),
        "group_limited_greedy" => (GroupScore::Max, false),
        "greedy" => (GroupScore::Max, false),
        other => {
            return Err(ModelError::Config(format!(
                "deepseek: unsupported expert routing `{other}`"
            )))
        }
    };
    let (groups, topk_groups) = match method {
        "greedy" => (1, 1),
        _ => {
            let groups = c.opt_usize("n_group")?.unwrap_or(1);
            (groups, c.opt_usize("topk_group")?.unwrap_or(groups))
        }
    };
    let normalize = c.bool("norm_topk_prob", false);
    let scaling = c.f32("routed_scaling_factor", 1.0)?;
    Ok(Some(MixtureOfExperts {
        num_experts,
        experts_per_token: c.usize("num_experts_per_tok")?,
        expert_intermediate_size,
        shared_intermediate_size: shared * expert_intermediate_size,
        layers,
        scoring,
        groups,
        topk_groups,
        group_score,
        correction_bias,
        normalize,
        // V2 scales the weights only when it does not normalize them; V3 does both.
        routed_scaling: if !v3 && normalize { 1.0 } else { scaling },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shapes of DeepSeek-V3's config.json (fewer layers and experts).
    fn v3_config() -> serde_json::Value {
        json!({
            "model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432,
            "num_hidden_layers": 4, "num_attention_heads": 128, "num_key_value_heads": 128,
            "vocab_size": 129280, "q_lora_rank": 1536, "kv_lora_rank": 512,
            "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
            "n_routed_experts": 256, "num_experts_per_tok": 8, "moe_intermediate_size": 2048,
            "n_shared_experts": 1, "first_k_dense_replace": 3, "n_group": 8, "topk_group": 4,
            "norm_topk_prob": true, "routed_scaling_factor": 2.5, "topk_method": "noaux_tc",
            "scoring_func": "sigmoid", "max_position_embeddings": 163840,
            "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                             "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
                             "mscale_all_dim": 1.0}
        })
    }

    #[test]
    fn v3_heads_experts_and_yarn_temperature() {
        let spec = from_hf(&HfConfig(&v3_config()), true).unwrap();
        assert_eq!((spec.head_dim, spec.num_kv_heads), (192, 128));
        let m = yarn_mscale(40.0, 1.0);
        assert!((spec.attn_scale - m * m / 192f32.sqrt()).abs() < 1e-7);
        assert_eq!(spec.rope.style, RopeStyle::Interleaved);
        let e = spec.experts.unwrap();
        assert_eq!(e.layers, vec![false, false, false, true]);
        assert_eq!((e.groups, e.topk_groups), (8, 4));
        assert_eq!(e.group_score, GroupScore::TopTwoSum);
        assert!(e.correction_bias && e.normalize);
        assert_eq!(e.shared_intermediate_size, 2048);
        // Both rope factors are 1 for V3 (mscale = mscale_all_dim): nothing to fold.
        assert!(matches!(
            spec.rope.scaling,
            crate::spec::RopeScaling::Yarn { attention_factor, .. } if attention_factor == 1.0
        ));
    }

    #[test]
    fn v2_lite_routes_greedily_over_softmax_scores() {
        let mut c = v3_config();
        for (k, v) in [
            ("model_type", json!("deepseek_v2")),
            ("q_lora_rank", json!(null)),
            ("n_routed_experts", json!(64)),
            ("num_experts_per_tok", json!(6)),
            ("n_shared_experts", json!(2)),
            ("first_k_dense_replace", json!(1)),
            ("n_group", json!(1)),
            ("topk_group", json!(1)),
            ("norm_topk_prob", json!(false)),
            ("routed_scaling_factor", json!(1.0)),
            ("topk_method", json!("greedy")),
            ("scoring_func", json!("softmax")),
        ] {
            c[k] = v;
        }
        let spec = from_hf(&HfConfig(&c), false).unwrap();
        assert_eq!(spec.latent_attention.as_ref().unwrap().q_lora_rank, None);
        let e = spec.experts.unwrap();
        assert_eq!(e.scoring, ExpertScoring::Softmax);
        assert_eq!(
            (e.groups, e.correction_bias, e.normalize),
            (1, false, false)
        );
        assert_eq!(e.layers, vec![false, true, true, true]);
        assert_eq!(e.shared_intermediate_size, 2 * 2048);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let mut c = v3_config();
        c["attention_bias"] = json!(true);
        assert!(from_hf(&HfConfig(&c), true).is_err());
        let mut c = v3_config();
        c["topk_method"] = json!("auction");
        assert!(from_hf(&HfConfig(&c), true)
            .unwrap_err()
            .to_string()
            .contains("auction"));
    }
}
