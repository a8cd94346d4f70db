//! A static sparse encoder: sentence-transformers' `SparseStaticEmbedding`, the query side of an
//! inference-free SPLADE model (opensearch's doc-only neural sparse encoders). A query's vector
//! is each of its tokens' weight in a fixed table (an IDF table, learned or counted), once per
//! distinct token however often it occurs, zero elsewhere: no forward pass at all, so a query
//! costs a tokenization while its documents were encoded by the masked LM.
use crate::error::{ModelError, Result};
use crate::tokenizer::Tokenizer;
use candle_core::{DType, Device};
use std::path::Path;

/// The file sentence-transformers saves the table in, under the module's directory.
pub const STATIC_SPARSE_FILE: &str = "model.safetensors";
/// The file opensearch's doc-only encoders keep their query table in, at the checkout's root.
pub const IDF_FILE: &str = "idf.json";

/// A Router's static route: its name (`query`, the task a request names to take it), its
/// table, and whether it is the Router's default route (taken by a text whose task is not
/// named; sentence-transformers' own `for_query_document` defaults to the documents').
#[derive(Debug, Clone)]
pub struct StaticRoute {
    pub name: String,
    pub table: StaticSparse,
    pub default: bool,
}

#[derive(Debug, Clone)]
pub struct StaticSparse {
    /// A weight per token id; ids past its end weigh nothing.
    weights: Vec<f32>,
}

impl StaticSparse {
    /// The table in module directory `dir` (its `model.safetensors`, tensor `weight`).
    pub fn load(dir: &Path) -> Result<StaticSparse> {
        let path = dir.join(STATIC_SPARSE_FILE);
        if !path.exists() {
            return Err(ModelError::NotAModel {
                path: dir.display().to_string(),
                reason: format!(
                    "a SparseStaticEmbedding module without its {STATIC_SPARSE_FILE} (a \
                     pytorch_model.bin is not read: save it with safe serialization)"
                ),
            });
        }
        let tensors = candle_core::safetensors::load(&path, &Device::Cpu)?;
        let weight = tensors
            .get("weight")
            .ok_or_else(|| ModelError::MissingTensor(format!("{}: weight", path.display())))?;
        let weights = weight
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        if let Some(bad) = weights.iter().find(|w| !w.is_finite()) {
            return Err(ModelError::Config(format!(
                "{}: a static weight of {bad}",
                path.display()
            )));
        }
        Ok(StaticSparse { weights })
    }

    /// The table of an `idf.json` (a JSON object of token → weight, as opensearch's doc-only
    /// encoders ship their query weights beside the masked LM): zero for every id of
    /// `tokenizer`'s vocabulary, then each listed token's weight at its id, as
    /// sentence-transformers' `SparseStaticEmbedding.from_json` builds it. A token the
    /// vocabulary lacks is left out (sentence-transformers would put its weight on the
    /// unknown token's id); how many were is logged.
    pub fn from_idf_json(path: &Path, tokenizer: &Tokenizer) -> Result<StaticSparse> {
        let bad = |why: String| ModelError::Config(format!("{}: {why}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let listed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        let mut weights = vec![0.0f32; tokenizer.vocab_size()];
        let mut unknown = 0usize;
        for (token, w) in &listed {
            let w = w
                .as_f64()
                .map(|w| w as f32)
                .filter(|w| w.is_finite())
                .ok_or_else(|| bad(format!("the weight of `{token}` is {w}, not a number")))?;
            match tokenizer
                .token_id(token)
                .and_then(|id| weights.get_mut(id as usize))
            {
                Some(slot) => *slot = w,
                None => unknown += 1,
            }
        }
        if unknown > 0 {
            tracing::warn!(
                path = %path.display(),
                unknown,
                "tokens of the table that the tokenizer does not have weigh nothing"
            );
        }
        Ok(StaticSparse { weights })
    }

    pub fn from_weights(weights: Vec<f32>) -> StaticSparse {
        StaticSparse { weights }
    }

    /// The vector of a query's tokens `ids` over a vocabulary of `vocab` entries: each
    /// distinct token's weight at its id, as `SparseStaticEmbedding` scatters them (every
    /// token the tokenizer made counts, its special ones too: their weights are the table's).
    pub fn vector(&self, ids: &[u32], vocab: usize) -> Vec<f32> {
        let mut v = vec![0.0; vocab];
        for &id in ids {
            let id = id as usize;
            if let (Some(slot), Some(&w)) = (v.get_mut(id), self.weights.get(id)) {
                *slot = w;
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_weighs_each_distinct_token_once() {
        let table = StaticSparse::from_weights(vec![0.0, 1.5, 2.0, 0.25]);
        assert_eq!(table.vector(&[1, 3, 1], 5), [0.0, 1.5, 0.0, 0.25, 0.0]);
        // An id past the table weighs nothing; one past the vocabulary is not there.
        assert_eq!(table.vector(&[4, 9], 5), [0.0; 5]);
        assert_eq!(table.vector(&[], 2), [0.0; 2]);
    }
}
