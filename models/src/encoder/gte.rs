//! GTE's encoder: Alibaba's `NewModel` (`model_type` `new`: gte-base-en-v1.5,
//! gte-multilingual-base and its reranker, snowflake-arctic-embed-m-v2.0), in transformers 5 as
//! `gte`. BERT's post-norm layers with rotary positions instead of a position table (their
//! frequencies NTK-scaled where the config says), a GeGLU feed-forward, a token-type table of
//! one row or none, and BERT's pooler under a sequence classifier's head. The Hub checkouts
//! carry the remote code's keys (`rope_theta`, `rope_scaling: {type: ntk}`) and tensor names
//! (`encoder.layer.N.attention.qkv_proj`, `attn_ln`, `mlp.up_gate_proj`, `mlp_ln`, under `new.`
//! in a classifier); transformers 5's own (`rope_parameters`, `layers.N.self_attn.q_proj`…, under
//! `gte.`) are read too.
use super::config::{activation, heads_dividing, EncoderActivation, EncoderConfig, Family};
use super::layer::{fused_qkv, Layer, PostNorm, Projection};
use crate::error::{ModelError, Result};
use crate::spec::HfConfig;
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// The encoder a `new` (remote code) or `gte` (transformers 5) config.json describes;
/// `classifies` where its architectures name a sequence classifier.
pub(super) fn config(c: &HfConfig, classifies: bool) -> Result<EncoderConfig> {
    let refuse = |what: &str| Err(ModelError::Config(format!("config.json: GTE {what}")));
    if let Some(kind) = c.str("position_embedding_type") {
        if !matches!(kind, "rope" | "rotary") {
            return refuse(&format!(
                "with `position_embedding_type` `{kind}` is not served"
            ));
        }
    }
    if let Some(kind) = c.str("layer_norm_type") {
        if kind != "layer_norm" {
            return refuse(&format!("with `layer_norm_type` `{kind}` is not served"));
        }
    }
    if c.bool("logn_attention_scale", false) {
        return refuse("with `logn_attention_scale` (log-n scaled attention) is not served");
    }
    if !c.bool("pack_qkv", true) {
        return refuse("with separate q, k and v projections (`pack_qkv: false`) is not served");
    }
    // The gate's activation: the remote code's and transformers' `ACT2FN[hidden_act]`.
    let act = activation(c.str("hidden_act").unwrap_or("gelu"))?;
    if !matches!(act, EncoderActivation::GeluErf | EncoderActivation::Silu) {
        return refuse("feed-forward: the gate is served with `gelu` or `silu`");
    }
    let hidden_size = c.usize("hidden_size")?;
    let num_heads = heads_dividing(c.usize("num_attention_heads")?, hidden_size)?;
    let head_dim = hidden_size / num_heads;
    let (theta, divisor) = rotary_frequencies(c, head_dim)?;
    let context = c.opt_usize("max_position_embeddings")?.unwrap_or(8192);
    if context == 0 {
        return refuse("with no positions");
    }
    Ok(EncoderConfig {
        family: Family::Gte,
        vocab_size: c.usize("vocab_size")?,
        hidden_size,
        num_layers: c.usize("num_hidden_layers")?,
        num_heads,
        intermediate_size: c.usize("intermediate_size")?,
        max_position_embeddings: context,
        // 0 (gte-base-en-v1.5): no table at all, which the loader sees in the weights.
        type_vocab_size: c.opt_usize("type_vocab_size")?.unwrap_or(1).max(1),
        layer_norm_eps: c.f32("layer_norm_eps", 1e-12)? as f64,
        activation: act,
        position_offset: 0,
        classifies,
        rotary_theta: Some(theta),
        rotary_divisor: divisor,
        gated: true,
        local_attention: None,
    })
}

