//! DeepSeek-V2 and V3 (`deepseek_v2`, `deepseek_v3`; Kimi K2 and Moonlight keep V3's
//! architecture): latent attention in every layer (`crate::mla`) and, past the first dense
//! layers, mixture-of-experts FFNs with shared experts (`crate::moe`).
//!
//! The spec's `head_dim` and `num_kv_heads` are the cache's: every head keeps its own key and
//! value, `max(qk_head_dim, v_head_dim)` wide (see `crate::mla` for why).
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{
    yarn_mscale, Arch, ExpertScoring, GroupScore, HfConfig, LatentAttention, MixtureOfExperts,
    ModelSpec, RopeScaling,
};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

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

/// Mistral 4 (`mistral4`, the text model of Mistral Small 4's `mistral3` checkouts):
/// DeepSeek-V3's latent attention and experts, the router scoring by softmax (groups by their
/// two best, no correction bias), and Ministral 3's query temperature.
pub fn mistral4_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = from_hf(c, true)?;
    spec.arch = Arch::Mistral4;
    if let Some(m) = spec.experts.as_mut() {
        m.scoring = ExpertScoring::Softmax;
        m.group_score = GroupScore::TopTwoSum;
        m.correction_bias = false;
    }
    spec.attn_temperature = super::mistral::llama4_scaling(c)?;
    Ok(spec)
}

/// GLM-4.7-Flash (`glm4_moe_lite`): DeepSeek-V3's latent attention and experts (GLM-4.5's
/// router is V3's), the dense and expert layers listed in `mlp_layer_types` (`dense` /
/// `sparse`; without the list, the first layer dense).
pub fn glm4_moe_lite_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = from_hf(c, true)?;
    let layers = listed_moe_layers(c, spec.num_layers, 1)?;
    if let Some(m) = spec.experts.as_mut() {
        m.layers = layers;
    }
    Ok(spec)
}

/// The layers with experts as `mlp_layer_types` lists them (`dense` / `sparse`); without the
/// list, all but the first `first_dense`.
pub(crate) fn listed_moe_layers(c: &HfConfig, n: usize, first_dense: usize) -> Result<Vec<bool>> {
    Ok(match c.0.get("mlp_layer_types").filter(|v| !v.is_null()) {
        None => (0..n).map(|l| l >= first_dense).collect(),
        Some(list) => {
            let bad = || {
                ModelError::Config(format!(
                    "config.json: `mlp_layer_types` must name `dense` or `sparse` for each of \
                     the {n} layers"
                ))
            };
            let types = list.as_array().filter(|t| t.len() == n).ok_or_else(bad)?;
            types
                .iter()
                .map(|t| match t.as_str() {
                    Some("sparse") => Ok(true),
                    Some("dense") => Ok(false),
                    _ => Err(bad()),
                })
                .collect::<Result<Vec<bool>>>()?
        }
    })
}

/// A llama.cpp `deepseek2` GGUF. Its converter writes the latent attention either as HF has
/// it (`attn_kv_b`; heads and head sizes as HF's) or, since llama.cpp attends in the latent
/// space, as one KV head of `kv_lora_rank + rope` with the head sizes under `*_mla` keys and
/// `attn_kv_b` split into `attn_k_b` / `attn_v_b`: both load.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    // Kimi Linear's latent attention is written under its own architecture's keys.
    let arch = g.architecture()?;
    let k = |s: &str| format!("{arch}.{s}");
    // Pairs 2i, 2i+1 (llama.cpp's "normal" RoPE for deepseek2, on weights it does not permute).
    let mut spec = base_from_gguf(g, Arch::Deepseek, RopeStyle::Interleaved)?;
    let rope = g.require_usize(&k("rope.dimension_count"))?;
    let (qk, v) = match g.get_usize(&k("attention.key_length_mla")) {
        Some(qk) => (qk, g.require_usize(&k("attention.value_length_mla"))?),
        None => (
            g.require_usize(&k("attention.key_length"))?,
            g.require_usize(&k("attention.value_length"))?,
        ),
    };
    let latent = LatentAttention {
        q_lora_rank: g.get_usize(&k("attention.q_lora_rank")),
        kv_lora_rank: g.require_usize(&k("attention.kv_lora_rank"))?,
        qk_nope_head_dim: qk.checked_sub(rope).ok_or_else(|| {
            ModelError::Config(format!(
                "deepseek2: key length {qk} under the rotary {rope}"
            ))
        })?,
        qk_rope_head_dim: rope,
        v_head_dim: v,
    };
    spec.head_dim = qk.max(v);
    spec.num_kv_heads = spec.num_heads;
    let mut scale = 1.0 / (qk as f32).sqrt();
    if let RopeScaling::Yarn {
        factor,
        ref mut attention_factor,
        ..
    } = spec.rope.scaling
    {
        // The converter keeps `0.1 * mscale_all_dim` as the log multiplier: the whole head's
        // temperature, applied to the scores. The rotary part's own factor is HF's
        // `mscale / mscale_all_dim`, 1 in every released model, and not in the file.
        let all_dim = g
            .get_f64(&k("rope.scaling.yarn_log_multiplier"))
            .unwrap_or(0.0) as f32
            * 10.0;
        if all_dim != 0.0 {
            let m = yarn_mscale(factor, all_dim);
            scale *= m * m;
        }
        *attention_factor = 1.0;
    }
    spec.attn_scale = scale;
    spec.latent_attention = Some(latent);
    spec.experts = gguf_experts(g, spec.num_layers)?;
    Ok(spec)
}

