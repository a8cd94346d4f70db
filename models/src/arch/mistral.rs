//! Mistral: llama with a sliding attention window on every layer, or on the layers
//! `layer_types` names (transformers' `ministral`: Ministral-8B's interleaved windows).
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::Result;
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Mistral)?;
    if c.0.get("layer_types").is_none() {
        let window = c.opt_usize("sliding_window")?;
        spec.layer_windows = vec![window; spec.num_layers];
    }
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Mistral, RopeStyle::Interleaved)?;
    let window = g.get_usize(&format!("{}.attention.sliding_window", g.architecture()?));
    spec.layer_windows = vec![window; spec.num_layers];
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// A `ministral` config: windows on the layers `layer_types` calls sliding, as transformers
    /// runs them; without `layer_types`, on every layer.
    #[test]
    fn ministral_windows_follow_layer_types() {
        let mut cfg = json!({"model_type": "ministral", "vocab_size": 131072,
            "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 4,
            "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
            "rms_norm_eps": 1e-5, "rope_theta": 100000000.0, "sliding_window": 32768,
            "max_position_embeddings": 32768, "tie_word_embeddings": false,
            "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention",
                            "full_attention"]});
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert_eq!(
            spec.layer_windows,
            [Some(32768), Some(32768), Some(32768), None]
        );
        cfg.as_object_mut().unwrap().remove("layer_types");
        let spec = crate::arch::spec_from_hf(&cfg).unwrap();
        assert!(spec.layer_windows.iter().all(|w| *w == Some(32768)));
    }
}
