//! Scoring texts against each other: vLLM's `/score` (`text_1` against `text_2`, one to many or
//! pair by pair) and the rerank API of Jina, Cohere and vLLM (`/rerank`, `/v1/rerank`,
//! `/v2/rerank`: documents ordered by their relevance to a query), which RAG front ends call.
//! A server with a one-score classification head (a cross-encoder reranker checkout or GGUF,
//! or `--classifier-from-tokens no,yes` for Qwen3-Reranker) reads each pair as one sequence,
//! the first text then the second, and scores it with the sigmoid of the head's logit, as
//! vLLM does; any other server scores the cosine similarity of the two texts' pooled
//! embeddings (a bi-encoder), as vLLM scores with an embedding model, or, pooling by SPLADE,
//! the dot product of their sparse vectors.
use super::classify::{classifier, classifier_logits};
use super::embeddings::pooled_routed;
use crate::server::embeddings::{
    checked_inputs, encoded_text, end_as_asked, normalised_by, text_tokens, vector_norm,
};
use crate::server::error::ApiError;
use crate::server::json::reread;
use crate::server::json::Json;
use crate::server::sparse_route::Route;
use crate::server::state::{unix_now, Ready, SharedState};
use crate::server::validate::no_nul;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub enum Texts {
    One(String),
    Many(Vec<String>),
}