/// The rotary base and what every frequency is divided by. The remote code's fixed NTK scaling
/// (`rope_scaling: {type: ntk, factor: f}`) turns at base θ·f and divides each frequency by
/// f^(2/d), at every position (vLLM's `NTKScalingRotaryEmbedding` likewise); transformers 5
/// spells the same as a `linear` rope over θ·f. Mixed NTK (`mixed_b`) is refused.
fn rotary_frequencies(c: &HfConfig, head_dim: usize) -> Result<(f32, f32)> {
    let refuse = |what: String| Err(ModelError::Config(format!("config.json: GTE {what}")));
    if let Some(rope) = c.0.get("rope_parameters").filter(|v| !v.is_null()) {
        let rope = HfConfig(rope);
        let theta = rope.f32("rope_theta", 160_000.0)?;
        return match rope.str("rope_type").unwrap_or("default") {
            "default" => Ok((theta, 1.0)),
            "linear" => Ok((theta, rope.f32("factor", 1.0)?)),
            other => refuse(format!("with rope type `{other}` is not served")),
        };
    }
    let theta = c.f32("rope_theta", 10_000.0)?;
    let Some(scaling) = c.0.get("rope_scaling").filter(|v| !v.is_null()) else {
        return Ok((theta, 1.0));
    };
    let scaling = HfConfig(scaling);
    let kind = scaling.str("type").or_else(|| scaling.str("rope_type"));
    if kind != Some("ntk") {
        return refuse(format!(
            "with rope scaling `{}` is not served (fixed NTK is)",
            kind.unwrap_or("?")
        ));
    }
    if scaling.0.get("mixed_b").is_some_and(|v| !v.is_null()) {
        return refuse("with mixed NTK scaling (`mixed_b`) is not served".into());
    }
    let factor = scaling.f32("factor", 1.0)?;
    if !(factor.is_finite() && factor >= 1.0) {
        return refuse(format!("NTK factor {factor} (1 or more is served)"));
    }
    let divisor = (factor as f64).powf(2.0 / head_dim as f64) as f32;
    Ok((theta * factor, divisor))
}

/// Where a checkout keeps its layers: the remote code's `encoder.layer.N` or transformers 5's
/// `layers.N`.
pub(super) fn layers(vb: &VarBuilder, c: &EncoderConfig) -> Result<Vec<Layer>> {
    let remote = vb.contains_tensor("encoder.layer.0.attention.qkv_proj.weight");
    (0..c.num_layers)
        .map(|i| match remote {
            true => remote_layer(&vb.pp(format!("encoder.layer.{i}")), c),
            false => native_layer(&vb.pp(format!("layers.{i}")), c),
        })
        .collect()
}

