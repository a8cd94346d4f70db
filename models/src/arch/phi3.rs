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
use crate::spec::{
    longrope_attention_factor, Arch, ExpertScoring, HfConfig, ModelSpec, RopeScaling,
};
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

/// Phi-3.5-MoE (`phimoe`): Phi-3's attention with q/k/v apart and biased, LayerNorms with
/// biases (`rms_norm_eps` their epsilon), Mixtral's experts (`block_sparse_moe`, two a token)
/// routed by sparsemixer with the config's `router_jitter_noise`, a head with a bias
/// (`lm_head_bias`), LongRoPE as Phi-3's. HF only: llama.cpp's `phimoe` graph routes by a
/// plain softmax over the top two, which is not the model's routing.
pub fn phimoe_from_hf(c: &HfConfig) -> Result<ModelSpec> {
    let mut spec = base_from_hf(c, Arch::PhiMoe)?;
    let window = c.opt_usize("sliding_window")?;
    spec.layer_windows = vec![window; spec.num_layers];
    spec.layer_norm = true;
    spec.norm_bias = true;
    spec.qkv_bias = c.bool("attention_bias", false);
    let mut experts = super::experts::mixtral_from_hf(c, spec.num_layers)?;
    experts.scoring = ExpertScoring::SparseMixer {
        jitter_eps: c.f32("router_jitter_noise", DEFAULT_ROUTER_JITTER)?,
    };
    experts.normalize = false;
    spec.experts = Some(experts);
    // Its LongRoPE scales cos/sin by the config's own `short_mscale` / `long_mscale` (by the
    // context, as its factors) rather than by the factor's formula.
    let scaling = c.0.get("rope_scaling");
    let mscale = |key: &str| scaling.and_then(|s| s.get(key)).and_then(|m| m.as_f64());
    if let (
        RopeScaling::LongRope {
            attention_factor, ..
        },
        Some(short),
        Some(long),
    ) = (
        &mut spec.rope.scaling,
        mscale("short_mscale"),
        mscale("long_mscale"),
    ) {
        if short != long {
            return Err(ModelError::Config(format!(
                "config.json: phimoe LongRoPE with short_mscale {short} and long_mscale {long} \
                 apart is not supported (one attention factor is)"
            )));
        }
        *attention_factor = short as f32;
    }
    check_longrope(&spec)?;
    Ok(spec)
}

/// transformers' `PhimoeConfig` default for `router_jitter_noise` (Phi-3.5-MoE's value).
const DEFAULT_ROUTER_JITTER: f32 = 0.01;

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

    /// microsoft/Phi-3.5-MoE-instruct's config.json as published (its 64 LongRoPE factors a
    /// side shortened to their count).
    fn phi35_moe_config() -> serde_json::Value {
        json!({
            "architectures": ["PhiMoEForCausalLM"], "attention_bias": true,
            "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 32000,
            "hidden_act": "silu", "hidden_dropout": 0.0, "hidden_size": 4096,
            "initializer_range": 0.02, "input_jitter_noise": 0.01, "intermediate_size": 6400,
            "lm_head_bias": true, "max_position_embeddings": 131072, "model_type": "phimoe",
            "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
            "num_key_value_heads": 8, "num_local_experts": 16,
            "original_max_position_embeddings": 4096, "output_router_logits": false,
            "rms_norm_eps": 1e-05,
            "rope_scaling": {"long_factor": vec![1.5; 64], "long_mscale": 1.243163121016122,
                             "original_max_position_embeddings": 4096,
                             "short_factor": vec![1.0; 64], "short_mscale": 1.243163121016122,
                             "type": "longrope"},
            "rope_theta": 10000.0, "router_aux_loss_coef": 0.0, "router_jitter_noise": 0.01,
            "sliding_window": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
            "vocab_size": 32064
        })
    }

    #[test]
    fn phi35_moe_reads_its_experts_norms_and_mscale() {
        let spec = crate::arch::spec_from_hf(&phi35_moe_config()).unwrap();
        assert_eq!(spec.arch, Arch::PhiMoe);
        assert!(spec.layer_norm && spec.norm_bias && spec.qkv_bias);
        assert_eq!(
            (spec.num_heads, spec.num_kv_heads, spec.head_dim),
            (32, 8, 128)
        );
        let moe = spec.experts.as_ref().unwrap();
        assert_eq!(
            (moe.num_experts, moe.experts_per_token, moe.normalize),
            (16, 2, false)
        );
        assert_eq!(moe.scoring, ExpertScoring::SparseMixer { jitter_eps: 0.01 });
        let RopeScaling::LongRope {
            attention_factor,
            long,
            ..
        } = spec.rope.scaling
        else {
            panic!("{:?}", spec.rope.scaling)
        };
        // The config's mscale, not the formula's 1.19.
        assert!((attention_factor - 1.243_163_1).abs() < 1e-6 && long);
        let mut c = phi35_moe_config();
        c["rope_scaling"]["long_mscale"] = 1.3.into();
        assert!(crate::arch::spec_from_hf(&c).is_err());
        c = phi35_moe_config();
        c["num_experts_per_tok"] = 4.into();
        assert!(crate::arch::spec_from_hf(&c).is_err());
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
