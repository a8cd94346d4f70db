//! text-embeddings-inference's `POST /predict`: the served classifier's scores of each input,
//! every label with its score, best first: `[{"label", "score"}, …]` for one input, a list of
//! those for a batch. Its `inputs` is a text, a pair `[text, text]` (read as one sequence by
//! the tokenizer's pair template, as a cross-encoder reads a query and a passage), or a batch
//! of those as lists of one or two texts; scores are the softmax of the head's logits (the
//! sigmoid of a single one), or the logits with `raw_scores`; `truncate` and
//! `truncation_direction` as TEI's other endpoints read them.
use super::classify::{classifier, classifier_logits};
use super::similarity::pair_tokens;
use super::tei::{cut_and_checked, Direction};
use crate::server::embeddings::text_tokens;
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::state::{Ready, SharedState};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use candor_models::classifier::probabilities;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
pub struct PredictRequest {
    pub inputs: Value,
    pub truncate: Option<bool>,
    pub truncation_direction: Option<Direction>,
    /// The head's logits rather than their softmax (sigmoid).
    pub raw_scores: Option<bool>,
}

/// One sequence to classify: a text, or a pair read as one.
#[derive(Debug, PartialEq)]
enum Sequence {
    Single(String),
    Pair(String, String),
}

const SHAPES: &str = "`inputs` must be a text, a pair [text, text], or a batch of texts and \
                      pairs [[text], [text, text], …]";

/// TEI's reading of `inputs`: the sequences, and whether they came as a batch.
fn sequences(inputs: &Value) -> Result<(Vec<Sequence>, bool), ApiError> {
    let bad = || ApiError::invalid("inputs", SHAPES);
    let sequence = |items: &[Value]| -> Result<Sequence, ApiError> {
        match items {
            [Value::String(a)] => Ok(Sequence::Single(a.clone())),
            [Value::String(a), Value::String(b)] => Ok(Sequence::Pair(a.clone(), b.clone())),
            _ => Err(bad()),
        }
    };
    match inputs {
        Value::String(text) => Ok((vec![Sequence::Single(text.clone())], false)),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Ok((vec![sequence(items)?], false))
        }
        Value::Array(items) if !items.is_empty() => {
            let batch = (items.iter())
                .map(|item| item.as_array().ok_or_else(bad).and_then(|s| sequence(s)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((batch, true))
        }
        _ => Err(bad()),
    }
}

pub async fn predict(
    State(state): State<SharedState>,
    Json(req): Json<PredictRequest>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let head = classifier(ready)?;
    let (sequences, batch) = sequences(&req.inputs)?;
    let lists = (sequences.iter())
        .map(|s| tokens_of(ready, s))
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = cut_and_checked(ready, lists, req.truncate, req.truncation_direction)?;
    let logits = classifier_logits(ready, head, &inputs, 0, None).await?;
    let labels = head.labels();
    let mut answers: Vec<Vec<Value>> = (logits.iter())
        .map(|l| {
            let scores = match req.raw_scores {
                Some(true) => l.clone(),
                _ => probabilities(l),
            };
            let mut ranked: Vec<(usize, f32)> = scores.into_iter().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            (ranked.into_iter())
                .map(|(i, score)| json!({"label": labels.get(i), "score": score}))
                .collect()
        })
        .collect();
    Ok(match batch {
        true => axum::Json(answers).into_response(),
        false => axum::Json(answers.remove(0)).into_response(),
    })
}

fn tokens_of(ready: &Ready, sequence: &Sequence) -> Result<Vec<u32>, ApiError> {
    match sequence {
        Sequence::Single(text) if text.is_empty() => {
            Err(ApiError::invalid("inputs", "an input text is empty"))
        }
        Sequence::Single(text) => text_tokens(ready, text),
        Sequence::Pair(first, second) => pair_tokens(ready, first, second, ("inputs", "inputs")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_read_as_text_embeddings_inference_reads_them() {
        let one = |t: &str| Sequence::Single(t.into());
        let pair = |a: &str, b: &str| Sequence::Pair(a.into(), b.into());
        assert_eq!(sequences(&json!("a")).unwrap(), (vec![one("a")], false));
        assert_eq!(sequences(&json!(["a"])).unwrap(), (vec![one("a")], false));
        assert_eq!(
            sequences(&json!(["a", "b"])).unwrap(),
            (vec![pair("a", "b")], false)
        );
        assert_eq!(
            sequences(&json!([["a"], ["b", "c"]])).unwrap(),
            (vec![one("a"), pair("b", "c")], true)
        );
        for bad in [
            json!(["a", "b", "c"]),
            json!([]),
            json!([["a", "b", "c"]]),
            json!([["a"], "b"]),
            json!(5),
            json!([[1]]),
        ] {
            assert!(sequences(&bad).is_err(), "{bad}");
        }
    }
}
