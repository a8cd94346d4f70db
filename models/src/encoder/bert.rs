//! The BERT encoder as transformers runs it (`BertModel`, `RobertaModel`,
//! `XLMRobertaModel`, `NomicBertModel`, `GteModel`, `DistilBertModel`): token, position and
//! token-type embeddings summed and normed (NomicBERT, GTE: no position table, their queries
//! and keys turned by position instead; DistilBERT: no token types);
//! then per layer bidirectional attention and a feed-forward block, each added to its input
//! and normed after (post-norm). Candle tensors on a candle device (CPU or CUDA), f32.
//!
//! Several inputs run in one pass without padding: the projections see every input's rows
//! stacked, attention runs over each input's own rows. An encoder reads whole inputs, so it
//! keeps no KV cache.
use super::config::{EncoderConfig, Family};
use super::layer::{layer_norm, Layer};
use super::rotary::Rotary;
use crate::classifier::{Classifier, Dense, DenseActivation, HeadInput};
use crate::error::{ModelError, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use std::path::{Path, PathBuf};

/// One input: its token ids and each token's type (segment: 0 for a single text, 0 then 1
/// over a BERT pair).
#[derive(Debug, Clone, Copy)]
pub struct EncoderInput<'a> {
    pub ids: &'a [u32],
    pub type_ids: &'a [u32],
}

pub struct BertEncoder {
    config: EncoderConfig,
    words: Embedding,
    /// The position table; None where positions are rotary (`rotary`).
    positions: Option<Embedding>,
    rotary: Option<Rotary>,
    /// The token-type table; None where the model has none (ModernBERT).
    token_types: Option<Embedding>,
    embedding_norm: LayerNorm,
    stack: Stack,
    device: Device,
}

/// The layers: BERT's post-norm ones, or ModernBERT's stack (its own rotary tables and final
/// norm).
enum Stack {
    PostNorm(Vec<Layer>),
    Modern(super::modern::Stack),
}

/// Where the encoder's tensors sit in a checkout: at the top (`BertModel`, a
/// sentence-transformers checkout) or under the task model's prefix (GTE's remote code's
/// classifier: `new.`).
const PREFIXES: [&str; 7] = [
    "",
    "bert.",
    "roberta.",
    "model.",
    "new.",
    "gte.",
    "distilbert.",
];

impl BertEncoder {
    /// The encoder of the checkout `dir` (its `*.safetensors` files) on `device`, and its
    /// classification head where the checkout is a sequence classifier (`labels` named by
    /// `id2label`).
    pub fn load(
        config: &EncoderConfig,
        dir: &Path,
        device: &Device,
    ) -> Result<(BertEncoder, Option<Classifier>)> {
        let files = safetensors_files(dir)?;
        // Safety: the files are mapped read-only for as long as the weights are read from
        // them, as every loader here maps model files; they are not written while served.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device)? };
        let words = match config.family {
            Family::Modern => "embeddings.tok_embeddings.weight",
            Family::Bert | Family::Roberta | Family::Nomic | Family::Gte | Family::DistilBert => {
                "embeddings.word_embeddings.weight"
            }
        };
        let prefix = PREFIXES
            .into_iter()
            .find(|p| vb.contains_tensor(&format!("{p}{words}")))
            .ok_or_else(|| ModelError::MissingTensor(words.into()))?;
        let base = match prefix {
            "" => vb.clone(),
            p => vb.pp(p.trim_end_matches('.')),
        };
        let encoder = BertEncoder::from_vb(config, &base, device)?;
        let head = match config.classifies {
            true => {
                let (pre, out, act) = match config.family {
                    Family::Bert | Family::Gte => (
                        base.pp("pooler").pp("dense"),
                        vb.pp("classifier"),
                        DenseActivation::Tanh,
                    ),
                    Family::Roberta => {
                        let head = vb.pp("classifier");
                        (head.pp("dense"), head.pp("out_proj"), DenseActivation::Tanh)
                    }
                    Family::DistilBert => (
                        vb.pp("pre_classifier"),
                        vb.pp("classifier"),
                        DenseActivation::Relu,
                    ),
                    Family::Modern => {
                        let labels = crate::classifier::hf_labels(dir)?;
                        let json = super::config::config_json(dir)?;
                        let head = super::modern::load_head(&vb, config, &json, &labels, false)?;
                        return Ok((encoder, Some(head)));
                    }
                    Family::Nomic => {
                        return Err(ModelError::Config(
                            "a NomicBERT classifier's head is not served".into(),
                        ))
                    }
                };
                let labels = crate::classifier::hf_labels(dir)?;
                Some(load_head(
                    config,
                    Some((&pre, act)),
                    &out,
                    &labels,
                    HeadInput::First,
                )?)
            }
            false => None,
        };
        Ok((encoder, head))
    }

