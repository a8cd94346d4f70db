//! ERNIE 4.5 (dense: ERNIE-4.5-0.3B; `ernie4_5`): llama whose RoPE pairs dimensions 2i and
//! 2i + 1 of each head (transformers rotates them so; llama.cpp's converter permutes nothing and
//! rotates them as interleaved pairs), in checkouts and GGUFs alike.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if c.bool("use_bias", false) {
        // Biases on every projection (the FFN's too): no released model has them.
        return Err(ModelError::Config(
            "ERNIE 4.5 with `use_bias` (biases on every projection) is not supported".into(),
        ));
    }
    let mut spec = base_from_hf(c, Arch::Ernie45)?;
    spec.rope.style = RopeStyle::Interleaved;
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    base_from_gguf(g, Arch::Ernie45, RopeStyle::Interleaved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// ERNIE-4.5-0.3B's config.json (fewer layers); a variant with biases refused.
    #[test]
    fn small_shapes() {
        let mut cfg = json!({"model_type": "ernie4_5", "hidden_size": 1024,
            "intermediate_size": 3072, "num_hidden_layers": 2, "num_attention_heads": 16,
            "num_key_value_heads": 2, "head_dim": 128, "vocab_size": 103424,
            "rope_theta": 500000.0, "rms_norm_eps": 1e-05, "use_bias": false,
            "tie_word_embeddings": true, "max_position_embeddings": 131072});
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        assert_eq!(spec.rope.style, RopeStyle::Interleaved);
        assert_eq!((spec.head_dim, spec.num_kv_heads), (128, 2));
        cfg["use_bias"] = json!(true);
        assert!(from_hf(&HfConfig(&cfg)).is_err());
    }
}
