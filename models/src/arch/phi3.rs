//! Phi-3 (and Phi-4, which keeps its architecture): llama with q/k/v stored as one tensor
//! (`qkv_proj`; llama.cpp's `attn_qkv`) and gate/up as one (`gate_up_proj`; llama.cpp's
//! double-height `ffn_up`), loaded as the joined products candor runs anyway
//! (`Projections::joined`), and a sliding window on every layer where the config sets one.
//!
//! Refused by name rather than run wrong: a rotary embedding over part of each head
//! (`partial_rotary_factor`, Phi-4-mini) and LongRoPE (`rope_scaling` `longrope`, llama.cpp's
//! `rope_factors_long`/`_short` tensors; Phi-3.5-mini, the 128k Phi-3 models).
use super::{base_from_gguf, base_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{Arch, HfConfig, ModelSpec};
use crate::weights::gguf::GgufFile;
use crate::weights::WeightSource;

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    if let Some(partial) = c.opt_f32("partial_rotary_factor")? {
        if partial != 1.0 {
            return Err(ModelError::Config(format!(
                "phi3: a rotary embedding over part of each head (partial_rotary_factor \
                 {partial}) is not supported"
            )));
        }
    }
    let longrope =
        c.0.get("rope_scaling")
            .and_then(|s| s.get("type").or_else(|| s.get("rope_type")))
            .and_then(|t| t.as_str())
            .is_some_and(|t| t == "longrope" || t == "su");
    if longrope {
        return Err(longrope_unsupported());
    }
    let mut spec = base_from_hf(c, Arch::Phi3)?;
    let window = c.opt_usize("sliding_window")?;
    spec.layer_windows = vec![window; spec.num_layers];
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    if g.contains("rope_factors_long.weight") || g.contains("rope_factors_short.weight") {
        return Err(longrope_unsupported());
    }
    let mut spec = base_from_gguf(g, Arch::Phi3, RopeStyle::Neox)?;
    let rotated = g.get_usize("phi3.rope.dimension_count");
    if rotated.is_some_and(|r| r != spec.head_dim) {
        return Err(ModelError::Config(format!(
            "phi3: a rotary embedding over {} of each head's {} dimensions is not supported",
            rotated.unwrap_or(0),
            spec.head_dim
        )));
    }
    let window = g.get_usize("phi3.attention.sliding_window");
    spec.layer_windows = vec![window; spec.num_layers];
    Ok(spec)
}

fn longrope_unsupported() -> ModelError {
    ModelError::Config(
        "phi3: LongRoPE scaling (rope_scaling `longrope`, the 128k-context Phi-3 and Phi-3.5 \
         models) is not supported"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({
            "model_type": "phi3", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 512, "sliding_window": 2047
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn the_window_covers_every_layer() {
        let spec = from_hf(&HfConfig(&config(json!({})))).unwrap();
        assert_eq!(spec.layer_windows, vec![Some(2047); 2]);
        let spec = from_hf(&HfConfig(&config(json!({"sliding_window": null})))).unwrap();
        assert_eq!(spec.layer_windows, vec![None; 2]);
    }

    #[test]
    fn partial_rotary_and_longrope_are_refused_by_name() {
        let e = from_hf(&HfConfig(&config(json!({"partial_rotary_factor": 0.75}))));
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("partial_rotary_factor 0.75"));
        assert!(from_hf(&HfConfig(&config(json!({"partial_rotary_factor": 1.0})))).is_ok());
        let longrope = json!({"rope_scaling": {"type": "longrope", "short_factor": [1.0],
                                               "long_factor": [2.0]}});
        let e = from_hf(&HfConfig(&config(longrope)));
        assert!(e.unwrap_err().to_string().contains("LongRoPE"));
    }
}
