//! ModernBERT (`model_type` `modernbert`: answerdotai/ModernBERT, modernbert-embed,
//! gte-modernbert) as transformers' `ModernBertModel` runs it: token embeddings normed; per
//! layer a pre-norm (none before the first layer's attention) then attention over rotary
//! positions, every `global_attn_every_n_layers`-th layer over the whole input at
//! `global_rope_theta`, the others within `local_attention / 2` positions each side at
//! `local_rope_theta`; a pre-normed GeGLU feed-forward (`Wi` → `act(input) ⊙ gate` → `Wo`);
//! residual adds; a final norm. Norms and projections without biases unless the config says.
//! A sequence classifier's head (`head.dense`, GELU, `head.norm`, `classifier`) reads the
//! `[CLS]` state or the mean of all (`classifier_pooling`).
use super::config::{
    activation, heads_dividing, EncoderActivation, EncoderConfig, Family, LocalAttention,
};
use super::layer::{attention, fused_qkv, gated, window_masks, Local, Projection};
use super::rotary::Rotary;
use crate::classifier::{Classifier, Dense, DenseActivation, HeadInput};
use crate::error::{ModelError, Result};
use crate::spec::HfConfig;
use candle_core::{Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

/// The encoder a `modernbert` config.json describes.
pub(super) fn config(c: &HfConfig, classifies: bool) -> Result<EncoderConfig> {
    if classifies {
        head_pooling(c)?;
    }
    let hidden_size = c.usize("hidden_size")?;
    let num_heads = heads_dividing(c.usize("num_attention_heads")?, hidden_size)?;
    let act = activation(c.str("hidden_activation").unwrap_or("gelu"))?;
    if !matches!(act, EncoderActivation::GeluErf | EncoderActivation::Silu) {
        return Err(ModelError::Config(
            "config.json: ModernBERT's GLU is served with `gelu` or `silu`".into(),
        ));
    }
    let global_every = c
        .opt_usize("global_attn_every_n_layers")?
        .unwrap_or(1)
        .max(1);
    let window = c.opt_usize("local_attention")?.unwrap_or(128) / 2;
    let global_theta = c.f32("global_rope_theta", 160_000.0)?;
    Ok(EncoderConfig {
        family: Family::Modern,
        vocab_size: c.usize("vocab_size")?,
        hidden_size,
        num_layers: c.usize("num_hidden_layers")?,
        num_heads,
        intermediate_size: c.usize("intermediate_size")?,
        max_position_embeddings: c.opt_usize("max_position_embeddings")?.unwrap_or(8192),
        type_vocab_size: 1,
        layer_norm_eps: c.f32("norm_eps", 1e-5)? as f64,
        activation: act,
        position_offset: 0,
        classifies,
        rotary_theta: Some(global_theta),
        rotary_divisor: 1.0,
        gated: true,
        local_attention: Some(LocalAttention {
            global_every,
            window,
            local_theta: match c.opt_f32("local_rope_theta")? {
                Some(t) => t,
                None => global_theta,
            },
        }),
    })
}

struct ModernLayer {
    /// None before the first layer's attention (its input is the normed embeddings).
    attention_norm: Option<LayerNorm>,
    /// Queries (scaled by 1/√head_dim), keys and values in one product.
    qkv: Projection,
    attention_out: Projection,
    mlp_norm: LayerNorm,
    /// `[input | gate]` columns: the activated half first.
    wi: Projection,
    wo: Projection,
    /// Attends within the window (else over the whole input).
    local: bool,
}

/// The layers, their two rotary tables and the final norm.
pub(super) struct Stack {
    layers: Vec<ModernLayer>,
    final_norm: LayerNorm,
    global: Rotary,
    local: Rotary,
    window: usize,
}

impl Stack {
    /// The stack `vb` holds (`layers.N.*`, `final_norm`) on `device`.
    pub(super) fn load(vb: &VarBuilder, c: &EncoderConfig, device: &Device) -> Result<Stack> {
        let local = c.local_attention.ok_or_else(|| {
            ModelError::Config("ModernBERT without its local attention settings".into())
        })?;
        let (h, i, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        let layers = (0..c.num_layers)
            .map(|n| -> Result<ModernLayer> {
                let l = vb.pp(format!("layers.{n}"));
                let attn = l.pp("attn");
                Ok(ModernLayer {
                    attention_norm: match n {
                        0 => None,
                        _ => Some(norm(&l.pp("attn_norm"), h, eps)?),
                    },
                    qkv: fused_qkv(&attn.pp("Wqkv"), h, c.query_scale())?,
                    attention_out: Projection::load_as_stored(&attn.pp("Wo"), h, h)?,
                    mlp_norm: norm(&l.pp("mlp_norm"), h, eps)?,
                    wi: Projection::load_as_stored(&l.pp("mlp").pp("Wi"), h, 2 * i)?,
                    wo: Projection::load_as_stored(&l.pp("mlp").pp("Wo"), i, h)?,
                    local: n % local.global_every != 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let theta = c.rotary_theta.unwrap_or(160_000.0);
        Ok(Stack {
            layers,
            final_norm: norm(&vb.pp("final_norm"), h, eps)?,
            global: Rotary::new(theta, 1.0, c.head_dim(), c.context(), device)?,
            local: Rotary::new(local.local_theta, 1.0, c.head_dim(), c.context(), device)?,
            window: local.window,
        })
    }

    /// The normed embeddings `x` of every input (stacked, `spans` each input's rows) through
    /// every layer and the final norm.
    pub(super) fn forward(
        &self,
        mut x: Tensor,
        spans: &[(usize, usize)],
        c: &EncoderConfig,
    ) -> Result<Tensor> {
        // The CPU's softmax keeps to the window itself; a GPU adds these masks.
        let masks = match x.device().is_cpu() {
            true => Vec::new(),
            false => window_masks(spans, self.window, x.device())?,
        };
        for layer in &self.layers {
            let normed = match &layer.attention_norm {
                Some(n) => n.forward(&x)?,
                None => x.clone(),
            };
            let qkv = layer.qkv.forward(&normed, None)?;
            let (rotary, local) = match layer.local {
                true => {
                    let masks = &masks[..];
                    (
                        &self.local,
                        Some(Local {
                            window: self.window,
                            masks,
                        }),
                    )
                }
                false => (&self.global, None),
            };
            let context = attention(&qkv, spans, Some(rotary), local, c)?;
            x = (x + layer.attention_out.forward(&context, None)?)?;
            let middle = gated(&layer.wi.forward(&layer.mlp_norm.forward(&x)?, None)?, c)?;
            x = (x + layer.wo.forward(&middle, None)?)?;
        }
        Ok(self.final_norm.forward(&x)?)
    }
}

/// What a ModernBERT classifier's head reads (`classifier_pooling`: the `[CLS]` state or the
/// mean of all); its activation must be GELU (`classifier_activation`).
fn head_pooling(c: &HfConfig) -> Result<HeadInput> {
    head_activation(c)?;
    match c.str("classifier_pooling").unwrap_or("cls") {
        "cls" => Ok(HeadInput::First),
        "mean" => Ok(HeadInput::Mean),
        other => Err(ModelError::Config(format!(
            "config.json: `classifier_pooling` `{other}` is not served (cls, mean)"
        ))),
    }
}

/// The activation of a ModernBERT head (a classifier's, the masked LM's): GELU
/// (`classifier_activation`), the one served.
pub(super) fn head_activation(c: &HfConfig) -> Result<EncoderActivation> {
    let act = c.str("classifier_activation").unwrap_or("gelu");
    if act != "gelu" {
        return Err(ModelError::Config(format!(
            "config.json: a ModernBERT head with `classifier_activation` `{act}` is not served \
             (gelu is)"
        )));
    }
    Ok(EncoderActivation::GeluErf)
}

/// A `ModernBertForSequenceClassification` head from the checkout's root (`head.dense`,
/// `head.norm`, `classifier`): `classifier(norm(gelu(dense(x))))` over the state its
/// `classifier_pooling` names, or over every token's (`per_token`: a
/// `ModernBertForTokenClassification`); labels from `id2label`.
pub(super) fn load_head(
    vb: &VarBuilder,
    c: &EncoderConfig,
    json: &serde_json::Value,
    labels: &[Option<String>],
    per_token: bool,
) -> Result<Classifier> {
    let h = c.hidden_size;
    let pooled = head_pooling(&HfConfig(json))?;
    let reads = match per_token {
        true => HeadInput::EachToken,
        false => pooled,
    };
    let host = |t: Tensor| -> Result<Vec<f32>> {
        Ok(t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let optional = |vb: &VarBuilder, name: &str| -> Result<Vec<f32>> {
        match vb.contains_tensor(name) {
            true => host(vb.get(h, name)?),
            false => Ok(Vec::new()),
        }
    };
    let dense = vb.pp("head").pp("dense");
    let norm = vb.pp("head").pp("norm");
    let pre = Dense {
        weight: host(dense.get((h, h), "weight")?)?,
        bias: optional(&dense, "bias")?,
        activation: DenseActivation::GeluErf,
        norm: Some((
            host(norm.get(h, "weight")?)?,
            optional(&norm, "bias")?,
            c.layer_norm_eps as f32,
        )),
    };
    let out = vb.pp("classifier");
    let count = match labels.len() {
        0 => 2,
        n => n,
    };
    let weight = host(out.get((count, h), "weight")?)?;
    let bias = host(out.get(count, "bias")?)?;
    Classifier::encoder_head(Some(pre), weight, bias, h, labels, reads)
}

/// A LayerNorm whose bias is there only where the config's `norm_bias` kept it.
pub(super) fn norm(vb: &VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
    let weight = vb.get(size, "weight")?;
    Ok(match vb.contains_tensor("bias") {
        true => LayerNorm::new(weight, vb.get(size, "bias")?, eps),
        false => LayerNorm::new_no_bias(weight, eps),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_third_layer_is_global_and_the_window_is_half_each_side() {
        let c = json!({
            "model_type": "modernbert", "architectures": ["ModernBertModel"], "vocab_size": 100,
            "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4,
            "num_attention_heads": 4, "max_position_embeddings": 64, "local_attention": 8,
            "global_attn_every_n_layers": 3, "global_rope_theta": 160000.0,
            "local_rope_theta": 10000.0, "norm_eps": 1e-5, "hidden_activation": "gelu"
        });
        let config = EncoderConfig::from_json(&c).unwrap().unwrap();
        assert_eq!(config.family, Family::Modern);
        assert_eq!(
            config.local_attention,
            Some(LocalAttention {
                global_every: 3,
                window: 4,
                local_theta: 10000.0
            })
        );
        assert_eq!((config.context(), config.type_vocab_size), (64, 1));
        assert_eq!(config.spec().arch.name(), "modern-bert");
        let mut classifier = c.clone();
        classifier["architectures"] = json!(["ModernBertForSequenceClassification"]);
        assert!(
            EncoderConfig::from_json(&classifier)
                .unwrap()
                .unwrap()
                .classifies
        );
        classifier["classifier_pooling"] = json!("max");
        assert!(EncoderConfig::from_json(&classifier).is_err());
        classifier["classifier_pooling"] = json!("mean");
        classifier["classifier_activation"] = json!("relu");
        assert!(EncoderConfig::from_json(&classifier).is_err());
    }
}
