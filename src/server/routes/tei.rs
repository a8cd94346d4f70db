//! text-embeddings-inference's own endpoints, for its clients (LangChain's and LlamaIndex's
//! TEI embeddings, its Python client): `POST /embed` (each input's pooled embedding,
//! `[[f32, …], …]`, normalised unless `normalize: false`, `dimensions` kept), `/embed_all`
//! (every token's vector, `[[[f32, …], …], …]`, as computed) and `/embed_sparse` (each
//! input's sparse vector as its non-zero entries, `[[{"index": vocabulary id, "value":
//! weight}, …], …]`, each list by index, as pooled: term weights compared by dot product, as
//! sparse-vector stores (Qdrant, Milvus, OpenSearch) index them). They read TEI's `inputs`
//! (texts or token ids), `truncate` with `truncation_direction` and `prompt_name`. Its
//! `/rerank` body (`query`, `texts`, `raw_scores`, `return_text`, `truncate`) is told from
//! Jina's and Cohere's (`documents`) by its fields, and answered in its shape; its
//! `/similarity` (`{"inputs": {"source_sentence", "sentences"}}`) scores each sentence
//! against the source.
//! `/embed_sparse` is served where the model has a sparse head, whatever it pools its dense
//! embeddings by: a SPLADE masked LM (a sentence-transformers `SparseEncoder` checkout, whose
//! `/embed` answers the same vectors dense over the vocabulary) or BGE-M3 (its lexical
//! weights, beside the `[CLS]` embedding `/embed` answers).
use super::embeddings::{pooled, pooled_routed, run_pooling, token_vectors};
use super::similarity::{dot, pair_scores, Pairs};
use crate::engine::pooling::Pooling;
use crate::server::embeddings::{
    self, checked_inputs, tokenized_inputs, vector_norm, EmbeddingInput,
};
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::sparse_route::Route;
use crate::server::state::{Ready, SharedState};
use crate::server::validate::{cut_encoder_input, cut_encoder_input_head};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The fields every TEI embedding request reads: all `/embed_all` and `/embed_sparse` read.
#[derive(Debug, Deserialize)]
pub struct TeiInputs {
    /// A text, a list of texts, token ids or lists of them (read as `EmbeddingInput`, so a bad
    /// one is named `inputs`).
    pub inputs: Value,
    /// Cut an input longer than the context instead of refusing it.
    pub truncate: Option<bool>,
    /// Which end a cut input loses: `right` (its end, the default) or `left`.
    pub truncation_direction: Option<Direction>,
    /// The checkout's sentence-transformers prompt to put before each text.
    pub prompt_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    #[serde(flatten)]
    pub base: TeiInputs,
    /// Scale each vector to unit length (the default; a SPLADE vector's is off).
    pub normalize: Option<bool>,
    /// Keep each vector's first `dimensions` values (a Matryoshka embedding's).
    pub dimensions: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Direction {
    #[serde(alias = "Right")]
    #[serde(rename = "right")]
    Right,
    #[serde(alias = "Left")]
    #[serde(rename = "left")]
    Left,
}

/// TEI's `/rerank` (sent to `/rerank` with `texts`, not `documents`).
#[derive(Debug, Deserialize)]
pub struct RerankRequest {
    pub query: String,
    pub texts: Vec<String>,
    /// Cut a pair past the context at its end instead of refusing it.
    pub truncate: Option<bool>,
    pub truncation_direction: Option<Direction>,
    /// A cross-encoder's logit rather than its sigmoid.
    pub raw_scores: Option<bool>,
    /// Echo each text with its score.
    pub return_text: Option<bool>,
}

/// TEI's rerank: `[{"index", "score", "text"?}]`, best first, scored as `/rerank` scores (a
/// cross-encoder's sigmoid, else the embeddings' cosine).
pub async fn rerank(state: &SharedState, req: RerankRequest) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    if req.texts.is_empty() {
        return Err(ApiError::invalid("texts", "`texts` must not be empty"));
    }
    if req.query.is_empty() {
        return Err(ApiError::invalid("query", "`query` must not be empty"));
    }
    if req.truncation_direction == Some(Direction::Left) {
        return Err(ApiError::invalid(
            "truncation_direction",
            "a query and text pair is cut at its end (`right`)",
        ));
    }
    let pairs = Pairs {
        first: std::slice::from_ref(&req.query),
        second: &req.texts,
        pairs: (0..req.texts.len()).map(|d| (0, d)).collect(),
        params: ("query", "texts"),
        cut: req.truncate.unwrap_or(ready.auto_truncate),
        raw: req.raw_scores == Some(true),
    };
    let (scores, _) = pair_scores(ready, None, &pairs).await?;
    let mut scored: Vec<(usize, f64)> = scores.into_iter().enumerate().collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let answer: Vec<Value> = (scored.into_iter())
        .map(|(index, score)| match req.return_text {
            Some(true) => json!({"index": index, "score": score, "text": req.texts[index]}),
            _ => json!({"index": index, "score": score}),
        })
        .collect();
    Ok(axum::Json(answer).into_response())
}

