//! SPLADE sparse embeddings: an encoder's masked-language-model head scores every vocabulary
//! entry at every token; `log(1 + relu(score))` (once more for opensearch's `log1p_relu`),
//! pooled over the tokens by max (SPLADE v2 and later) or sum (the first SPLADE), is a vector
//! over the vocabulary, zero almost everywhere: a learned bag of words for lexical retrieval
//! (naver's splade-v3 and splade-cocondenser, opensearch's neural sparse encoders,
//! granite-embedding-sparse). As sentence-transformers' `SparseEncoder` runs an
//! `MLMTransformer` then `SpladePooling`, and text-embeddings-inference's `--pooling splade`.
//!
//! The head is BERT's (`cls.predictions`: a dense layer, the config's activation, a
//! LayerNorm, the decoder, its bias), RoBERTa's and GTE's (`lm_head`: the same, GELU always;
//! opensearch's doc-v3-gte), ModernBERT's (`head` then `decoder`) or DistilBERT's (`vocab_transform`, the activation, `vocab_layer_norm`, `vocab_projector`); the
//! decoder is tied to the word embeddings unless the checkout stores its own.
use super::config::{config_json, names_architecture, EncoderActivation, EncoderConfig, Family};
use super::layer::{layer_norm, Projection};
use crate::error::{ModelError, Result};
use crate::sentence_transformers::{read_json, Modules};
use crate::spec::HfConfig;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use std::path::Path;

/// How the tokens' transformed scores become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpladeStrategy {
    Max,
    Sum,
}

/// What each score goes through before pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpladeActivation {
    /// `log(1 + relu(x))`.
    Relu,
    /// `log(1 + log(1 + relu(x)))`: opensearch's doc encoders.
    Log1pRelu,
}

/// A checkout's `SpladePooling` (sentence-transformers' `1_SpladePooling/config.json`);
/// `Default` is max over `log(1 + relu)`, which every SPLADE model since v2 uses and
/// text-embeddings-inference assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpladeConfig {
    pub strategy: SpladeStrategy,
    pub activation: SpladeActivation,
}

impl Default for SpladeConfig {
    fn default() -> Self {
        SpladeConfig {
            strategy: SpladeStrategy::Max,
            activation: SpladeActivation::Relu,
        }
    }
}

impl SpladeConfig {
    /// The pooling a sentence-transformers checkout's `modules.json` names in a
    /// `SpladePooling` module; None where it names none.
    pub fn from_dir(dir: &Path) -> Result<Option<SpladeConfig>> {
        let Some(modules) = Modules::read(dir).map_err(ModelError::Config)? else {
            return Ok(None);
        };
        let Some(module) = modules.dir_of(".SpladePooling") else {
            return Ok(None);
        };
        let config = read_json(&module.join("config.json")).map_err(ModelError::Config)?;
        let field = |key: &str| {
            (config.as_ref())
                .and_then(|c| c.get(key))
                .and_then(|v| v.as_str())
        };
        let strategy = match field("pooling_strategy") {
            None | Some("max") => SpladeStrategy::Max,
            Some("sum") => SpladeStrategy::Sum,
            Some(other) => return Err(refused(format!("SPLADE pooling strategy `{other}`"))),
        };
        let activation = match field("activation_function") {
            None | Some("relu") => SpladeActivation::Relu,
            Some("log1p_relu") => SpladeActivation::Log1pRelu,
            Some(other) => return Err(refused(format!("SPLADE activation `{other}`"))),
        };
        Ok(Some(SpladeConfig {
            strategy,
            activation,
        }))
    }
}

fn refused(what: String) -> ModelError {
    ModelError::Config(format!(
        "{what} is not served (strategies max and sum; activations relu and log1p_relu)"
    ))
}

/// Whether a checkout's `architectures` name a masked language model (`BertForMaskedLM`,
/// `XLMRobertaForMaskedLM`…): the only kind with a head that scores the vocabulary.
pub fn is_masked_lm(dir: &Path) -> Result<bool> {
    Ok(names_architecture(&config_json(dir)?, "ForMaskedLM"))
}

/// A masked-language-model head: `decoder · norm(act(dense · x)) + bias`, a score per
/// vocabulary entry.
pub struct MlmHead {
    dense: Projection,
    /// What follows `dense`: a GELU (either form) or a ReLU.
    activation: EncoderActivation,
    norm: LayerNorm,
    /// `[vocab, hidden]`, the word embeddings themselves where tied (no copy).
    decoder: Tensor,
    bias: Tensor,
}