/// DeepSeek-style experts from a GGUF's `{arch}.*` keys (`deepseek2`, `glm4moe`).
/// None where the file has no `{arch}.expert_count`.
pub(crate) fn gguf_experts(g: &GgufFile, num_layers: usize) -> Result<Option<MixtureOfExperts>> {
    let arch = g.architecture()?;
    let k = |s: &str| format!("{arch}.{s}");
    let Some(num_experts) = g.get_usize(&k("expert_count")).filter(|&n| n > 0) else {
        return Ok(None);
    };
    let first_dense = g.get_usize(&k("leading_dense_block_count")).unwrap_or(0);
    let ff = g.require_usize(&k("expert_feed_forward_length"))?;
    // llama.cpp's gating function ids: 1 softmax, 2 sigmoid (V3).
    let scoring = match g.get_usize(&k("expert_gating_func")).unwrap_or(1) {
        1 => ExpertScoring::Softmax,
        2 => ExpertScoring::Sigmoid,
        other => {
            return Err(ModelError::Config(format!(
                "{arch}: unsupported expert gating function {other}"
            )))
        }
    };
    let correction_bias =
        (first_dense..num_layers).any(|l| g.contains(&layer(l, "exp_probs_b.bias")));
    let groups = g.get_usize(&k("expert_group_count")).unwrap_or(1).max(1);
    Ok(Some(MixtureOfExperts {
        num_experts,
        experts_per_token: g.require_usize(&k("expert_used_count"))?,
        expert_intermediate_size: ff,
        shared_intermediate_size: g.get_usize(&k("expert_shared_count")).unwrap_or(0) * ff,
        shared_gate: false,
        layers: (0..num_layers).map(|l| l >= first_dense).collect(),
        scoring,
        groups,
        topk_groups: g.get_usize(&k("expert_group_used_count")).unwrap_or(groups),
        // V3's routing (sigmoid scores corrected by a bias) scores a group by its two best.
        group_score: if correction_bias {
            GroupScore::TopTwoSum
        } else {
            GroupScore::Max
        },
        correction_bias,
        normalize: g.get_bool(&k("expert_weights_norm")).unwrap_or(false),
        routed_scaling: g.get_f64(&k("expert_weights_scale")).unwrap_or(1.0) as f32,
        weights_scale_inputs: false,
    }))
}

/// `gguf_experts` of an architecture whose every file has them and whose converter writes no
/// gating function where the routers score by sigmoid (dots1, MiniMax-M2: transformers runs
/// them so): a file without `{arch}.expert_count` is refused.
pub(crate) fn sigmoid_gguf_experts(g: &GgufFile, num_layers: usize) -> Result<MixtureOfExperts> {
    let arch = g.architecture()?;
    let mut experts = gguf_experts(g, num_layers)?
        .ok_or_else(|| ModelError::Config(format!("{arch} GGUF without `{arch}.expert_count`")))?;
    if g.get_usize(&format!("{arch}.expert_gating_func")).is_none() {
        experts.scoring = ExpertScoring::Sigmoid;
    }
    Ok(experts)
}

/// The mixture of experts, when `n_routed_experts` is set.
pub(crate) fn experts(
    c: &HfConfig,
    v3: bool,
    num_layers: usize,
) -> Result<Option<MixtureOfExperts>> {
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
        shared_gate: false,
        layers,
        scoring,
        groups,
        topk_groups,
        group_score,
        correction_bias,
        normalize,
        // V2 scales the weights only when it does not normalize them; V3 does both.
        routed_scaling: if !v3 && normalize { 1.0 } else { scaling },
        weights_scale_inputs: false,
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
