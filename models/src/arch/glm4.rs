//! GLM-4 (`glm4`: GLM-4-9B-0414, GLM-4-32B-0414, GLM-Z1): grouped-query attention with q/k/v
//! biases, RoPE over the first half of each head in interleaved pairs (dimensions 2i, 2i + 1;
//! `partial_rotary_factor` 0.5), a norm before and after both the attention and the FFN
//! (`post_self_attn_layernorm`, `post_mlp_layernorm`: Gemma's sandwich), and gate and up in one
//! `gate_up_proj` (llama.cpp: a double-height `ffn_up`). Its predecessor GLM-4-9B-chat (HF
//! `glm`, llama.cpp `chatglm`) is the same without the norms after: its GGUFs converted from
//! the original ChatGLM checkpoints hold q/k/v as one `attn_qkv` with its bias (split at load).
use super::{
    base_from_gguf, base_from_hf, rotary_dim_from_gguf, rotary_dim_from_hf, skip_prediction_layers,
};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = glm_from_hf(c, Arch::Glm4)?;
    spec.sandwich_norms = true;
    Ok(spec)
}

/// GLM-4-9B-chat as transformers ports it (`glm`): GLM-4's blocks without the norms after.
pub fn glm_from_hf(c: &HfConfig, arch: Arch) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, arch)?;
    // transformers' `Glm4Config` / `GlmConfig` default both to the released models' values.
    spec.qkv_bias = c.bool("attention_bias", true);
    spec.rotary_dim = rotary_dim_from_hf(c, spec.head_dim, Some(0.5))?;
    spec.rope.style = RopeStyle::Interleaved;
    Ok(spec)
}

/// A llama.cpp `chatglm` GGUF (GLM-4-9B-chat; ChatGLM3's are the same blocks): the heads as
/// stored, rotated over `rope.dimension_count` in interleaved pairs, q/k/v joined or apart.
pub fn chatglm_from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Glm, RopeStyle::Interleaved)?;
    spec.qkv_bias = g.contains(&layer(0, "attn_q.bias")) || g.contains(&layer(0, "attn_qkv.bias"));
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    Ok(spec)
}

/// A llama.cpp `glm4` GGUF: the heads as transformers stores them (its converter permutes
/// nothing; llama.cpp rotates them as interleaved pairs). Prediction layers counted in the
/// blocks (`nextn_predict_layers`, GLM-OCR) are not run. GLM-4V's, converted for M-RoPE
/// (`rope.dimension_sections`, q/k rows permuted), are refused.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    if g.array_len("glm4.rope.dimension_sections").is_some() {
        return Err(ModelError::Config(
            "glm4 with M-RoPE (`rope.dimension_sections`, a GLM-4V conversion) is not supported"
                .into(),
        ));
    }
    let mut spec = base_from_gguf(g, Arch::Glm4, RopeStyle::Interleaved)?;
    skip_prediction_layers(&mut spec, g)?;
    spec.qkv_bias = g.contains(&layer(0, "attn_q.bias"));
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    spec.sandwich_norms = true;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// GLM-4-9B-0414's config.json (fewer layers).
    #[test]
    fn nine_b_shapes() {
        let cfg = json!({"model_type": "glm4", "hidden_size": 4096, "intermediate_size": 13696,
            "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 2,
            "head_dim": 128, "vocab_size": 151552, "partial_rotary_factor": 0.5,
            "attention_bias": true, "rope_theta": 10000.0, "rms_norm_eps": 1e-05,
            "max_position_embeddings": 32768, "hidden_act": "silu"});
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        assert_eq!((spec.head_dim, spec.rotary_dim), (128, Some(64)));
        assert_eq!(spec.rope.style, RopeStyle::Interleaved);
        assert!(spec.qkv_bias && spec.sandwich_norms && spec.pre_norms);
    }

    /// THUDM/glm-4-9b-chat-hf's config.json (fewer layers): no norms after.
    #[test]
    fn glm_4_9b_chat_has_no_norms_after() {
        let cfg = json!({"model_type": "glm", "hidden_size": 4096, "intermediate_size": 13696,
            "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 2,
            "head_dim": 128, "vocab_size": 151552, "partial_rotary_factor": 0.5,
            "attention_bias": true, "rope_theta": 10000.0, "rms_norm_eps": 1.5625e-07,
            "max_position_embeddings": 131072, "hidden_act": "silu"});
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(spec.arch, Arch::Glm);
        assert_eq!((spec.head_dim, spec.rotary_dim), (128, Some(64)));
        assert!(spec.qkv_bias && !spec.sandwich_norms);
    }
}