impl MlmHead {
    /// The head of checkout `dir` (BERT's `cls.predictions`, RoBERTa's `lm_head`, DistilBERT's
    /// `vocab_transform` … `vocab_projector`), tied to
    /// `words` (the encoder's word embeddings, on the device) where the checkout stores no
    /// decoder of its own.
    pub fn load(c: &EncoderConfig, dir: &Path, words: &Tensor, device: &Device) -> Result<MlmHead> {
        let files = super::bert::safetensors_files(dir)?;
        // Safety: as `BertEncoder::load` maps the same files: read-only, not written while
        // served.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device)? };
        let (h, v) = (c.hidden_size, c.vocab_size);
        // The dense layer, its activation, the norm, and where the decoder and its bias sit.
        let (dense, activation, norm, decoder, bias) = match c.family {
            Family::Bert => {
                let head = vb.pp("cls").pp("predictions");
                let transform = head.pp("transform");
                let (dense, norm) = (transform.pp("dense"), transform.pp("LayerNorm"));
                (
                    dense,
                    c.activation,
                    norm,
                    head.pp("decoder"),
                    decoder_bias(&head),
                )
            }
            // transformers' `RobertaLMHead` and `GteLMHead` apply the erf GELU whatever
            // `hidden_act` says; GTE's remote code names the norm `norm`, transformers 5
            // `layer_norm`.
            Family::Roberta | Family::Gte => {
                let head = vb.pp("lm_head");
                let bias = decoder_bias(&head);
                let norm = match head.contains_tensor("norm.weight") {
                    true => head.pp("norm"),
                    false => head.pp("layer_norm"),
                };
                let (dense, decoder) = (head.pp("dense"), head.pp("decoder"));
                (dense, EncoderActivation::GeluErf, norm, decoder, bias)
            }
            Family::DistilBert => {
                let projector = vb.pp("vocab_projector");
                let (dense, norm) = (vb.pp("vocab_transform"), vb.pp("vocab_layer_norm"));
                (dense, c.activation, norm, projector.clone(), projector)
            }
            // ModernBERT's `head` (its activation `classifier_activation`, GELU) then its
            // `decoder`, whose bias is its own.
            Family::Modern => {
                let act = super::modern::head_activation(&HfConfig(&config_json(dir)?))?;
                let head = vb.pp("head");
                let decoder = vb.pp("decoder");
                let (dense, norm) = (head.pp("dense"), head.pp("norm"));
                (dense, act, norm, decoder.clone(), decoder)
            }
            other => {
                return Err(ModelError::Config(format!(
                    "a masked-LM head of a {other:?} checkout is not served (BERT's, \
                     RoBERTa's, DistilBERT's, GTE's and ModernBERT's are)"
                )))
            }
        };
        if activation == EncoderActivation::Silu {
            return Err(ModelError::Config(
                "a masked-LM head with a SiLU is not served (GELU, ReLU)".into(),
            ));
        }
        if !dense.contains_tensor("weight") {
            return Err(ModelError::MissingTensor(format!(
                "{}: the checkout names a masked LM but has no head",
                dir.display()
            )));
        }
        let decoder = match decoder.contains_tensor("weight") {
            true => decoder.get((v, h), "weight")?,
            false => words.clone(),
        };
        Ok(MlmHead {
            // ModernBERT's head has no biases unless its config keeps them.
            dense: Projection::load_as_stored(&dense, h, h)?,
            activation,
            norm: match c.family {
                Family::Modern => super::modern::norm(&norm, h, c.layer_norm_eps)?,
                _ => layer_norm(&norm, h, c.layer_norm_eps)?,
            },
            decoder,
            bias: bias.get(v, "bias")?,
        })
    }

    /// Every row's score of every vocabulary entry: `[rows, vocab]`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.dense.activated(x, self.activation)?;
        let x = self.norm.forward(&x)?;
        Ok(x.matmul(&self.decoder.t()?)?.broadcast_add(&self.bias)?)
    }

    fn vocab_size(&self) -> Result<usize> {
        Ok(self.decoder.dim(0)?)
    }
}

