//! Seed-OSS (ByteDance Seed-OSS-36B; `seed_oss`): llama with q/k/v biases (`attention_bias`)
//! and optionally one on the output projection (`attention_out_bias`), NeoX RoPE.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::names::layer;
use crate::weights::WeightSource;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if c.bool("mlp_bias", false) {
        return Err(ModelError::Config(
            "Seed-OSS with `mlp_bias` (biases on the FFN's projections) is not supported".into(),
        ));
    }
    let mut spec = base_from_hf(c, Arch::SeedOss)?;
    // The output projection's bias, where there is one, is loaded beside its weight.
    spec.qkv_bias = c.bool("attention_bias", true);
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::SeedOss, RopeStyle::Neox)?;
    spec.qkv_bias = g.contains(&layer(0, "attn_q.bias"));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Seed-OSS-36B's config.json (fewer layers); FFN biases refused.
    #[test]
    fn thirty_six_b_shapes() {
        let mut cfg = json!({"model_type": "seed_oss", "hidden_size": 5120,
            "intermediate_size": 27648, "num_hidden_layers": 2, "num_attention_heads": 80,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 155136,
            "attention_bias": true, "attention_out_bias": false, "mlp_bias": false,
            "rope_theta": 10000000.0, "rms_norm_eps": 1e-06, "max_position_embeddings": 524288});
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        assert!(spec.qkv_bias);
        assert_eq!(
            (spec.head_dim, spec.num_heads, spec.num_kv_heads),
            (128, 80, 8)
        );
        cfg["mlp_bias"] = json!(true);
        assert!(from_hf(&HfConfig(&cfg)).is_err());
    }
}