/// A layer under the remote code's names: q|k|v in one matrix, up and gate in another
/// (`[up; gate]` rows).
fn remote_layer(vb: &VarBuilder, c: &EncoderConfig) -> Result<Layer> {
    let (h, i, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
    let attention = vb.pp("attention");
    let mlp = vb.pp("mlp");
    let up_gate = mlp.pp("up_gate_proj");
    let both = up_gate.get((2 * i, h), "weight")?;
    let bias = match up_gate.contains_tensor("bias") {
        true => Some(up_gate.get(2 * i, "bias")?),
        false => None,
    };
    let half = |t: &Tensor, n: usize| t.narrow(0, n * i, i);
    let part = |n: usize| -> Result<Projection> {
        let b = bias.as_ref().map(|b| half(b, n)).transpose()?;
        Projection::from_weight(half(&both, n)?, b)
    };
    Ok(Layer {
        qkv: fused_qkv(&attention.pp("qkv_proj"), h, c.query_scale())?,
        attention_out: Projection::load_as_stored(&attention.pp("o_proj"), h, h)?,
        attention_norm: PostNorm::load(&vb.pp("attn_ln"), h, eps)?,
        // The gate's columns first, as the gated middle reads them.
        up: Projection::joined(&[part(1)?, part(0)?])?,
        down: Projection::load_as_stored(&mlp.pp("down_proj"), i, h)?,
        output_norm: PostNorm::load(&vb.pp("mlp_ln"), h, eps)?,
    })
}

/// A layer under transformers 5's names.
fn native_layer(vb: &VarBuilder, c: &EncoderConfig) -> Result<Layer> {
    let (h, i, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
    let attention = vb.pp("self_attn");
    let mlp = vb.pp("mlp");
    let projection = |vb: VarBuilder, inputs, outputs, scale| {
        Projection::load(&vb, inputs, outputs, scale, vb.contains_tensor("bias"))
    };
    Ok(Layer {
        qkv: Projection::joined(&[
            projection(attention.pp("q_proj"), h, h, c.query_scale())?,
            projection(attention.pp("k_proj"), h, h, 1.0)?,
            projection(attention.pp("v_proj"), h, h, 1.0)?,
        ])?,
        attention_out: projection(attention.pp("o_proj"), h, h, 1.0)?,
        attention_norm: PostNorm::load(&vb.pp("post_attention_layernorm"), h, eps)?,
        up: Projection::joined(&[
            projection(mlp.pp("gate_proj"), h, i, 1.0)?,
            projection(mlp.pp("up_proj"), h, i, 1.0)?,
        ])?,
        down: projection(mlp.pp("down_proj"), i, h, 1.0)?,
        output_norm: PostNorm::load(&vb.pp("post_mlp_layernorm"), h, eps)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// gte-base-en-v1.5's config.json, shrunk.
    fn remote() -> serde_json::Value {
        json!({
            "architectures": ["NewModel"], "model_type": "new", "hidden_act": "gelu",
            "hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2,
            "intermediate_size": 48, "max_position_embeddings": 8192, "vocab_size": 100,
            "layer_norm_eps": 1e-12, "layer_norm_type": "layer_norm",
            "logn_attention_scale": false, "pack_qkv": true, "position_embedding_type": "rope",
            "rope_scaling": {"type": "ntk", "factor": 2.0}, "rope_theta": 500000,
            "type_vocab_size": 0
        })
    }

    fn read(j: &serde_json::Value) -> EncoderConfig {
        EncoderConfig::from_json(j).unwrap().unwrap()
    }

    #[test]
    fn fixed_ntk_scaling_is_a_larger_base_and_a_frequency_divisor() {
        let c = read(&remote());
        assert_eq!(
            (c.family, c.context(), c.type_vocab_size),
            (Family::Gte, 8192, 1)
        );
        assert_eq!(c.rotary_theta, Some(1_000_000.0));
        // 2^(2/8)
        assert!((c.rotary_divisor - 2f32.powf(0.25)).abs() < 1e-6);
        assert_eq!((c.gated, c.activation), (true, EncoderActivation::GeluErf));
        assert_eq!(c.spec().arch.name(), "gte");
        let mut plain = remote();
        plain["rope_scaling"] = json!(null);
        let p = read(&plain);
        assert_eq!((p.rotary_theta, p.rotary_divisor), (Some(500_000.0), 1.0));
    }

    #[test]
    fn snowflake_arctic_embed_v2_spells_the_remote_keys_under_gte() {
        // Snowflake's checkout names its remote code `gte` but keeps the remote keys.
        let mut c = remote();
        c["model_type"] = json!("gte");
        c["architectures"] = json!(["GteModel"]);
        c["rope_scaling"] = json!(null);
        c["rope_theta"] = json!(160000);
        c["type_vocab_size"] = json!(1);
        let s = read(&c);
        assert_eq!(
            (s.family, s.rotary_theta, s.rotary_divisor),
            (Family::Gte, Some(160_000.0), 1.0)
        );
        assert!(!s.classifies);
    }

    #[test]
    fn transformers_spells_the_same_scaling_as_a_linear_rope() {
        let native = json!({
            "model_type": "gte", "hidden_act": "gelu", "hidden_size": 32,
            "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 48,
            "max_position_embeddings": 8192, "vocab_size": 100, "type_vocab_size": 1,
            "rope_parameters": {"rope_type": "linear", "rope_theta": 1_000_000.0,
                                "factor": 1.189_207_1}
        });
        let (n, r) = (read(&native), read(&remote()));
        assert_eq!(n.rotary_theta, r.rotary_theta);
        assert!((n.rotary_divisor - r.rotary_divisor).abs() < 1e-6);
    }

    #[test]
    fn what_the_forward_pass_does_not_compute_is_refused() {
        for (key, value) in [
            ("position_embedding_type", json!("absolute")),
            ("layer_norm_type", json!("rms_norm")),
            ("logn_attention_scale", json!(true)),
            ("pack_qkv", json!(false)),
            ("hidden_act", json!("relu")),
            ("rope_scaling", json!({"type": "dynamic", "factor": 2.0})),
            (
                "rope_scaling",
                json!({"type": "ntk", "factor": 2.0, "mixed_b": 0.5}),
            ),
            ("rope_scaling", json!({"type": "ntk", "factor": 0.5})),
            ("num_attention_heads", json!(5)),
        ] {
            let mut c = remote();
            c[key] = value;
            let err = EncoderConfig::from_json(&c).expect_err(key).to_string();
            assert!(err.contains("GTE") || err.contains("heads"), "{key}: {err}");
        }
    }
}
