//! NomicBERT (nomic-embed-text v1 / v1.5, `model_type` `nomic_bert`): BERT's post-norm layers
//! with rotary positions instead of a position table, a SwiGLU feed-forward and no projection
//! biases. Its Hub checkouts carry the remote code's config keys (`n_embd`, `n_head`,
//! `rotary_emb_base`, `activation_function: swiglu`…) and tensor names (`emb_ln`,
//! `encoder.layers.N.attn.Wqkv`, `mlp.fc11` the up projection and `mlp.fc12` the gate, as
//! transformers' own conversion and llama.cpp's converter read them); transformers 5's native
//! keys (`hidden_size`, `rope_parameters`…) are read too.
use super::config::{heads_dividing, EncoderActivation, EncoderConfig, Family};
use super::layer::{fused_qkv, Layer, PostNorm, Projection};
use crate::error::{ModelError, Result};
use crate::spec::HfConfig;
use candle_nn::VarBuilder;

/// The encoder a `nomic_bert` config.json describes; `classifies` where its architectures
/// name a sequence classifier.
pub(super) fn config(c: &HfConfig, classifies: bool) -> Result<EncoderConfig> {
    let refuse = |what: &str| Err(ModelError::Config(format!("config.json: {what}")));
    if classifies {
        return refuse("a NomicBERT sequence classifier's head is not served (its embedder is)");
    }
    if c.opt_usize("moe_every_n_layers")?.unwrap_or(0) > 0 {
        return refuse(
            "NomicBERT with mixture-of-experts layers (nomic-embed-text-v2-moe) is not served",
        );
    }
    for (key, why) in [
        ("prenorm", "pre-norm layers"),
        ("use_rms_norm", "RMSNorm"),
        ("causal", "causal attention"),
        ("rotary_emb_interleaved", "interleaved rotary pairs"),
    ] {
        if c.bool(key, false) {
            return refuse(&format!("NomicBERT with `{key}` ({why}) is not served"));
        }
    }
    if c.opt_f32("rotary_emb_fraction")?.is_some_and(|f| f != 1.0) {
        return refuse(
            "NomicBERT rotating part of each head (`rotary_emb_fraction`) is not served",
        );
    }
    if c.0
        .get("rotary_emb_scale_base")
        .is_some_and(|v| !v.is_null())
    {
        return refuse("NomicBERT with xPos scaling (`rotary_emb_scale_base`) is not served");
    }
    // The remote code's `swiglu`, or transformers 5's gated MLP with its `hidden_act`.
    let activation = c
        .str("activation_function")
        .or_else(|| c.str("hidden_act"))
        .unwrap_or("swiglu");
    if !matches!(activation, "swiglu" | "silu") {
        return refuse(&format!(
            "NomicBERT's feed-forward activation `{activation}` is not served (SwiGLU is)"
        ));
    }
    let either = |remote: &str, native: &str| -> Result<usize> {
        match c.opt_usize(remote)? {
            Some(v) => Ok(v),
            None => c.usize(native),
        }
    };
    let hidden_size = either("n_embd", "hidden_size")?;
    let num_heads = heads_dividing(either("n_head", "num_attention_heads")?, hidden_size)?;
    // The positions the model was trained at bound what is served: the remote code's
    // `n_positions` (8192) counts on `rotary_scaling_factor`'s dynamic NTK scaling past them,
    // which changes no angle below them; llama.cpp's converter and vLLM stop there too.
    let context = match c.opt_usize("max_trained_positions")? {
        Some(n) => n,
        None => c.opt_usize("max_position_embeddings")?.unwrap_or(2048),
    };
    if context == 0 {
        return refuse("NomicBERT trained at no positions");
    }
    let theta = match c.opt_f32("rotary_emb_base")? {
        Some(t) => t,
        None => match c.0.get("rope_parameters").map(HfConfig) {
            Some(rope) => rope.f32("rope_theta", 1000.0)?,
            None => c.f32("rope_theta", 1000.0)?,
        },
    };
    let eps = match c.opt_f32("layer_norm_epsilon")? {
        Some(e) => e,
        None => c.f32("layer_norm_eps", 1e-12)?,
    };
    Ok(EncoderConfig {
        family: Family::Nomic,
        vocab_size: c.usize("vocab_size")?,
        hidden_size,
        num_layers: either("n_layer", "num_hidden_layers")?,
        num_heads,
        intermediate_size: either("n_inner", "intermediate_size")?,
        max_position_embeddings: context,
        type_vocab_size: c.opt_usize("type_vocab_size")?.unwrap_or(2).max(1),
        layer_norm_eps: eps as f64,
        activation: EncoderActivation::Silu,
        position_offset: 0,
        classifies: false,
        rotary_theta: Some(theta),
        rotary_divisor: 1.0,
        gated: true,
        local_attention: None,
    })
}

