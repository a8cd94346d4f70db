//! StableLM (`stablelm`: StableLM-2-1.6B, StableLM-Zephyr-3B, Stable Code 3B, StableLM-3B-4E1T):
//! llama's projections and SwiGLU under LayerNorms with biases, RoPE over a quarter of each
//! head (`partial_rotary_factor`), q/k/v biases where `use_qkv_bias` says, sequential blocks or,
//! with `use_parallel_residual`, parallel ones reading one norm. StableLM-2-12B adds LayerNorms
//! of q and k before RoPE (`qk_layernorm`), each head its own weights: checkouts hold a module
//! per head (`q_layernorm.norms.H`, stacked at load), GGUFs one `[heads, head_dim]` tensor.
use super::{
    base_from_gguf, base_from_hf, layer_norm_eps_from_gguf, rotary_dim_from_gguf,
    rotary_dim_from_hf,
};
use crate::backend::RopeStyle;
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::WeightSource;

/// transformers' `StableLmConfig` defaults where config.json is silent.
const DEFAULT_EPS: f32 = 1e-5;
const DEFAULT_ROTARY_FACTOR: f32 = 0.25;

fn stablelm_common(spec: &mut ModelSpec, parallel: bool, qk_norms: bool) {
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.parallel_block = parallel;
    spec.qk_norm = qk_norms;
    spec.qk_norm_per_head = qk_norms;
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Stablelm)?;
    spec.rms_eps = c.f32("layer_norm_eps", DEFAULT_EPS)?;
    spec.rotary_dim = rotary_dim_from_hf(c, spec.head_dim, Some(DEFAULT_ROTARY_FACTOR))?;
    spec.qkv_bias = c.bool("use_qkv_bias", false);
    stablelm_common(
        &mut spec,
        c.bool("use_parallel_residual", false),
        c.bool("qk_layernorm", false),
    );
    Ok(spec)
}

/// A `stablelm` GGUF: q/k rows as they are (NeoX RoPE), biases where the file has them; blocks
/// are parallel where the layers have no norm before the FFN (as llama.cpp decides).
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Stablelm, RopeStyle::Neox)?;
    spec.rms_eps = layer_norm_eps_from_gguf(g)?;
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    spec.qkv_bias = g.contains("blk.0.attn_q.bias");
    stablelm_common(
        &mut spec,
        !g.contains("blk.0.ffn_norm.weight"),
        g.contains("blk.0.attn_q_norm.weight"),
    );
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Activation;

    /// stabilityai/stablelm-2-1_6b's config.json, as published.
    fn stablelm2_config() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["StableLmForCausalLM"], "model_type": "stablelm",
            "bos_token_id": 100257, "eos_token_id": 100257, "hidden_act": "silu",
            "hidden_size": 2048, "intermediate_size": 5632, "layer_norm_eps": 1e-5,
            "max_position_embeddings": 4096, "num_attention_heads": 32,
            "num_hidden_layers": 24, "num_key_value_heads": 32, "partial_rotary_factor": 0.25,
            "qk_layernorm": false, "rope_theta": 10000, "tie_word_embeddings": false,
            "use_parallel_residual": false, "use_qkv_bias": true, "vocab_size": 100352
        })
    }

    #[test]
    fn stablelm2_rotates_a_quarter_of_each_head_under_biased_layer_norms() {
        let spec = crate::arch::spec_from_hf(&stablelm2_config()).unwrap();
        assert_eq!(spec.arch, Arch::Stablelm);
        assert_eq!((spec.head_dim, spec.rotary_dim), (64, Some(16)));
        assert!(spec.layer_norm && spec.norm_bias && spec.qkv_bias && spec.gated_ffn);
        assert!(!spec.parallel_block);
        assert_eq!(spec.activation, Activation::Silu);
        let mut c = stablelm2_config();
        c["use_parallel_residual"] = true.into();
        c["use_qkv_bias"] = false.into();
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert!(spec.parallel_block && !spec.parallel_ffn_norm && !spec.qkv_bias);
        // StableLM-2-12B: LayerNorms of q and k, each head its own weights.
        c["qk_layernorm"] = true.into();
        let spec = crate::arch::spec_from_hf(&c).unwrap();
        assert!(spec.qk_norm && spec.qk_norm_per_head);
        spec.validate().unwrap();
    }
}
