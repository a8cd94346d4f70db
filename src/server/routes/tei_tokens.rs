//! text-embeddings-inference's `/tokenize` (told from vLLM's and llama-server's by its
//! `inputs`) and `/decode`: each text's tokens with the bytes of the text they came from,
//! `[[{"id", "text", "special", "start", "stop"}, …], …]` (a special token's `text` its piece,
//! its `start` and `stop` null), after the `prompt_name`d prompt where one is named, as TEI
//! answers; and token id lists back to texts, `["…", …]`.
use crate::server::error::ApiError;
use crate::server::json::AnyJson;
use crate::server::state::{Ready, SharedState};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

/// TEI's `/tokenize` of `inputs` (a text or texts).
pub fn tokenize(
    ready: &Ready,
    inputs: &Value,
    add_special_tokens: bool,
    prompt_name: Option<&str>,
) -> Result<Response, ApiError> {
    let (texts, _) = text_or_texts(inputs)?;
    let prompt = ready.prompts.text_for(prompt_name)?.unwrap_or_default();
    let mut answer = Vec::with_capacity(texts.len());
    for text in texts {
        crate::server::validate::no_nul("inputs", text)?;
        // The offsets are the prompted text's, as TEI reports them.
        let input = format!("{prompt}{text}");
        let spans = (ready.tokenizer.encode_spans(&input, add_special_tokens))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let tokens: Vec<Value> = (spans.into_iter())
            .map(|t| {
                let text = match t.span {
                    Some((start, stop)) => {
                        String::from_utf8_lossy(input.as_bytes().get(start..stop).unwrap_or(&[]))
                            .into_owned()
                    }
                    None => t.piece,
                };
                let (start, stop) = t.span.unzip();
                json!({"id": t.id, "text": text, "special": t.special, "start": start, "stop": stop})
            })
            .collect();
        answer.push(tokens);
    }
    Ok(axum::Json(answer).into_response())
}

/// Hugging Face's `inputs`: a text, or a non-empty list of texts; and whether it was one text.
pub(super) fn text_or_texts(inputs: &Value) -> Result<(Vec<&str>, bool), ApiError> {
    let refused = || ApiError::invalid("inputs", "`inputs` must be a text or texts");
    match inputs {
        Value::String(text) => Ok((vec![text.as_str()], true)),
        Value::Array(list) if list.is_empty() => {
            Err(ApiError::invalid("inputs", "`inputs` cannot be empty"))
        }
        Value::Array(list) => {
            let texts = list.iter().map(Value::as_str).collect::<Option<_>>();
            Ok((texts.ok_or_else(refused)?, false))
        }
        _ => Err(refused()),
    }
}

#[derive(Debug, Deserialize)]
pub struct DecodeRequest {
    /// Token ids, or lists of them.
    pub ids: Value,
    #[serde(default = "yes")]
    pub skip_special_tokens: bool,
}

fn yes() -> bool {
    true
}

/// `POST /decode`: each id list's text.
pub async fn decode(
    State(state): State<SharedState>,
    AnyJson(req): AnyJson<DecodeRequest>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let lists: Vec<Vec<u32>> = match &req.ids {
        Value::Array(items) if items.iter().all(Value::is_array) && !items.is_empty() => {
            (items.iter()).map(ids).collect::<Result<_, _>>()?
        }
        Value::Array(items) if items.is_empty() => {
            return Err(ApiError::invalid("ids", "`ids` cannot be empty"))
        }
        list => vec![ids(list)?],
    };
    let mut texts = Vec::with_capacity(lists.len());
    for list in lists {
        let text = (ready.tokenizer.decode(&list, req.skip_special_tokens))
            .map_err(|e| ApiError::invalid("ids", e.to_string()))?;
        texts.push(text);
    }
    Ok(axum::Json(texts).into_response())
}

/// A list of token ids, each within u32 (the tokenizer refuses those past its vocabulary).
fn ids(list: &Value) -> Result<Vec<u32>, ApiError> {
    let refused = || ApiError::invalid("ids", "`ids` must be token ids or lists of token ids");
    (list.as_array().ok_or_else(refused)?.iter())
        .map(|v| (v.as_u64().and_then(|id| u32::try_from(id).ok())).ok_or_else(refused))
        .collect()
}