/// Layer `vb` (`encoder.layers.N`) under the remote code's names; a projection's bias read
/// where the file has one (nomic-embed-text's have none).
pub(super) fn layer(vb: &VarBuilder, c: &EncoderConfig) -> Result<Layer> {
    let (h, i, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
    let attn = vb.pp("attn");
    let mlp = vb.pp("mlp");
    Ok(Layer {
        qkv: fused_qkv(&attn.pp("Wqkv"), h, c.query_scale())?,
        attention_out: Projection::load_as_stored(&attn.pp("out_proj"), h, h)?,
        attention_norm: PostNorm::load(&vb.pp("norm1"), h, eps)?,
        // The gate's columns first, as the gated middle reads them.
        up: Projection::joined(&[
            Projection::load_as_stored(&mlp.pp("fc12"), h, i)?,
            Projection::load_as_stored(&mlp.pp("fc11"), h, i)?,
        ])?,
        down: Projection::load_as_stored(&mlp.pp("fc2"), i, h)?,
        output_norm: PostNorm::load(&vb.pp("norm2"), h, eps)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn remote() -> serde_json::Value {
        json!({
            "model_type": "nomic_bert", "architectures": ["NomicBertModel"],
            "activation_function": "swiglu", "n_embd": 32, "n_head": 4, "n_inner": 48,
            "n_layer": 2, "n_positions": 8192, "max_trained_positions": 2048,
            "rotary_emb_base": 1000, "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": false,
            "rotary_emb_scale_base": null, "rotary_scaling_factor": null, "prenorm": false,
            "qkv_proj_bias": false, "layer_norm_epsilon": 1e-12, "type_vocab_size": 2,
            "vocab_size": 30528
        })
    }

    #[test]
    fn the_remote_code_and_the_native_keys_describe_one_encoder() {
        let read = |j: &serde_json::Value| EncoderConfig::from_json(j).unwrap().unwrap();
        let r = read(&remote());
        assert_eq!(
            (r.family, r.hidden_size, r.num_heads),
            (Family::Nomic, 32, 4)
        );
        assert_eq!(
            (r.intermediate_size, r.num_layers, r.context()),
            (48, 2, 2048)
        );
        assert_eq!((r.rotary_theta, r.gated), (Some(1000.0), true));
        assert_eq!(r.spec().rope.theta, 1000.0);
        assert_eq!(r.spec().arch.name(), "nomic-bert");
        let native = json!({
            "model_type": "nomic_bert", "hidden_size": 32, "num_attention_heads": 4,
            "intermediate_size": 48, "num_hidden_layers": 2, "max_position_embeddings": 2048,
            "hidden_act": "silu", "rope_parameters": {"rope_type": "default", "rope_theta": 1000.0},
            "layer_norm_eps": 1e-12, "vocab_size": 30528
        });
        let n = read(&native);
        assert_eq!(
            (
                n.hidden_size,
                n.num_heads,
                n.intermediate_size,
                n.context(),
                n.rotary_theta
            ),
            (32, 4, 48, 2048, Some(1000.0))
        );
    }

    #[test]
    fn what_the_forward_pass_does_not_compute_is_refused() {
        for (key, value) in [
            ("prenorm", json!(true)),
            ("rotary_emb_fraction", json!(0.5)),
            ("rotary_emb_interleaved", json!(true)),
            ("rotary_emb_scale_base", json!(512)),
            ("activation_function", json!("gelu")),
            ("moe_every_n_layers", json!(2)),
            (
                "architectures",
                json!(["NomicBertForSequenceClassification"]),
            ),
            ("n_head", json!(5)),
        ] {
            let mut c = remote();
            c[key] = value;
            let err = EncoderConfig::from_json(&c).expect_err(key).to_string();
            assert!(!err.is_empty(), "{key}");
        }
    }
}
