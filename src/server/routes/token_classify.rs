//! The token-classification pipeline's request and answer (`POST /` of a token classifier, as
//! Hugging Face's inference containers take it): `inputs` a text or texts, `parameters`
//! `aggregation_strategy` (`none`, `simple`, `first`, `average`, `max`) and `ignore_labels` (`["O"]` unless given);
//! answered per text as `server::token_classification` reads its tokens (a text alone: its
//! list of entities; texts: a list of those).
use crate::server::embeddings::checked_inputs;
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::state::SharedState;
use crate::server::token_classification::{entities, token_classifier, token_logits, Aggregation};
use crate::server::validate::no_nul;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct PipelineRequest {
    pub inputs: Value,
    #[serde(default)]
    pub parameters: PipelineParameters,
}

#[derive(Debug, Default, Deserialize)]
pub struct PipelineParameters {
    pub aggregation_strategy: Option<String>,
    pub ignore_labels: Option<Vec<String>>,
}

pub async fn token_classification(
    State(state): State<SharedState>,
    Json(req): Json<PipelineRequest>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let head = token_classifier(ready)?;
    let aggregation = Aggregation::parse(req.parameters.aggregation_strategy.as_deref())?;
    let ignore = (req.parameters.ignore_labels).unwrap_or_else(|| vec!["O".to_string()]);
    let (texts, alone) = super::tei_tokens::text_or_texts(&req.inputs)?;
    let mut spans = Vec::with_capacity(texts.len());
    for text in &texts {
        no_nul("inputs", text)?;
        let read = (ready.tokenizer.encode_spans(text, true))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        spans.push(read);
    }
    let lists = spans
        .iter()
        .map(|s| s.iter().map(|t| t.id).collect())
        .collect();
    let inputs = checked_inputs(ready, lists, |_| "inputs", false)?;
    let logits = token_logits(ready, &head, &inputs, 0, None).await?;
    let mut answers = Vec::with_capacity(texts.len());
    for ((text, spans), logits) in texts.iter().zip(&spans).zip(&logits) {
        let found = entities(ready, &head, text, spans, logits, aggregation, &ignore)?;
        answers.push(Value::Array(found));
    }
    let answer = match (alone, answers.pop()) {
        (true, Some(one)) => one,
        (_, last) => Value::Array(answers.into_iter().chain(last).collect()),
    };
    Ok(axum::Json(answer).into_response())
}
