//! MiniMax-M2 (`minimax_m2`; llama.cpp's `minimax-m2`: MiniMax-M2 / M2.1, 230B with 10B
//! active): grouped-query attention with RMSNorms of q and k over their whole projections
//! before RoPE, RoPE (NeoX halves) over the first `rotary_dim` of each head, and in every layer
//! a mixture of experts scored by sigmoid, chosen by score plus a correction bias
//! (`e_score_correction_bias`), the chosen scores renormalized; no shared experts.
use super::experts::softmax_top_k;
use super::{base_from_gguf, base_from_hf, rotary_dim_from_gguf, rotary_dim_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, ExpertScoring, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::MinimaxM2)?;
    // The released configs name the rotated width (`rotary_dim`); transformers 5 saves it as
    // `partial_rotary_factor`.
    spec.rotary_dim = match c.opt_usize("rotary_dim")? {
        Some(r) if r < spec.head_dim => Some(r),
        Some(_) => None,
        None => rotary_dim_from_hf(c, spec.head_dim, None)?,
    };
    if !c.bool("use_qk_norm", true) || c.str("qk_norm_type").is_some_and(|t| t != "per_layer") {
        return Err(ModelError::Config(
            "minimax_m2: only q/k norms over whole projections (`qk_norm_type: per_layer`) are \
             supported"
                .into(),
        ));
    }
    spec.qk_norm = true;
    spec.qk_norm_whole = true;
    let mut experts = softmax_top_k(
        c.usize("num_local_experts")?,
        c.usize("num_experts_per_tok")?,
        c.usize("intermediate_size")?,
        true,
        vec![true; spec.num_layers],
    );
    experts.scoring = match c.str("scoring_func").unwrap_or("sigmoid") {
        "sigmoid" => ExpertScoring::Sigmoid,
        "softmax" => ExpertScoring::Softmax,
        other => {
            return Err(ModelError::Config(format!(
                "minimax_m2: scoring_func `{other}`"
            )))
        }
    };
    experts.correction_bias = c.bool("use_routing_bias", true);
    spec.experts = Some(experts);
    Ok(spec)
}

/// llama.cpp's `minimax-m2` GGUF: the experts stacked, the correction bias as `exp_probs_b`,
/// the rotated width as `rope.dimension_count`; its converter writes no gating function, and
/// the routers score by sigmoid, as transformers runs them.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::MinimaxM2, RopeStyle::Neox)?;
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    spec.qk_norm = true;
    spec.qk_norm_whole = true;
    let mut experts = super::deepseek::sigmoid_gguf_experts(g, spec.num_layers)?;
    // llama.cpp always renormalizes this model's chosen weights, and scales them by nothing.
    (experts.normalize, experts.routed_scaling) = (true, 1.0);
    spec.experts = Some(experts);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// MiniMaxAI/MiniMax-M2's config.json (fewer layers).
    #[test]
    fn minimax_m2_routes_by_sigmoid_with_a_correction_bias_under_whole_qk_norms() {
        let cfg = json!({"model_type": "minimax_m2", "architectures": ["MiniMaxM2ForCausalLM"],
            "vocab_size": 200064, "hidden_size": 3072, "intermediate_size": 1536,
            "num_hidden_layers": 4, "num_attention_heads": 48, "num_key_value_heads": 8,
            "head_dim": 128, "rotary_dim": 64, "rope_theta": 5000000, "rms_norm_eps": 1e-6,
            "num_local_experts": 256, "num_experts_per_tok": 8, "scoring_func": "sigmoid",
            "use_routing_bias": true, "use_qk_norm": true, "qk_norm_type": "per_layer",
            "shared_intermediate_size": 0, "max_position_embeddings": 196608,
            "tie_word_embeddings": false});
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, Arch::MinimaxM2);
        assert_eq!(
            (spec.rotary_dim, spec.q_dim(), spec.kv_dim()),
            (Some(64), 6144, 1024)
        );
        assert!(spec.qk_norm && spec.qk_norm_whole);
        let m = spec.experts.as_ref().unwrap();
        assert_eq!(m.scoring, ExpertScoring::Sigmoid);
        assert!(m.correction_bias && m.normalize);
        assert_eq!(
            (
                m.num_experts,
                m.experts_per_token,
                m.shared_intermediate_size
            ),
            (256, 8, 0)
        );
        assert_eq!(m.layers, vec![true; 4]);
        let mut per_head = cfg.clone();
        per_head["qk_norm_type"] = "per_head".into();
        assert!(crate::arch::spec_from_hf(&per_head).is_err());
    }
}