    /// The encoder whose tensors `vb` holds under transformers' names (`embeddings.*`,
    /// `encoder.layer.N.*`; NomicBERT's remote code's: `emb_ln`, `encoder.layers.N.*`), on
    /// `device`.
    pub(crate) fn from_vb(
        config: &EncoderConfig,
        vb: &VarBuilder,
        device: &Device,
    ) -> Result<BertEncoder> {
        let h = config.hidden_size;
        let e = vb.pp("embeddings");
        let embedding = |rows: usize, name: &str| -> Result<Embedding> {
            Ok(Embedding::new(
                e.get((rows, h), &format!("{name}.weight"))?,
                h,
            ))
        };
        let eps = config.layer_norm_eps;
        if config.family == Family::Modern {
            return Ok(BertEncoder {
                config: config.clone(),
                words: embedding(config.vocab_size, "tok_embeddings")?,
                positions: None,
                rotary: None,
                token_types: None,
                embedding_norm: super::modern::norm(&e.pp("norm"), h, eps)?,
                stack: Stack::Modern(super::modern::Stack::load(vb, config, device)?),
                device: device.clone(),
            });
        }
        let words = embedding(config.vocab_size, "word_embeddings")?;
        // GTE's checkouts with `type_vocab_size: 0` (gte-base-en-v1.5) and DistilBERT's have
        // no table: every token is type 0 and adds nothing.
        let token_types = match matches!(config.family, Family::Gte | Family::DistilBert)
            && !e.contains_tensor("token_type_embeddings.weight")
        {
            true => None,
            false => Some(embedding(config.type_vocab_size, "token_type_embeddings")?),
        };
        let rotary = |family: &str| -> Result<Rotary> {
            let theta = (config.rotary_theta)
                .ok_or_else(|| ModelError::Config(format!("{family} without a rotary base")))?;
            let (dim, context) = (config.head_dim(), config.context());
            Rotary::new(theta, config.rotary_divisor, dim, context, device)
        };
        let (positions, rotary, embedding_norm, layers) = match config.family {
            Family::Bert | Family::Roberta | Family::Modern | Family::DistilBert => (
                Some(embedding(
                    config.max_position_embeddings,
                    "position_embeddings",
                )?),
                None,
                layer_norm(&e.pp("LayerNorm"), h, eps)?,
                match config.family {
                    Family::DistilBert => super::distil::layers(vb, config)?,
                    _ => (0..config.num_layers)
                        .map(|i| Layer::load(&vb.pp(format!("encoder.layer.{i}")), config))
                        .collect::<Result<Vec<_>>>()?,
                },
            ),
            Family::Nomic => (
                None,
                Some(rotary("NomicBERT")?),
                layer_norm(&vb.pp("emb_ln"), h, eps)?,
                (0..config.num_layers)
                    .map(|i| super::nomic::layer(&vb.pp(format!("encoder.layers.{i}")), config))
                    .collect::<Result<Vec<_>>>()?,
            ),
            Family::Gte => (
                None,
                Some(rotary("GTE")?),
                layer_norm(&e.pp("LayerNorm"), h, eps)?,
                super::gte::layers(vb, config)?,
            ),
        };
        Ok(BertEncoder {
            config: config.clone(),
            words,
            positions,
            rotary,
            token_types,
            embedding_norm,
            stack: Stack::PostNorm(layers),
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The word-embedding table, `[vocab, hidden]` (a masked LM's decoder where tied).
    pub fn word_embeddings(&self) -> &Tensor {
        self.words.embeddings()
    }

    /// Every input's final hidden states, stacked in input order: `[total tokens, hidden]`.
    pub fn forward(&self, inputs: &[EncoderInput]) -> Result<Tensor> {
        let c = &self.config;
        let total: usize = inputs.iter().map(|i| i.ids.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut types = Vec::with_capacity(total);
        let mut spans = Vec::with_capacity(inputs.len());
        for (n, input) in inputs.iter().enumerate() {
            let len = input.ids.len();
            if len == 0 || len > c.context() || input.type_ids.len() != len {
                return Err(ModelError::InvalidBatch(format!(
                    "encoder input {n}: {len} tokens and {} types (1 to {} tokens, a type each)",
                    input.type_ids.len(),
                    c.context()
                )));
            }
            if let Some(&id) = input.ids.iter().find(|&&id| id as usize >= c.vocab_size) {
                return Err(ModelError::TokenOutOfVocab {
                    id,
                    vocab: c.vocab_size,
                });
            }
            if let Some(&t) = (input.type_ids.iter()).find(|&&t| t as usize >= c.type_vocab_size) {
                return Err(ModelError::InvalidBatch(format!(
                    "encoder input {n}: token type {t}, the model has {}",
                    c.type_vocab_size
                )));
            }
            spans.push((ids.len(), len));
            ids.extend_from_slice(input.ids);
            types.extend_from_slice(input.type_ids);
        }
        let tensor = |v: Vec<u32>| Tensor::from_vec(v, total, &self.device);
        let mut x = self.words.forward(&tensor(ids)?)?;
        if let Some(table) = &self.token_types {
            x = (x + table.forward(&tensor(types)?)?)?;
        }
        if let Some(table) = &self.positions {
            let positions = (spans.iter())
                .flat_map(|&(_, len)| (0..len).map(|p| (p + c.position_offset) as u32))
                .collect();
            x = (x + table.forward(&tensor(positions)?)?)?;
        }
        let mut x = self.embedding_norm.forward(&x)?;
        match &self.stack {
            Stack::PostNorm(layers) => {
                for layer in layers {
                    x = layer.forward(&x, &spans, self.rotary.as_ref(), c)?;
                }
                Ok(x)
            }
            Stack::Modern(stack) => stack.forward(x, &spans, c),
        }
    }
}

/// A sequence classifier's head over the `[CLS]` state: a layer `pre` and its activation
/// (BERT's pooler and RoBERTa's `classifier.dense`, tanh; DistilBERT's `pre_classifier`, ReLU;
/// absent from a GGUF of a BERT classifier, whose converter drops the pooler) then the label
/// rows `out`, `labels.len()` of them (2 where the config names none, transformers' default).
pub(crate) fn load_head(
    c: &EncoderConfig,
    pre: Option<(&VarBuilder, DenseActivation)>,
    out: &VarBuilder,
    labels: &[Option<String>],
    reads: HeadInput,
) -> Result<Classifier> {
    let h = c.hidden_size;
    let count = match labels.len() {
        0 => 2,
        n => n,
    };
    let host = |t: Tensor| -> Result<Vec<f32>> {
        Ok(t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?)
    };
    let pre = match pre {
        Some((pre, activation)) => Some(Dense::new(
            host(pre.get((h, h), "weight")?)?,
            host(pre.get(h, "bias")?)?,
            activation,
        )),
        None => None,
    };
    let weight = host(out.get((count, h), "weight")?)?;
    let bias = host(out.get(count, "bias")?)?;
    Classifier::encoder_head(pre, weight, bias, h, labels, reads)
}

/// The checkout's weight files: `model.safetensors`, or the shards its index names (every
/// `*.safetensors` at the top of the directory; an adapter's file is not the model's). PyTorch
/// checkpoints alone are rewritten as safetensors first (`weights::pytorch`).
pub(super) fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    crate::weights::pytorch::convert_checkout(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "safetensors")
                && p.file_name()
                    .is_some_and(|n| n != "adapter_model.safetensors")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::NotAModel {
            path: dir.display().to_string(),
            reason: "an encoder checkout without *.safetensors weights".into(),
        });
    }
    Ok(files)
}
