//! Mistral: llama with a sliding attention window on every layer, or on the layers
//! `layer_types` names (transformers' `ministral`: Ministral-8B's interleaved windows).
//! Ministral 3 (`ministral3`; llama.cpp's `mistral3`): Mistral with YaRN and Llama 4's query
//! temperature past YaRN's original context.
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, AttnTemperature, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use serde_json::Value;

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
    let arch = g.architecture()?;
    let k = |key: &str| format!("{arch}.{key}");
    let window = g.get_usize(&k("attention.sliding_window"));
    spec.layer_windows = vec![window; spec.num_layers];
    // llama.cpp's converter writes Ministral 3's beta as `attention.temperature_scale`; the
    // length is YaRN's original context, as llama.cpp takes it.
    if let Some(beta) = g
        .get_f64(&k("attention.temperature_scale"))
        .filter(|b| *b != 0.0)
    {
        let length = g
            .get_usize(&k("rope.scaling.original_context_length"))
            .unwrap_or(spec.max_position);
        spec.attn_temperature = Some(AttnTemperature::every_layer(beta as f32, length));
    }
    Ok(spec)
}

/// Ministral 3's text model (`ministral3`): Mistral whose RoPE settings (transformers 5's
/// `rope_parameters`, or the 4.x `rope_scaling` made of them) carry `llama_4_scaling_beta`
/// over `original_max_position_embeddings`.
pub fn ministral3_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = from_hf(c)?;
    spec.attn_temperature = llama4_scaling(c)?;
    Ok(spec)
}

/// The query temperature (`llama_4_scaling_beta` over `original_max_position_embeddings`) in
/// a config's RoPE settings (transformers 5's `rope_parameters` or the 4.x `rope_scaling`),
/// where they carry one (Ministral 3, Mistral 4).
pub(crate) fn llama4_scaling(c: &HfConfig) -> Result<Option<AttnTemperature>> {
    let rope = ["rope_parameters", "rope_scaling"]
        .iter()
        .filter_map(|k| c.0.get(*k))
        .find(|r| r.get("llama_4_scaling_beta").is_some());
    if let Some(rope) = rope {
        let beta = rope.get("llama_4_scaling_beta").and_then(Value::as_f64);
        let length = rope
            .get("original_max_position_embeddings")
            .and_then(Value::as_u64);
        let (Some(beta), Some(length)) = (beta, length) else {
            return Err(ModelError::Config(format!(
                "config.json: llama_4_scaling_beta needs a number and \
                 original_max_position_embeddings beside it (got {rope})"
            )));
        };
        return Ok(Some(AttnTemperature::every_layer(
            beta as f32,
            length as usize,
        )));
    }
    Ok(None)
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