/// Where a BERT-style head keeps the decoder's bias: beside the decoder (`head.bias`), or
/// (older checkouts) in it (`head.decoder.bias`).
fn decoder_bias<'a>(head: &VarBuilder<'a>) -> VarBuilder<'a> {
    match head.contains_tensor("bias") {
        true => head.clone(),
        false => head.pp("decoder"),
    }
}

/// The scores one step of pooling holds at once (rows × vocabulary): 32 MB of f32, so a long
/// input over a large vocabulary (XLM-R's 250k entries) is pooled a block of rows at a time.
const SCORES_AT_ONCE: usize = 8 << 20;

/// A masked LM's head and the pooling that makes a SPLADE vector of it.
pub struct Splade {
    pub head: MlmHead,
    pub config: SpladeConfig,
}

impl Splade {
    /// One input's SPLADE vector over the vocabulary from its final hidden states
    /// (`[tokens, hidden]`), on the host.
    pub fn pool(&self, states: &Tensor) -> Result<Vec<f32>> {
        self.pool_in_blocks(states, SCORES_AT_ONCE)
    }

    /// `pool`, holding at most `scores_at_once` scores (at least a row's) at a time.
    fn pool_in_blocks(&self, states: &Tensor, scores_at_once: usize) -> Result<Vec<f32>> {
        let vocab = self.head.vocab_size()?;
        let rows = states.dim(0)?;
        let step = (scores_at_once / vocab.max(1)).max(1);
        let mut pooled: Option<Tensor> = None;
        for first in (0..rows).step_by(step) {
            let scores = self
                .head
                .logits(&states.narrow(0, first, step.min(rows - first))?)?;
            let part = match self.config.strategy {
                // relu and log(1 + x) never decrease, so the maximum of the transformed
                // scores is the transformed maximum: the raw scores are reduced here and
                // only the vocabulary's row is transformed, on the host, with an exact
                // `ln_1p` (log(1 + x) in f32 rounds scores under 6e-8 to zero).
                SpladeStrategy::Max => scores.max(0)?,
                SpladeStrategy::Sum => self.transformed(scores.relu()?)?.sum(0)?,
            };
            pooled = Some(match (pooled, self.config.strategy) {
                (None, _) => part,
                (Some(p), SpladeStrategy::Max) => p.maximum(&part)?,
                (Some(p), SpladeStrategy::Sum) => (p + part)?,
            });
        }
        let pooled = pooled.ok_or_else(|| {
            ModelError::InvalidBatch("a SPLADE vector of an input without tokens".into())
        })?;
        let mut values = pooled.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
        if self.config.strategy == SpladeStrategy::Max {
            for v in &mut values {
                *v = activate(*v, self.config.activation);
            }
        }
        Ok(values)
    }

    /// `log(1 + x)` of every non-negative score (twice for `Log1pRelu`), on the device.
    fn transformed(&self, scores: Tensor) -> Result<Tensor> {
        let once = scores.affine(1.0, 1.0)?.log()?;
        Ok(match self.config.activation {
            SpladeActivation::Relu => once,
            SpladeActivation::Log1pRelu => once.affine(1.0, 1.0)?.log()?,
        })
    }
}

