//! Phi-3 (and Phi-3.5, Phi-4, Phi-4-mini, which keep its architecture): llama with q/k/v stored
//! as one tensor (`qkv_proj`; llama.cpp's `attn_qkv`) and gate/up as one (`gate_up_proj`;
//! llama.cpp's double-height `ffn_up`), loaded as the joined products candor runs anyway
//! (`Projections::joined`), a sliding window on every layer where the config sets one, RoPE over
//! part of each head where `partial_rotary_factor` says (Phi-4-mini: 96 of 128), and LongRoPE
//! (`rope_scaling` `longrope`; llama.cpp's `rope_factors_long`/`_short` tensors) for the
//! 128k-context models.
use super::{base_from_gguf, base_from_hf, rotary_dim_from_gguf, rotary_dim_from_hf};
use crate::backend::RopeStyle;
use crate::error::{ModelError, Result};
use crate::spec::{longrope_attention_factor, Arch, HfConfig, ModelSpec, RopeScaling};
use crate::weights::gguf::GgufFile;
use crate::weights::{require, WeightSource};

pub fn from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::Phi3)?;
    let window = c.opt_usize("sliding_window")?;
    spec.layer_windows = vec![window; spec.num_layers];
    spec.rotary_dim = rotary_dim_from_hf(c, spec.head_dim, None)?;
    check_longrope(&spec)?;
    Ok(spec)
}

pub fn from_gguf(g: &GgufFile) -> Result<ModelSpec> {
    let mut spec = base_from_gguf(g, Arch::Phi3, RopeStyle::Neox)?;
    spec.rotary_dim = rotary_dim_from_gguf(g, spec.head_dim)?;
    let window = g.get_usize("phi3.attention.sliding_window");
    spec.layer_windows = vec![window; spec.num_layers];
    if g.contains("rope_factors_long.weight") || g.contains("rope_factors_short.weight") {
        let factors = |name: &str| -> Result<Vec<f32>> {
            Ok(require(g, name)?
                .to_f32()?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let original = g
            .get_usize("phi3.rope.scaling.original_context_length")
            .ok_or_else(|| {
                ModelError::Config(
                    "phi3: LongRoPE factors without rope.scaling.original_context_length".into(),
                )
            })?;
        let factor = spec.max_position as f32 / original as f32;
        spec.rope.scaling = RopeScaling::LongRope {
            short_factor: factors("rope_factors_short.weight")?,
            long_factor: factors("rope_factors_long.weight")?,
            original_max_position: original,
            attention_factor: g
                .get_f64("phi3.rope.scaling.attn_factor")
                .map_or_else(|| longrope_attention_factor(factor, original), |a| a as f32),
            long: spec.max_position > original,
        };
    }
    check_longrope(&spec)?;
    Ok(spec)
}

/// LongRoPE's factors must cover the rotated pairs.
fn check_longrope(spec: &ModelSpec) -> Result<()> {
    if let RopeScaling::LongRope {
        short_factor,
        long_factor,
        ..
    } = &spec.rope.scaling
    {
        let pairs = spec.rotary_dim.unwrap_or(spec.head_dim) / 2;
        if short_factor.len() != pairs || long_factor.len() != pairs {
            return Err(ModelError::Config(format!(
                "phi3: LongRoPE factors ({} short, {} long) for {pairs} rotated pairs",
                short_factor.len(),
                long_factor.len()
            )));
        }
    }
    Ok(())
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
    fn partial_rotary_and_longrope_are_read() {
        let cfg = config(
            json!({"partial_rotary_factor": 0.75, "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
            "rope_scaling": {"type": "longrope", "short_factor": vec![1.0; 6],
                             "long_factor": vec![2.0; 6]}}),
        );
        let spec = from_hf(&HfConfig(&cfg)).unwrap();
        assert_eq!(spec.rotary_dim, Some(12));
        match spec.rope.scaling {
            RopeScaling::LongRope {
                long,
                attention_factor,
                original_max_position,
                ..
            } => {
                assert!(long);
                assert_eq!(original_max_position, 4096);
                let want = (1.0 + 32f32.ln() / 4096f32.ln()).sqrt();
                assert!((attention_factor - want).abs() < 1e-6);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            from_hf(&HfConfig(&config(json!({"partial_rotary_factor": 1.0}))))
                .unwrap()
                .rotary_dim,
            None
        );
        let short = config(
            json!({"rope_scaling": {"type": "longrope", "short_factor": [1.0],
                                                   "long_factor": [2.0]},
                                  "original_max_position_embeddings": 64}),
        );
        let e = from_hf(&HfConfig(&short)).unwrap_err();
        assert!(e.to_string().contains("LongRoPE factors"), "{e}");
    }
}