/// TEI's `/similarity` (the Hub's sentence-similarity task).
#[derive(Debug, Deserialize)]
pub struct SimilarityRequest {
    pub inputs: SimilarityInputs,
    #[serde(default)]
    pub parameters: SimilarityParameters,
}

#[derive(Debug, Deserialize)]
pub struct SimilarityInputs {
    pub source_sentence: String,
    pub sentences: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SimilarityParameters {
    pub truncate: Option<bool>,
    pub truncation_direction: Option<Direction>,
    pub prompt_name: Option<String>,
}

/// `POST /similarity`: each of `sentences` scored against `source_sentence`, in order, as
/// `/score` scores two texts with an embedder (the cosine of their embeddings; a SPLADE
/// model's dot product).
pub async fn similarity(
    State(state): State<SharedState>,
    Json(req): Json<SimilarityRequest>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let SimilarityInputs {
        source_sentence,
        sentences,
    } = req.inputs;
    if sentences.is_empty() {
        return Err(ApiError::invalid(
            "sentences",
            "`sentences` must not be empty",
        ));
    }
    let p = req.parameters;
    let texts: Vec<String> = std::iter::once(source_sentence).chain(sentences).collect();
    let as_inputs = TeiInputs {
        inputs: json!(texts),
        truncate: p.truncate,
        truncation_direction: p.truncation_direction,
        prompt_name: p.prompt_name,
    };
    // The source sentence is the query: by the route a `prompt_name` names, else by the
    // model's query route, the sentences by the named route or the encoder.
    let named = as_inputs.prompt_name.as_deref();
    let (source_route, route) = match named {
        Some(name) => (ready.route(Some(name)), ready.route(Some(name))),
        None => (ready.query_route(), Route::Encoder),
    };
    let inputs = as_inputs.token_lists(ready)?;
    let norm = vector_norm(ready.pooling, None);
    let routes = (source_route, route);
    let vectors: Vec<Vec<f32>> = (pooled_routed(ready, &inputs, 1, routes, None).await?)
        .into_iter()
        .map(|v| embeddings::normalised_by(v, usize::MAX, norm))
        .collect();
    let scores: Vec<f64> = vectors[1..].iter().map(|v| dot(&vectors[0], v)).collect();
    Ok(axum::Json(scores).into_response())
}

/// One non-zero entry of a sparse vector.
#[derive(Debug, Serialize, PartialEq)]
pub struct SparseValue {
    pub index: usize,
    pub value: f32,
}

pub async fn embed_sparse(
    State(state): State<SharedState>,
    Json(req): Json<TeiInputs>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    if !ready.sparse {
        return Err(ApiError::bad_request(
            "/embed_sparse answers sparse vectors, which this model does not make: serve a \
             SPLADE checkout (a BERT, RoBERTa, DistilBERT, ModernBERT or GTE masked LM, such \
             as naver/splade-v3) or BGE-M3 (with its sparse_linear.pt)",
        ));
    }
    let inputs = req.token_lists(ready)?;
    let vectors = match ready.static_vectors(ready.route(req.prompt_name.as_deref()), &inputs) {
        Some(vectors) => vectors,
        None => run_pooling(ready, &inputs, Pooling::Sparse, 0, None).await?,
    };
    let answer: Vec<Vec<SparseValue>> = vectors.iter().map(|v| sparsified(v)).collect();
    Ok(axum::Json(answer).into_response())
}

/// `POST /embed`: each input's pooled embedding, as `/v1/embeddings` pools it.
pub async fn embed(
    State(state): State<SharedState>,
    Json(req): Json<EmbedRequest>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let dimensions = ready.embedding_dimensions(req.dimensions)?;
    let inputs = req.base.token_lists(ready)?;
    let norm = vector_norm(ready.pooling, req.normalize);
    let route = ready.route(req.base.prompt_name.as_deref());
    let answer: Vec<Vec<f32>> = (pooled(ready, &inputs, route, 0, None).await?.into_iter())
        .map(|v| embeddings::normalised_by(v, dimensions, norm))
        .collect();
    Ok(axum::Json(answer).into_response())
}

/// `POST /embed_all`: every token's vector of each input, as computed (not normalised).
pub async fn embed_all(
    State(state): State<SharedState>,
    Json(req): Json<TeiInputs>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let inputs = req.token_lists(ready)?;
    let width = ready.token_width().max(1);
    let vectors = token_vectors(ready, &inputs, 0, None).await?;
    let answer: Vec<Vec<&[f32]>> = (vectors.iter())
        .map(|rows| rows.chunks(width).collect())
        .collect();
    Ok(axum::Json(answer).into_response())
}

impl TeiInputs {
    /// The inputs as token lists, cut as `truncate` and `truncation_direction` say.
    fn token_lists(&self, ready: &Ready) -> Result<Vec<Vec<u32>>, ApiError> {
        let input: EmbeddingInput = serde_json::from_value(self.inputs.clone()).map_err(|_| {
            ApiError::invalid(
                "inputs",
                "`inputs` must be a string, a list of strings, a list of token ids or a list of \
                 token id lists",
            )
        })?;
        let texts = matches!(input, EmbeddingInput::Text(_) | EmbeddingInput::Texts(_));
        if self.prompt_name.is_some() && !texts {
            return Err(ApiError::invalid(
                "prompt_name",
                "`prompt_name` goes before text inputs; token ids are embedded as sent",
            ));
        }
        let prompt = ready.prompts.text_for(self.prompt_name.as_deref())?;
        let lists = tokenized_inputs(ready, &input, true, prompt)?;
        cut_and_checked(ready, lists, self.truncate, self.truncation_direction)
    }
}

/// Token lists cut to the context where `truncate` says (unsaid, as `--auto-truncate` says; at
/// the end `direction` names, each keeping its special tokens), then checked as every pooling
/// endpoint checks its inputs.
pub fn cut_and_checked(
    ready: &Ready,
    mut lists: Vec<Vec<u32>>,
    truncate: Option<bool>,
    direction: Option<Direction>,
) -> Result<Vec<Vec<u32>>, ApiError> {
    if truncate.unwrap_or(ready.auto_truncate) {
        // A decoder's input leaves room for a token, as `checked_inputs` reads it.
        let most = match ready.encoder {
            true => ready.limits.context,
            false => ready.limits.context.saturating_sub(1),
        };
        for ids in &mut lists {
            match (direction.unwrap_or(Direction::Right), ready.special_ends) {
                (Direction::Right, true) => cut_encoder_input(ids, most),
                (Direction::Left, true) => cut_encoder_input_head(ids, most),
                // Without special tokens to keep: the first or the last `most`.
                (Direction::Right, false) => {
                    ids.truncate(most);
                    true
                }
                (Direction::Left, false) => {
                    ids.drain(..ids.len().saturating_sub(most));
                    true
                }
            };
        }
    }
    checked_inputs(ready, lists, |_| "inputs", false)
}

/// A vector's non-zero entries, by index.
fn sparsified(vector: &[f32]) -> Vec<SparseValue> {
    (vector.iter().enumerate())
        .filter(|(_, &value)| value != 0.0)
        .map(|(index, &value)| SparseValue { index, value })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_non_zero_entries_are_answered() {
        assert_eq!(
            sparsified(&[0.0, 1.5, 0.0, 0.25]),
            [
                SparseValue {
                    index: 1,
                    value: 1.5
                },
                SparseValue {
                    index: 3,
                    value: 0.25
                }
            ]
        );
        assert!(sparsified(&[0.0; 4]).is_empty());
    }

    #[test]
    fn the_direction_is_read_in_either_case() {
        for (text, want) in [
            ("\"right\"", Direction::Right),
            ("\"Right\"", Direction::Right),
            ("\"left\"", Direction::Left),
            ("\"Left\"", Direction::Left),
        ] {
            assert_eq!(serde_json::from_str::<Direction>(text).unwrap(), want);
        }
        assert!(serde_json::from_str::<Direction>("\"middle\"").is_err());
    }
}
