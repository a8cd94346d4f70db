//! rednote's dots.llm1 (`dots1`: dots.llm1.base / .inst, 142B with 14B active): Qwen3's
//! attention (per-head q/k RMSNorms, no biases) and DeepSeek-V3's experts (sigmoid scores, a
//! correction bias for the choice, normalized and scaled weights, shared experts) past
//! `first_k_dense_replace` dense layers.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Dots1)?;
    spec.qk_norm = true;
    spec.experts = super::deepseek::experts(c, true, spec.num_layers)?;
    if spec.experts.is_none() {
        return Err(ModelError::Config(
            "config.json: dots1 without `n_routed_experts`".into(),
        ));
    }
    Ok(spec)
}

/// A `dots1` GGUF (NeoX rows as they are, as for Qwen): llama.cpp's converter writes no
/// gating function, and the model's routers score by sigmoid, as transformers runs them.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Dots1, RopeStyle::Neox)?;
    spec.qk_norm = true;
    spec.experts = Some(super::deepseek::sigmoid_gguf_experts(g, spec.num_layers)?);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ExpertScoring;
    use serde_json::json;

    /// rednote-hilab/dots.llm1.inst's config.json (fewer layers).
    #[test]
    fn dots1_routes_as_deepseek_v3_under_qwen3_attention() {
        let cfg = json!({"model_type": "dots1", "architectures": ["Dots1ForCausalLM"],
            "vocab_size": 152064, "hidden_size": 4096, "intermediate_size": 10944,
            "moe_intermediate_size": 1408, "num_hidden_layers": 3, "num_attention_heads": 32,
            "num_key_value_heads": 32, "head_dim": 128, "n_routed_experts": 128,
            "n_shared_experts": 2, "num_experts_per_tok": 6, "first_k_dense_replace": 1,
            "norm_topk_prob": true, "routed_scaling_factor": 2.5, "n_group": 1,
            "topk_group": 1, "rms_norm_eps": 1e-5, "rope_theta": 10000000.0,
            "tie_word_embeddings": false, "max_position_embeddings": 32768,
            "attention_bias": false});
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, Arch::Dots1);
        assert!(spec.qk_norm);
        let m = spec.experts.as_ref().unwrap();
        assert_eq!(m.scoring, ExpertScoring::Sigmoid);
        assert!(m.correction_bias && m.normalize);
        assert_eq!((m.routed_scaling, m.shared_intermediate_size), (2.5, 2816));
        assert_eq!(m.layers, [false, true, true]);
    }
}
