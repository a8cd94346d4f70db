//! `/tokenize`, `/detokenize` and `/apply-template`, in vLLM's shape and llama-server's (and
//! text-embeddings-inference's `/tokenize`, by its `inputs`: `tei_tokens`):
//! a `prompt` or chat `messages` (vLLM: `{"tokens", "count", "max_model_len"}`), or
//! llama-server's `content` (a text, or texts and token ids mixed) with `add_special` and
//! `with_pieces`; the text back as vLLM's `prompt` and llama-server's `content`; the chat
//! template's text for `messages` (llama-server's `/apply-template`). vLLM's
//! `return_token_strs` adds each token's vocabulary string.
use super::chat::{chat_prompt_text, encode_prompt, tool_plan};
use crate::server::error::ApiError;
use crate::server::json::AnyJson;
use crate::server::native_prompt::{encode, mixed, Reading};
use crate::server::openai::{DetokenizeRequest, Message, TokenizeRequest};
use crate::server::prompt_end::PromptEnd;
use crate::server::state::{Ready, SharedState};
use crate::server::tools::ToolRequest;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub async fn tokenize(
    State(state): State<SharedState>,
    AnyJson(req): AnyJson<TokenizeRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.model.as_deref())?;
    let ready = state.ready()?;
    // Special tokens written in a text are read as themselves unless `parse_special: false`.
    let parse_special = req.parse_special.unwrap_or(true);
    if let Some(inputs) = &req.inputs {
        if req.prompt.is_some() || req.messages.is_some() || req.content.is_some() {
            return Err(ApiError::bad_request(
                "give exactly one of `prompt`, `messages`, `content` or `inputs`",
            ));
        }
        let prompt_name = req.prompt_name.as_deref();
        return super::tei_tokens::tokenize(ready, inputs, req.add_special_tokens, prompt_name);
    }
    if req.prompt_name.is_some() {
        return Err(ApiError::invalid(
            "prompt_name",
            "`prompt_name` goes with text-embeddings-inference's `inputs`",
        ));
    }
    let tokens = match (&req.prompt, &req.messages, &req.content) {
        (Some(p), None, None) => {
            let reading = Reading {
                add_special: req.add_special_tokens,
                parse_special,
            };
            encode(ready, "prompt", p, reading)?
        }
        // The template wrote the special tokens it wants.
        (None, Some(m), None) => encode_prompt(ready, &chat_text(ready, &req, m)?)?,
        (None, None, Some(content)) => {
            let reading = Reading {
                add_special: req.add_special,
                parse_special,
            };
            let tokens = mixed(ready, "content", content, reading)?;
            return Ok(
                axum::Json(json!({"tokens": shown(ready, &tokens, req.with_pieces)}))
                    .into_response(),
            );
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `prompt`, `messages`, `content` or `inputs`",
            ))
        }
    };
    let mut answer = json!({
        "tokens": shown(ready, &tokens, req.with_pieces),
        "count": tokens.len(),
        "max_model_len": ready.limits.context,
    });
    if req.return_token_strs {
        let strs: Vec<Option<String>> = tokens
            .iter()
            .map(|&id| ready.tokenizer.token_to_piece(id))
            .collect();
        answer["token_strs"] = json!(strs);
    }
    Ok(axum::Json(answer).into_response())
}

/// `POST /apply-template`: the prompt text the chat template makes of `messages`.
pub async fn apply_template(
    State(state): State<SharedState>,
    AnyJson(req): AnyJson<TokenizeRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.model.as_deref())?;
    let ready = state.ready()?;
    let Some(messages) = &req.messages else {
        return Err(ApiError::invalid("messages", "`messages` is required"));
    };
    let prompt = chat_text(ready, &req, messages)?;
    Ok(axum::Json(json!({"prompt": prompt})).into_response())
}

pub async fn detokenize(
    State(state): State<SharedState>,
    AnyJson(req): AnyJson<DetokenizeRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.model.as_deref())?;
    let ready = state.ready()?;
    let mut ids = Vec::with_capacity(req.tokens.len());
    for &t in &req.tokens {
        if t < 0 || t as u64 >= ready.tokenizer.vocab_size() as u64 {
            return Err(ApiError::invalid(
                "tokens",
                format!(
                    "token id {t} is out of the vocabulary ({})",
                    ready.tokenizer.vocab_size()
                ),
            ));
        }
        ids.push(t as u32);
    }
    let text = ready
        .tokenizer
        .decode(&ids, false)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // vLLM's name and llama-server's.
    Ok(axum::Json(json!({"prompt": text, "content": text})).into_response())
}

/// The chat template's text for `messages`, with the request's tools and switches.
fn chat_text(
    ready: &Ready,
    req: &TokenizeRequest,
    messages: &[Message],
) -> Result<String, ApiError> {
    let tool_request = ToolRequest {
        tools: req.tools.as_deref(),
        tool_choice: None,
        parallel_tool_calls: None,
    };
    let tools = tool_plan(ready, &tool_request)?;
    let end = PromptEnd::of(
        req.add_generation_prompt,
        req.continue_final_message,
        messages,
    )?;
    let kwargs = req.chat_template_kwargs.as_ref();
    chat_prompt_text(ready, messages, tools.as_ref(), kwargs, end).map(|p| p.text)
}

/// The ids, or with `with_pieces` each as `{"id", "piece"}`: its text, or its bytes where they
/// are not UTF-8 on their own (part of a character).
fn shown(ready: &Ready, tokens: &[u32], with_pieces: bool) -> Value {
    if !with_pieces {
        return json!(tokens);
    }
    let table = ready.tokenizer.token_bytes();
    tokens
        .iter()
        .map(|&id| {
            let bytes = table
                .get(id as usize)
                .map_or(&[][..], |t| t.bytes.as_slice());
            let piece = match std::str::from_utf8(bytes) {
                Ok(text) => json!(text),
                Err(_) => json!(bytes),
            };
            json!({"id": id, "piece": piece})
        })
        .collect()
}