/// One score through SPLADE's activation.
fn activate(x: f32, activation: SpladeActivation) -> f32 {
    let once = x.max(0.0).ln_1p();
    match activation {
        SpladeActivation::Relu => once,
        SpladeActivation::Log1pRelu => once.ln_1p(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("candor-splade-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(d.join("1_SpladePooling")).unwrap();
        d
    }

    #[test]
    fn the_pooling_is_read_from_the_sentence_transformers_files() {
        let d = dir("config");
        assert_eq!(SpladeConfig::from_dir(&d).unwrap(), None);
        let modules = r#"[{"idx": 0, "path": "", "type": "sentence_transformers.sparse_encoder.models.MLMTransformer"},
            {"idx": 1, "path": "1_SpladePooling", "type": "sentence_transformers.sparse_encoder.models.SpladePooling"}]"#;
        std::fs::write(d.join("modules.json"), modules).unwrap();
        // A module without its config pools as every SPLADE since v2 does.
        assert_eq!(
            SpladeConfig::from_dir(&d).unwrap(),
            Some(SpladeConfig::default())
        );
        let config = |json: &str| std::fs::write(d.join("1_SpladePooling/config.json"), json);
        config(r#"{"pooling_strategy": "sum", "activation_function": "log1p_relu"}"#).unwrap();
        assert_eq!(
            SpladeConfig::from_dir(&d).unwrap(),
            Some(SpladeConfig {
                strategy: SpladeStrategy::Sum,
                activation: SpladeActivation::Log1pRelu
            })
        );
        config(r#"{"pooling_strategy": "mean"}"#).unwrap();
        let e = SpladeConfig::from_dir(&d).unwrap_err().to_string();
        assert!(e.contains("`mean`"), "{e}");
        config(r#"{"pooling_strategy": "max", "activation_function": "gelu"}"#).unwrap();
        assert!(SpladeConfig::from_dir(&d).is_err());
        config("{oops").unwrap();
        assert!(SpladeConfig::from_dir(&d).is_err());
        // A dense sentence-transformers checkout has no SPLADE module.
        let dense =
            r#"[{"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#;
        std::fs::write(d.join("modules.json"), dense).unwrap();
        assert_eq!(SpladeConfig::from_dir(&d).unwrap(), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A head of fixed values, its bias shifted down so that some entries score below zero
    /// at every token.
    fn head(vocab: usize, hidden: usize) -> MlmHead {
        let dev = Device::Cpu;
        let values = |n: usize, seed: f32| -> Vec<f32> {
            (0..n)
                .map(|i| (i as f32 * 0.37 + seed).sin() * 1.7)
                .collect()
        };
        let t = |n: usize, shape: (usize, usize), seed: f32| {
            Tensor::from_vec(values(n, seed), shape, &dev).unwrap()
        };
        MlmHead {
            dense: Projection::from_weight(t(hidden * hidden, (hidden, hidden), 0.5), None)
                .unwrap(),
            activation: EncoderActivation::GeluErf,
            norm: LayerNorm::new(
                Tensor::ones(hidden, DType::F32, &dev).unwrap(),
                Tensor::zeros(hidden, DType::F32, &dev).unwrap(),
                1e-12,
            ),
            decoder: t(vocab * hidden, (vocab, hidden), 1.1),
            bias: Tensor::from_vec(values(vocab, 2.0), vocab, &dev)
                .unwrap()
                .affine(1.0, -1.0)
                .unwrap(),
        }
    }

    #[test]
    fn pooling_in_blocks_of_rows_matches_every_token_transformed_then_pooled() {
        let (vocab, hidden, rows) = (7, 4, 9);
        let states = Tensor::from_vec(
            (0..rows * hidden)
                .map(|i| (i as f32 * 0.71).cos())
                .collect::<Vec<_>>(),
            (rows, hidden),
            &Device::Cpu,
        )
        .unwrap();
        for strategy in [SpladeStrategy::Max, SpladeStrategy::Sum] {
            for activation in [SpladeActivation::Relu, SpladeActivation::Log1pRelu] {
                let splade = Splade {
                    head: head(vocab, hidden),
                    config: SpladeConfig {
                        strategy,
                        activation,
                    },
                };
                let scores = splade
                    .head
                    .logits(&states)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                let want: Vec<f32> = (0..vocab)
                    .map(|v| {
                        let each = scores.iter().map(|r| activate(r[v], activation));
                        match strategy {
                            SpladeStrategy::Max => each.fold(0.0, f32::max),
                            SpladeStrategy::Sum => each.sum(),
                        }
                    })
                    .collect();
                assert!(want.contains(&0.0) && want.iter().any(|&w| w > 0.0));
                // Whole, and two rows (of seven scores) at a time, the last block one row.
                for at_once in [SCORES_AT_ONCE, 14] {
                    let got = splade.pool_in_blocks(&states, at_once).unwrap();
                    let diff = (got.iter().zip(&want))
                        .map(|(g, w)| (g - w).abs())
                        .fold(0.0, f32::max);
                    assert!(
                        diff < 1e-5,
                        "{strategy:?} {activation:?}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn tiny_scores_keep_their_weight_under_max_pooling() {
        // log(1 + 1e-9) is 0 in f32; ln_1p keeps it, as torch's log1p does.
        assert_eq!(activate(1e-9, SpladeActivation::Relu), 1e-9);
        assert_eq!(activate(-3.0, SpladeActivation::Log1pRelu), 0.0);
    }
}
