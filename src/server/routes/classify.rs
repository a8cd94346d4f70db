//! `POST /classify`, `/v1/classify` (vLLM's): each input's labels scored by the served
//! sequence classifier (a `*ForSequenceClassification` checkout, a reranker GGUF, or
//! `--classifier-from-tokens`) from its last token's final state, answered with every label's
//! probability and the likeliest label. `/score` and `/rerank` run the same head over pairs
//! (`similarity`).
use super::embeddings::run_pooling;
use crate::engine::pooling::Pooling;
use crate::server::embeddings::{input_token_lists, EmbeddingInput};
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::state::{unix_now, Ready, SharedState};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use candor_models::classifier::{probabilities, Classifier, HeadInput};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
pub struct ClassifyRequest {
    pub model: Option<String>,
    pub input: EmbeddingInput,
    /// vLLM's scheduling priority: lower goes first.
    pub priority: Option<i64>,
    /// Classify only each input's last this many tokens (-1: as many as the context holds).
    pub truncate_prompt_tokens: Option<i64>,
    /// vLLM's: `false` encodes a text without the tokenizer's special tokens.
    pub add_special_tokens: Option<bool>,
    /// OpenAI's end-user tag: accepted, not used.
    #[allow(dead_code)]
    pub user: Option<String>,
}

/// The served classifier, or a 400 that says how to serve one.
pub fn classifier(ready: &Ready) -> Result<&Classifier, ApiError> {
    ready.classifier.as_deref().ok_or_else(|| {
        ApiError::bad_request(
            "the served model has no classification head: serve a sequence classifier (a \
             `*ForSequenceClassification` checkout or a reranker GGUF), or make one of the \
             language-model head's rows with `--classifier-from-tokens` (`no,yes` for \
             Qwen3-Reranker)",
        )
    })
}

/// The head's logits for each input (token lists already checked), in order.
pub async fn classifier_logits(
    ready: &Ready,
    head: &Classifier,
    inputs: &[Vec<u32>],
    priority: i64,
    model: Option<&str>,
) -> Result<Vec<Vec<f32>>, ApiError> {
    // A decoder's head reads the last token's state, the only one that saw the whole text;
    // an encoder's reads `[CLS]` (ModernBERT's may read the mean).
    let pooling = match head.reads() {
        HeadInput::First => Pooling::Cls,
        HeadInput::Last => Pooling::Last,
        HeadInput::Mean => Pooling::Mean,
        // A token classifier is not a sequence classifier (`Ready::token_classifier`): its
        // states are every token's.
        HeadInput::EachToken => Pooling::None,
    };
    let states = run_pooling(ready, inputs, pooling, priority, model).await?;
    states
        .iter()
        .map(|state| {
            head.logits(state)
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .collect()
}

pub async fn classify(
    State(state): State<SharedState>,
    Json(req): Json<ClassifyRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.model.as_deref())?;
    let ready = state.ready()?;
    let head = classifier(ready)?;
    let special = req.add_special_tokens.unwrap_or(true);
    let truncate = req.truncate_prompt_tokens;
    let inputs = input_token_lists(ready, &req.input, truncate, special, None)?;
    let priority = crate::server::validate::priority(&ready.limits, req.priority)?;
    let model = req.model.as_deref();
    let logits = classifier_logits(ready, head, &inputs, priority, model).await?;
    let labels = head.labels();
    let data: Vec<Value> = (logits.iter().enumerate())
        .map(|(index, logits)| {
            let probs = probabilities(logits);
            json!({
                "index": index,
                "label": likeliest(labels, logits),
                "probs": probs,
                "num_classes": probs.len(),
            })
        })
        .collect();
    let answer = list_answer("classify", &state.answering_model(model), data, &inputs);
    Ok(axum::Json(answer).into_response())
}

/// vLLM's answer of a pooling endpoint (`/classify`, `/pooling`): `data` in input order, the
/// tokens `inputs` read, an id with `prefix`.
pub fn list_answer(prefix: &str, model: &str, data: Vec<Value>, inputs: &[Vec<u32>]) -> Value {
    let tokens: usize = inputs.iter().map(Vec::len).sum();
    json!({
        "id": crate::server::request_id::answer_id(prefix),
        "object": "list",
        "created": unix_now(),
        "model": model,
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
    })
}

/// The label of the highest logit (a single-score head's one label, as vLLM answers it: its
/// probability says how much).
fn likeliest<'a>(labels: &'a [String], logits: &[f32]) -> Option<&'a str> {
    let best = (logits.iter().enumerate())
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)?;
    labels.get(best).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::likeliest;

    #[test]
    fn likeliest_label_is_the_highest_logit() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(likeliest(&labels, &[0.1, 2.0, -1.0]), Some("b"));
        assert_eq!(likeliest(&labels, &[3.0, 2.0, -1.0]), Some("a"));
        let yes = vec!["yes".to_string()];
        assert_eq!(likeliest(&yes, &[0.5]), Some("yes"));
        assert_eq!(likeliest(&yes, &[-0.5]), Some("yes"));
        assert_eq!(likeliest(&yes, &[]), None);
    }
}
