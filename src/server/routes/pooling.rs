//! `POST /pooling` (vLLM's): the served model's raw pooling output for each input, by `task`:
//! `embed` the pooled vector `/v1/embeddings` answers, `classify` the head's label
//! probabilities (its logits with `use_activation: false`), `token_embed` every token's final
//! state, `token_classify` a token classifier's label probabilities at every token (logits
//! likewise), or for BGE-M3 its lexical weight of every token (vLLM's `BgeM3EmbeddingModel`);
//! by default the model's own task (a classifier classifies, a token classifier
//! labels tokens, a server pooling nothing answers each token's state, any other model
//! embeds). Answered as vLLM does: a list of `{"object": "pooling", "data": ...}` items.
use super::classify::{classifier, classifier_logits, list_answer};
use super::embeddings::{pooled, through_token_states, token_vectors};
use crate::engine::pooling::Pooling;
use crate::server::embeddings::{self, input_token_lists, EmbeddingRequest, Encoding};
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::state::{Ready, SharedState};
use crate::server::token_classification::{token_classifier, token_logits};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use candor_models::classifier::probabilities;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
pub struct PoolingRequest {
    /// What `/v1/embeddings` reads: `input`, `model`, `encoding_format` (as base64 a
    /// `token_embed` input's rows one after another), `dimensions` (`embed` only), `normalize`
    /// (`embed`, `token_embed`), `prompt_name` (`embed`, `token_embed`), `priority`,
    /// `truncate_prompt_tokens`, `add_special_tokens`.
    #[serde(flatten)]
    pub embedding: EmbeddingRequest,
    /// `embed`, `classify`, `token_embed` or `token_classify`; the model's own when absent.
    pub task: Option<String>,
    /// `classify`, `token_classify`: `false` answers the head's logits, not their softmax.
    pub use_activation: Option<bool>,
}

/// What a pooling request computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Task {
    Embed,
    Classify,
    TokenEmbed,
    TokenClassify,
}

impl Task {
    const NAMES: &'static str = "`embed`, `classify` (a model with a classification head), \
                                 `token_embed`, `token_classify` (a token classifier, or \
                                 BGE-M3's lexical weights)";

    /// The task a request names, or the model's own.
    fn of(asked: Option<&str>, ready: &Ready) -> Result<Task, ApiError> {
        match asked {
            None if ready.classifier.is_some() => Ok(Task::Classify),
            None if ready.token_classifier.is_some() => Ok(Task::TokenClassify),
            None if ready.pooling == Pooling::None => Ok(Task::TokenEmbed),
            None | Some("embed") => Ok(Task::Embed),
            Some("classify") => Ok(Task::Classify),
            Some("token_embed") => Ok(Task::TokenEmbed),
            Some("token_classify") => Ok(Task::TokenClassify),
            Some(other) => Err(ApiError::invalid(
                "task",
                format!(
                    "unsupported pooling task `{other}`: candor pools {}",
                    Task::NAMES
                ),
            )),
        }
    }
}

pub async fn pooling(
    State(state): State<SharedState>,
    Json(req): Json<PoolingRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.embedding.model.as_deref())?;
    let ready = state.ready()?;
    let task = Task::of(req.task.as_deref(), ready)?;
    let as_embedding = req.embedding;
    let encoding = as_embedding.encoding()?;
    if task != Task::Embed && as_embedding.dimensions.is_some() {
        return Err(ApiError::invalid(
            "dimensions",
            "`dimensions` applies to the `embed` task only",
        ));
    }
    // The checkout's prompts are an embedder's (as `/classify` reads texts bare).
    let inputs = match task {
        Task::Classify | Task::TokenClassify if as_embedding.prompt_name.is_some() => {
            return Err(ApiError::invalid(
                "prompt_name",
                "`prompt_name` applies to the `embed` and `token_embed` tasks",
            ))
        }
        Task::Classify | Task::TokenClassify => input_token_lists(
            ready,
            &as_embedding.input,
            as_embedding.truncate_prompt_tokens,
            as_embedding.add_special_tokens.unwrap_or(true),
            None,
        )?,
        Task::Embed | Task::TokenEmbed => as_embedding.token_lists(ready)?,
    };
    let priority = crate::server::validate::priority(&ready.limits, as_embedding.priority)?;
    let model = as_embedding.model.as_deref();
    let data: Vec<Value> = match task {
        Task::Embed => {
            let dimensions = as_embedding.dimensions(ready)?;
            let route = ready.route(as_embedding.prompt_name.as_deref());
            let vectors = pooled(ready, &inputs, route, priority, model).await?;
            let norm = as_embedding.vector_norm(ready.pooling);
            (vectors.into_iter())
                .map(|v| embeddings::normalised_by(v, dimensions, norm))
                .map(|v| embeddings::encoded(&v, encoding))
                .collect()
        }
        Task::Classify => {
            let head = classifier(ready)?;
            let logits = classifier_logits(ready, head, &inputs, priority, model).await?;
            (logits.iter())
                .map(|l| match req.use_activation {
                    Some(false) => embeddings::encoded(l, encoding),
                    _ => embeddings::encoded(&probabilities(l), encoding),
                })
                .collect()
        }
        Task::TokenClassify => match (&ready.token_classifier, &ready.token_weights) {
            // BGE-M3's lexical weight of each token (vLLM's answer: one number per token, a
            // leading BOS and a trailing EOS left out).
            (None, Some(layer)) => {
                let (layer, activation) = (layer.clone(), req.use_activation != Some(false));
                let weights =
                    through_token_states(ready, &inputs, priority, model, move |ids, s| {
                        layer.weights(ids, s, activation)
                    })
                    .await?;
                (weights.iter())
                    .map(|w| embeddings::encoded(w, encoding))
                    .collect()
            }
            _ => {
                let head = token_classifier(ready)?;
                let logits = token_logits(ready, &head, &inputs, priority, model).await?;
                (logits.iter())
                    .map(|rows| {
                        let rows = rows.iter().map(|l| match req.use_activation {
                            Some(false) => l.clone(),
                            _ => probabilities(l),
                        });
                        token_rows(rows, encoding)
                    })
                    .collect()
            }
        },
        Task::TokenEmbed => {
            let width = ready.token_width().max(1);
            let states = token_vectors(ready, &inputs, priority, model).await?;
            (states.iter())
                .map(|all| {
                    let rows = all.chunks(width).map(|row| {
                        embeddings::normalised_by(row.to_vec(), width, as_embedding.norm())
                    });
                    token_rows(rows, encoding)
                })
                .collect()
        }
    };
    let data: Vec<Value> = (data.into_iter().enumerate())
        .map(|(index, data)| json!({"index": index, "object": "pooling", "data": data}))
        .collect();
    let answer = list_answer("pool", &state.answering_model(model), data, &inputs);
    Ok(axum::Json(answer).into_response())
}

/// An input's rows, one per token: a list of lists, or as base64 their values one row after
/// another.
fn token_rows(rows: impl Iterator<Item = Vec<f32>>, encoding: Encoding) -> Value {
    match encoding {
        Encoding::Float => Value::Array(rows.map(|r| json!(r)).collect()),
        Encoding::Base64 => embeddings::encoded(&rows.flatten().collect::<Vec<_>>(), encoding),
    }
}
