//! Static embedding models: a text's embedding is the mean of its tokens' rows of one table, no
//! forward pass at all (hundreds of times a transformer's speed on a CPU). Two layouts:
//!
//! - Model2Vec's (`model2vec`'s `StaticModel`: minishlab's potion models): `config.json`
//!   (`normalize`, `max_length`), `model.safetensors` with `embeddings` `[rows, dim]` and
//!   optionally `weights` (a factor per token) and `mapping` (the row of each token where the
//!   vocabulary is quantized to fewer rows), `tokenizer.json`. As `StaticModel.encode` reads
//!   it: the unknown token is left out of the mean, each row times its token's weight.
//! - sentence-transformers' `StaticEmbedding` module (static-retrieval-mrl-en-v1): its
//!   directory's `model.safetensors` with `embedding.weight` and its `tokenizer.json`; every
//!   token counts, as its `EmbeddingBag` averages them.
//!
//! Texts are tokenized without special tokens, as both do.
use crate::error::{ModelError, Result};
use crate::sentence_transformers::{read_json, Modules};
use crate::tokenizer::Tokenizer;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct StaticEmbedding {
    /// `[rows, dim]`, row-major.
    table: Vec<f32>,
    dim: usize,
    /// Tokens in the vocabulary: the table's rows, or the mapping's length.
    tokens: usize,
    /// The row of each token, where several share one.
    mapping: Option<Vec<u32>>,
    /// A factor per token.
    weights: Option<Vec<f32>>,
    /// Whether the unknown token is left out of the mean (Model2Vec's checkouts), once its
    /// tokenizer names it (`leave_out_unknown`).
    skips_unknown: bool,
    /// The token left out of the mean.
    skipped: Option<u32>,
    /// The longest input the model reads (Model2Vec's `max_length`).
    pub max_length: Option<usize>,
    /// Where its `tokenizer.json` is.
    pub tokenizer_dir: PathBuf,
}

/// The safetensors file of a static embedding.
const FILE: &str = "model.safetensors";

