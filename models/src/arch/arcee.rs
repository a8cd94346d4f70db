//! Arcee's AFM (`arcee`: AFM-4.5B): llama's attention and RMSNorms with an ungated MLP through
//! the squared ReLU (`up_proj`, `relu2`, `down_proj`), RoPE scaled by YaRN for its long
//! context. llama.cpp's converter permutes q/k rows as for llama.
use super::{base_from_gguf, base_from_hf};
use crate::backend::{Activation, RopeStyle};
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

fn arcee_common(spec: &mut ModelSpec) {
    spec.gated_ffn = false;
}

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if c.bool("mlp_bias", false) {
        return Err(ModelError::Config(
            "config.json: Arcee with `mlp_bias` is not supported".into(),
        ));
    }
    let mut spec = base_from_hf(c, Arch::Arcee)?;
    arcee_common(&mut spec);
    Ok(spec)
}

/// An `arcee` GGUF: q/k rows permuted as llama's, the squared ReLU llama.cpp runs for it.
pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Arcee, RopeStyle::Interleaved)?;
    arcee_common(&mut spec);
    spec.activation = Activation::Relu2;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// arcee-ai/AFM-4.5B's config.json, as published (less its initializer range).
    fn afm_config() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["ArceeForCausalLM"], "attention_bias": false,
            "attention_dropout": 0.0, "bos_token_id": 128000, "eos_token_id": 128003,
            "head_dim": 128, "hidden_act": "relu2", "hidden_size": 2560,
            "intermediate_size": 18432, "max_position_embeddings": 65536, "mlp_bias": false,
            "model_type": "arcee", "num_attention_heads": 20, "num_hidden_layers": 36,
            "num_key_value_heads": 4, "rms_norm_eps": 1e-05,
            "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 20.0,
                             "mscale": 1.0, "mscale_all_dim": 1.0,
                             "original_max_position_embeddings": 4096, "rope_type": "yarn"},
            "rope_theta": 10000.0, "tie_word_embeddings": false, "vocab_size": 128004
        })
    }

    #[test]
    fn afm_runs_an_ungated_squared_relu_under_rms_norms() {
        let spec = crate::arch::spec_from_hf(&afm_config()).unwrap();
        assert_eq!(spec.arch, Arch::Arcee);
        assert!(!spec.gated_ffn && !spec.layer_norm && spec.unfused_blocks());
        assert_eq!(spec.activation, Activation::Relu2);
        assert_eq!(
            (spec.num_heads, spec.num_kv_heads, spec.head_dim),
            (20, 4, 128)
        );
        let mut c = afm_config();
        c["mlp_bias"] = true.into();
        assert!(crate::arch::spec_from_hf(&c).is_err());
    }
}
