//! DistilBERT (`model_type` `distilbert`: multi-qa-distilbert and msmarco-distilbert embedders,
//! distilbert-sst2 style classifiers, opensearch's neural sparse encoders): BERT's post-norm
//! layers under their own names and keys, no token types, every LayerNorm at ε 1e-12 whatever
//! the config holds. Its config spells the sizes `dim`, `n_layers`, `n_heads`, `hidden_dim`
//! and the feed-forward's activation `activation`; its layers sit at
//! `transformer.layer.N.{attention.{q,k,v,out}_lin, sa_layer_norm, ffn.lin{1,2},
//! output_layer_norm}`; a classifier reads `[CLS]` through `pre_classifier` and a ReLU, then
//! `classifier`; its masked-LM head is `vocab_transform`, the activation, `vocab_layer_norm`,
//! `vocab_projector` (tied to the word embeddings).
use super::config::{activation, heads_dividing, EncoderActivation, EncoderConfig, Family};
use super::layer::{Layer, PostNorm, Projection};
use crate::error::{ModelError, Result};
use crate::spec::HfConfig;
use candle_nn::VarBuilder;

/// transformers' DistilBERT builds every LayerNorm with this ε; its config has no key for it.
const LAYER_NORM_EPS: f64 = 1e-12;

/// The encoder a `distilbert` config.json describes; `classifies` where its architectures
/// name a sequence classifier.
pub(super) fn config(c: &HfConfig, classifies: bool) -> Result<EncoderConfig> {
    let act = activation(c.str("activation").unwrap_or("gelu"))?;
    if act == EncoderActivation::Silu {
        return Err(ModelError::Config(
            "config.json: a DistilBERT feed-forward with `silu` is not served (gelu, relu)".into(),
        ));
    }
    let hidden_size = c.usize("dim")?;
    let max_position_embeddings = c.opt_usize("max_position_embeddings")?.unwrap_or(512);
    if max_position_embeddings == 0 {
        return Err(ModelError::Config(
            "config.json: DistilBERT with no positions".into(),
        ));
    }
    Ok(EncoderConfig {
        family: Family::DistilBert,
        vocab_size: c.usize("vocab_size")?,
        hidden_size,
        num_layers: c.usize("n_layers")?,
        num_heads: heads_dividing(c.usize("n_heads")?, hidden_size)?,
        intermediate_size: c.usize("hidden_dim")?,
        max_position_embeddings,
        type_vocab_size: 1,
        layer_norm_eps: LAYER_NORM_EPS,
        activation: act,
        position_offset: 0,
        classifies,
        rotary_theta: None,
        rotary_divisor: 1.0,
        gated: false,
        local_attention: None,
    })
}

/// The layers, `transformer.layer.N`.
pub(super) fn layers(vb: &VarBuilder, c: &EncoderConfig) -> Result<Vec<Layer>> {
    (0..c.num_layers)
        .map(|i| layer(&vb.pp(format!("transformer.layer.{i}")), c))
        .collect()
}

fn layer(vb: &VarBuilder, c: &EncoderConfig) -> Result<Layer> {
    let (h, i, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
    let attention = vb.pp("attention");
    let ffn = vb.pp("ffn");
    let linear = |name: &str, inputs, outputs, scale| {
        Projection::load(&attention.pp(name), inputs, outputs, scale, true)
    };
    Ok(Layer {
        qkv: Projection::joined(&[
            linear("q_lin", h, h, c.query_scale())?,
            linear("k_lin", h, h, 1.0)?,
            linear("v_lin", h, h, 1.0)?,
        ])?,
        attention_out: linear("out_lin", h, h, 1.0)?,
        attention_norm: PostNorm::load(&vb.pp("sa_layer_norm"), h, eps)?,
        up: Projection::load(&ffn.pp("lin1"), h, i, 1.0, true)?,
        down: Projection::load(&ffn.pp("lin2"), i, h, 1.0, true)?,
        output_norm: PostNorm::load(&vb.pp("output_layer_norm"), h, eps)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// distilbert-base-uncased-finetuned-sst-2-english's config.json, shrunk.
    fn sst2() -> serde_json::Value {
        json!({
            "activation": "gelu", "architectures": ["DistilBertForSequenceClassification"],
            "dim": 32, "hidden_dim": 64, "max_position_embeddings": 512,
            "model_type": "distilbert", "n_heads": 4, "n_layers": 2, "pad_token_id": 0,
            "sinusoidal_pos_embds": false, "vocab_size": 100,
            "id2label": {"0": "NEGATIVE", "1": "POSITIVE"}
        })
    }

    #[test]
    fn distilbert_spells_its_sizes_its_own_way_and_has_no_token_types() {
        let c = EncoderConfig::from_json(&sst2()).unwrap().unwrap();
        assert_eq!(c.family, Family::DistilBert);
        assert_eq!(
            (
                c.hidden_size,
                c.num_layers,
                c.num_heads,
                c.intermediate_size
            ),
            (32, 2, 4, 64)
        );
        assert_eq!(
            (c.type_vocab_size, c.position_offset, c.context()),
            (1, 0, 512)
        );
        assert_eq!(c.layer_norm_eps, 1e-12);
        assert!(c.classifies);
        assert_eq!(c.spec().arch.name(), "distilbert");
    }

    #[test]
    fn what_distilbert_does_not_compute_is_refused() {
        for (key, value) in [
            ("activation", json!("silu")),
            ("activation", json!("mish")),
            ("n_heads", json!(5)),
            ("max_position_embeddings", json!(0)),
            ("dim", json!(null)),
        ] {
            let mut c = sst2();
            c[key] = value;
            assert!(EncoderConfig::from_json(&c).is_err(), "{key}");
        }
    }
}