impl StaticEmbedding {
    /// The static embedding of checkout `dir`: a Model2Vec checkout (its `embeddings` tensor),
    /// or one whose modules.json starts with a `StaticEmbedding`; None for another model.
    pub fn from_dir(dir: &Path) -> Result<Option<StaticEmbedding>> {
        let module = (Modules::read(dir).map_err(ModelError::Config)?)
            .and_then(|m| m.first_if(".StaticEmbedding"));
        let config = read_json(&dir.join("config.json")).map_err(ModelError::Config)?;
        let model2vec = (config.as_ref())
            .and_then(|c| c.get("model_type"))
            .and_then(|t| t.as_str())
            == Some("model2vec");
        let module = match (module, model2vec) {
            (Some(module), _) => module,
            (None, true) => dir.to_path_buf(),
            (None, false) => return Ok(None),
        };
        let path = module.join(FILE);
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
        let host = |name: &str| -> Result<Option<Vec<f32>>> {
            match tensors.get(name) {
                Some(t) => Ok(Some(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?)),
                None => Ok(None),
            }
        };
        let (table, native) = match (tensors.get("embeddings"), tensors.get("embedding.weight")) {
            (Some(t), _) => (t, true),
            (None, Some(t)) => (t, false),
            (None, None) => {
                return Err(ModelError::MissingTensor(format!(
                    "{}: `embeddings` or `embedding.weight`",
                    path.display()
                )))
            }
        };
        let (rows, dim) = table.dims2()?;
        let table = table
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let mapping = match tensors.get("mapping").filter(|_| native) {
            Some(m) => Some(
                (m.to_dtype(DType::I64)?
                    .flatten_all()?
                    .to_vec1::<i64>()?
                    .into_iter())
                .map(|r| u32::try_from(r).ok().filter(|&r| (r as usize) < rows))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| {
                    ModelError::Config(format!("{}: a mapping past the table", path.display()))
                })?,
            ),
            None => None,
        };
        let tokens = mapping.as_ref().map_or(rows, Vec::len);
        let weights = match native {
            true => host("weights")?,
            false => None,
        };
        if weights.as_ref().is_some_and(|w| w.len() != tokens) {
            return Err(ModelError::Config(format!(
                "{}: {} weights for {tokens} tokens",
                path.display(),
                weights.as_ref().map_or(0, Vec::len)
            )));
        }
        let max_length = (config.as_ref().filter(|_| native))
            .and_then(|c| c.get("max_length"))
            .and_then(|m| m.as_u64())
            .map(|m| m as usize);
        Ok(Some(StaticEmbedding {
            table,
            dim,
            tokens,
            mapping,
            weights,
            skips_unknown: native,
            skipped: None,
            max_length,
            tokenizer_dir: module,
        }))
    }

    /// Leave `tokenizer`'s unknown token out of every mean, where the model does (Model2Vec's
    /// `encode` drops it before averaging; sentence-transformers' `StaticEmbedding` keeps it).
    pub fn leave_out_unknown(&mut self, tokenizer: &Tokenizer) {
        if self.skips_unknown {
            self.skipped = tokenizer.unknown_id();
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Tokens in its vocabulary.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// The rows of `ids` whose mean is their embedding, as the tokens of one text: each
    /// token's row times its weight, a skipped token's zero and the others scaled by
    /// `len / kept`, so that the mean of all of them is the mean of those kept.
    pub fn rows(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let kept = ids.iter().filter(|&&id| Some(id) != self.skipped).count();
        let scale = match kept {
            0 => 0.0,
            k => ids.len() as f32 / k as f32,
        };
        let mut out = Vec::with_capacity(ids.len() * self.dim);
        for &id in ids {
            let token = id as usize;
            let row = match &self.mapping {
                Some(m) => m.get(token).map(|&r| r as usize),
                None => Some(token).filter(|&t| t < self.tokens),
            }
            .ok_or(ModelError::TokenOutOfVocab {
                id,
                vocab: self.tokens,
            })?;
            let factor = match Some(id) == self.skipped {
                true => 0.0,
                false => {
                    scale
                        * (self.weights.as_ref())
                            .map_or(1.0, |w| w.get(token).copied().unwrap_or(1.0))
                }
            };
            let values = &self.table[row * self.dim..(row + 1) * self.dim];
            out.extend(values.iter().map(|v| v * factor));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(skipped: Option<u32>, weights: Option<Vec<f32>>) -> StaticEmbedding {
        StaticEmbedding {
            table: vec![1.0, 0.0, 0.0, 1.0, 2.0, 2.0],
            dim: 2,
            tokens: 4,
            mapping: Some(vec![0, 1, 2, 2]),
            weights,
            skips_unknown: true,
            skipped,
            max_length: None,
            tokenizer_dir: PathBuf::new(),
        }
    }

    #[test]
    fn the_mean_of_the_rows_leaves_the_skipped_token_out() {
        let m = model(Some(1), None);
        // Tokens 0 and 1 (skipped): the mean of both rows is token 0's row.
        let rows = m.rows(&[0, 1]).unwrap();
        assert_eq!(rows, [2.0, 0.0, 0.0, 0.0]);
        // Tokens 2 and 3 share a row.
        assert_eq!(m.rows(&[2, 3]).unwrap(), [2.0, 2.0, 2.0, 2.0]);
        assert!(m.rows(&[4]).is_err());
        assert_eq!(m.rows(&[1]).unwrap(), [0.0, 0.0]);
    }

    #[test]
    fn each_row_is_weighed_by_its_token() {
        let m = model(None, Some(vec![0.5, 1.0, 2.0, 1.0]));
        assert_eq!(m.rows(&[0, 2]).unwrap(), [0.5, 0.0, 4.0, 4.0]);
    }
}