impl Texts {
    fn list(&self) -> Vec<String> {
        match self {
            Texts::One(t) => vec![t.clone()],
            Texts::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ScoreRequest {
    pub model: Option<String>,
    pub text_1: Texts,
    pub text_2: Texts,
}

/// A document as rerank clients send it: text, or `{"text": ...}`.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a document is a string or {\"text\": ...}")]
pub enum Document {
    Text(String),
    Object { text: String },
}

impl Document {
    fn text(&self) -> &str {
        match self {
            Document::Text(t) | Document::Object { text: t } => t,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RerankRequest {
    pub model: Option<String>,
    pub query: String,
    pub documents: Vec<Document>,
    /// Keep the best this many (all by default).
    pub top_n: Option<i64>,
    /// Echo each document's text with its result (Jina's and Cohere's default: yes).
    pub return_documents: Option<bool>,
}

/// Pairs of texts to score: `first[i]` with `second[j]` for each `(i, j)` of `pairs`, the two
/// lists from the fields `params` names (`text_1`, `text_2`; `query`, `documents`). With
/// `cut`, an input past the context is cut at its end rather than refused; with `raw`, a
/// cross-encoder's score is its head's logit, not the logit's sigmoid.
pub(super) struct Pairs<'a> {
    pub first: &'a [String],
    pub second: &'a [String],
    pub pairs: Vec<(usize, usize)>,
    pub params: (&'static str, &'static str),
    pub cut: bool,
    pub raw: bool,
}

/// The score of each pair, in order, and the tokens read.
pub(super) async fn pair_scores(
    ready: &Ready,
    model: Option<&str>,
    p: &Pairs<'_>,
) -> Result<(Vec<f64>, usize), ApiError> {
    if ready.classifier.is_some() {
        return cross_encoded(ready, model, p).await;
    }
    let texts: Vec<String> = p.first.iter().chain(p.second).cloned().collect();
    let split = p.first.len();
    let params = p.params;
    let param_of = move |i: usize| if i < split { params.0 } else { params.1 };
    let (vectors, tokens) = scoring_vectors(ready, model, &texts, split, param_of, p.cut).await?;
    let scores = (p.pairs.iter())
        .map(|&(i, j)| dot(&vectors[i], &vectors[split + j]))
        .collect();
    Ok((scores, tokens))
}

/// Pairs scored by the served classifier, each read as one sequence: the first text as a
/// prompt is encoded (BOS where the model adds one), the second after it without a BOS of
/// its own, EOS last where the model asks for it. Each text is encoded once, however many
/// pairs it is in.
async fn cross_encoded(
    ready: &Ready,
    model: Option<&str>,
    p: &Pairs<'_>,
) -> Result<(Vec<f64>, usize), ApiError> {
    let head = classifier(ready)?;
    if head.labels().len() != 1 {
        return Err(ApiError::bad_request(format!(
            "the served classifier scores {} labels; scoring pairs needs a head of one score \
             (a cross-encoder reranker, or `--classifier-from-tokens no,yes`): /classify \
             answers each label's probability",
            head.labels().len()
        )));
    }
    if let Some(lists) = tokenizer_pairs(ready, p)? {
        return scored_pairs(ready, model, head, p, lists).await;
    }
    let encode_all = |param: &str, texts: &[String], special: bool| {
        (texts.iter())
            .map(|t| encoded_text(ready, param, t, special))
            .collect::<Result<Vec<_>, _>>()
    };
    let firsts = encode_all(p.params.0, p.first, true)?;
    let seconds = encode_all(p.params.1, p.second, false)?;
    let lists = (p.pairs.iter())
        .map(|&(i, j)| {
            let mut ids = [firsts[i].as_slice(), &seconds[j]].concat();
            end_as_asked(ready, &mut ids);
            ids
        })
        .collect();
    scored_pairs(ready, model, head, p, lists).await
}

/// One pair as one sequence: the tokenizer's pair template where it has one, else the first
/// text encoded as a prompt and the second after it (as `cross_encoded` joins them);
/// `params` name the texts' fields.
pub(super) fn pair_tokens(
    ready: &Ready,
    first: &str,
    second: &str,
    params: (&str, &str),
) -> Result<Vec<u32>, ApiError> {
    if let Some(ids) = template_pair(ready, first, second, params)? {
        return Ok(ids);
    }
    let mut ids = encoded_text(ready, params.0, first, true)?;
    ids.extend(encoded_text(ready, params.1, second, false)?);
    end_as_asked(ready, &mut ids);
    Ok(ids)
}

/// The pairs as the tokenizer's own post-processor joins them (an encoder's `[CLS] a [SEP] b
/// [SEP]`, `<s> a </s></s> b </s>`); None for a tokenizer that has no pair template.
fn tokenizer_pairs(ready: &Ready, p: &Pairs<'_>) -> Result<Option<Vec<Vec<u32>>>, ApiError> {
    let mut lists = Vec::with_capacity(p.pairs.len());
    for &(i, j) in &p.pairs {
        match template_pair(ready, &p.first[i], &p.second[j], p.params)? {
            Some(ids) => lists.push(ids),
            None => return Ok(None),
        }
    }
    Ok(Some(lists))
}

/// One pair as the tokenizer's pair template joins it; None for a tokenizer without one.
fn template_pair(
    ready: &Ready,
    first: &str,
    second: &str,
    params: (&str, &str),
) -> Result<Option<Vec<u32>>, ApiError> {
    no_nul(params.0, first)?;
    no_nul(params.1, second)?;
    (ready.tokenizer.encode_pair(first, second)).map_err(|e| ApiError::internal(e.to_string()))
}

/// Each pair's score: the sigmoid of the one-score head over it (its logit where `raw`), and
/// the tokens read.
async fn scored_pairs(
    ready: &Ready,
    model: Option<&str>,
    head: &candor_models::classifier::Classifier,
    p: &Pairs<'_>,
    lists: Vec<Vec<u32>>,
) -> Result<(Vec<f64>, usize), ApiError> {
    let inputs = checked_inputs(ready, lists, |_| p.params.1, p.cut)?;
    let tokens = inputs.iter().map(Vec::len).sum();
    let logits = classifier_logits(ready, head, &inputs, 0, model).await?;
    let scores = (logits.iter())
        .map(|l| match p.raw {
            true => l[0] as f64,
            false => candor_models::classifier::sigmoid(l[0]) as f64,
        })
        .collect();
    Ok((scores, tokens))
}

/// The vectors of `texts` whose dot products score them, and the tokens read: unit embeddings
/// (their cosine), or SPLADE vectors as pooled (their dot product, as sentence-transformers'
/// `SparseEncoder` scores); the first `queries` texts are queries, by the model's query route
/// (`Ready::query_route`); `param_of(i)` names the field text `i` came from; `cut` as
/// `Pairs::cut`.
async fn scoring_vectors(
    ready: &Ready,
    model: Option<&str>,
    texts: &[String],
    queries: usize,
    param_of: impl Fn(usize) -> &'static str,
    cut: bool,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    let lists = texts
        .iter()
        .map(|text| text_tokens(ready, text))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = checked_inputs(ready, lists, param_of, cut)?;
    let tokens = inputs.iter().map(Vec::len).sum();
    let routes = (ready.query_route(), Route::Encoder);
    let norm = vector_norm(ready.pooling, None);
    let vectors = (pooled_routed(ready, &inputs, queries, routes, model)
        .await?
        .into_iter())
    .map(|v| normalised_by(v, usize::MAX, norm))
    .collect();
    Ok((vectors, tokens))
}

/// The dot product: the cosine of unit vectors.
pub(super) fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// `POST /score` (vLLM's): `text_1` against each of `text_2`, or pair by pair when both are
/// lists of one length.
pub async fn score(
    State(state): State<SharedState>,
    Json(req): Json<ScoreRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.model.as_deref())?;
    let ready = state.ready()?;
    let (first, second) = (req.text_1.list(), req.text_2.list());
    if first.is_empty() || second.is_empty() {
        return Err(ApiError::invalid(
            "text_2",
            "`text_1` and `text_2` must not be empty",
        ));
    }
    let pairs: Vec<(usize, usize)> = match (first.len(), second.len()) {
        (1, n) => (0..n).map(|j| (0, j)).collect(),
        (m, n) if m == n => (0..n).map(|j| (j, j)).collect(),
        (m, n) => {
            return Err(ApiError::invalid(
                "text_1",
                format!(
                    "`text_1` has {m} texts and `text_2` {n}: give one, or as many as `text_2`"
                ),
            ))
        }
    };
    let texts = Pairs {
        first: &first,
        second: &second,
        pairs,
        params: ("text_1", "text_2"),
        cut: false,
        raw: false,
    };
    let (scores, tokens) = pair_scores(ready, req.model.as_deref(), &texts).await?;
    let data: Vec<Value> = (scores.iter().enumerate())
        .map(|(index, score)| json!({"index": index, "object": "score", "score": score}))
        .collect();
    Ok(axum::Json(json!({
        "id": crate::server::request_id::answer_id("score"), "object": "list", "created": unix_now(), "model": state.answering_model(req.model.as_deref()),
        "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response())
}

/// `POST /rerank`, `/v1/rerank`, `/v2/rerank`: the documents by relevance to the query, best
/// first.
pub async fn rerank(
    State(state): State<SharedState>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    // text-embeddings-inference's clients send `texts` and read its own answer.
    if body.get("texts").is_some() && body.get("documents").is_none() {
        return super::tei::rerank(&state, reread(&body)?).await;
    }
    let req: RerankRequest = reread(&body)?;
    state.check_model(req.model.as_deref())?;
    let ready = state.ready()?;
    if req.documents.is_empty() {
        return Err(ApiError::invalid(
            "documents",
            "`documents` must not be empty",
        ));
    }
    if req.query.is_empty() {
        return Err(ApiError::invalid("query", "`query` must not be empty"));
    }
    let top_n = match req.top_n {
        None => req.documents.len(),
        Some(n) if n >= 1 => (n as usize).min(req.documents.len()),
        Some(n) => {
            return Err(ApiError::invalid(
                "top_n",
                format!("`top_n` must be at least 1, got {n}"),
            ))
        }
    };
    let documents: Vec<String> = req.documents.iter().map(|d| d.text().to_string()).collect();
    let texts = Pairs {
        first: std::slice::from_ref(&req.query),
        second: &documents,
        pairs: (0..documents.len()).map(|d| (0, d)).collect(),
        params: ("query", "documents"),
        cut: false,
        raw: false,
    };
    let (scores, tokens) = pair_scores(ready, req.model.as_deref(), &texts).await?;
    let mut scored: Vec<(usize, f64)> = scores.into_iter().enumerate().collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let echo = req.return_documents != Some(false);
    let results: Vec<Value> = scored
        .into_iter()
        .take(top_n)
        .map(|(index, score)| {
            let mut r = json!({"index": index, "relevance_score": score});
            if echo {
                r["document"] = json!({"text": req.documents[index].text()});
            }
            r
        })
        .collect();
    Ok(axum::Json(json!({
        "id": crate::server::request_id::answer_id("rerank"), "model": state.answering_model(req.model.as_deref()),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "results": results,
    }))
    .into_response())
}
