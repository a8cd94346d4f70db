//! `POST /v1/responses`, and the stored responses: `GET` / `DELETE /v1/responses/{id}` (a
//! streamed background response streamed again), `GET /v1/responses/{id}/input_items`,
//! `POST /v1/responses/{id}/cancel`.
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::responses::reply::{self, Joins, Keep, Shell};
use crate::server::responses::request::{ResponsesRequest, FIELD_NAMES};
use crate::server::responses::store::{ChainError, Stored};
use crate::server::routes::chat::{chat_prompt_tokens, start_chat};
use crate::server::state::{new_item_id, SharedState};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

pub async fn responses(
    State(state): State<SharedState>,
    Json(req): Json<ResponsesRequest>,
) -> Result<Response, ApiError> {
    let conversation = req.conversation_id()?;
    let history = history(&state, &req, conversation.as_deref())?;
    let chat = req.to_chat(&history)?;
    let id = new_item_id("resp");
    let started = start_chat(&state, &chat, id.clone())
        .await
        .map_err(|e| e.renamed(&FIELD_NAMES))?;
    let tokenizer = state.ready()?.tokenizer.clone();
    let input = Arc::new(req.input_items());
    let keep = (req.store != Some(false) && state.responses.enabled()).then(|| Keep {
        store: state.responses.clone(),
        input: input.clone(),
        previous: req.previous_response_id.clone(),
        events: None,
    });
    let joins = conversation.map(|id| Joins {
        store: state.conversations.clone(),
        id,
        input,
    });
    if req.background == Some(true) && keep.is_none() {
        return Err(ApiError::invalid(
            "background",
            "a background response must be kept: send `store: true` to a server with a responses store (`--responses-store-mb`)",
        ));
    }
    let model = state.answering_model(req.common.model.as_deref());
    let defaults = &crate::server::generation_defaults::applied(&state.ready()?.limits.sampling);
    let shell = Shell::new(id, &model, &req, defaults, keep, joins);
    if req.background == Some(true) {
        Ok(reply::background(shell, started, tokenizer))
    } else if started.stream {
        Ok(reply::stream(shell, started, tokenizer))
    } else {
        reply::complete(shell, started, tokenizer).await
    }
}

/// The items a request continues: its previous response's chain, or its conversation's.
fn history(
    state: &SharedState,
    req: &ResponsesRequest,
    conversation: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    Ok(match (&req.previous_response_id, conversation) {
        (Some(previous), _) => state.responses.conversation(previous).map_err(|e| {
            let error = ApiError::invalid("previous_response_id", e.to_string());
            match e {
                ChainError::Missing(_) => error.with_code("not_found"),
                ChainError::TooLong(..) => error,
            }
        })?,
        (None, Some(id)) => {
            state
                .conversations
                .get(id)
                .map_err(|e| {
                    ApiError::invalid("conversation", e.to_string()).with_code("not_found")
                })?
                .items
        }
        (None, None) => Vec::new(),
    })
}

/// `POST /v1/responses/input_tokens` (OpenAI's, llama-server's): how many tokens the prompt of
/// a Responses request would take, its history included.
pub async fn input_tokens(
    State(state): State<SharedState>,
    Json(req): Json<ResponsesRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.common.model.as_deref())?;
    let conversation = req.conversation_id()?;
    let history = history(&state, &req, conversation.as_deref())?;
    let chat = req.to_chat(&history)?;
    let tokens = chat_prompt_tokens(state.ready()?, &chat)?;
    Ok(
        axum::Json(json!({"object": "response.input_tokens", "input_tokens": tokens.len()}))
            .into_response(),
    )
}

fn missing(id: &str) -> ApiError {
    ApiError::not_found(ChainError::Missing(id.to_string()).to_string())
}

fn stored(state: &SharedState, id: &str) -> Result<Stored, ApiError> {
    state.responses.get(id).ok_or_else(|| missing(id))
}

/// `POST /v1/responses/{id}/cancel`: stop a running background response.
pub async fn cancel(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.responses.cancel(&id) {
        Some(stored) => Ok(axum::Json(stored.response.as_ref()).into_response()),
        None => {
            stored(&state, &id)?;
            Err(ApiError::invalid(
                "response_id",
                format!("response `{id}` is not running in the background"),
            ))
        }
    }
}

/// `GET /v1/responses/{id}`: the response as it is now, or with `stream=true` the events of a
/// streamed background response after `starting_after` (all of them without it), following it
/// while it runs.
pub async fn retrieve(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let stored = stored(&state, &id)?;
    let stream = match query.get("stream").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "stream",
                format!("`stream` must be true or false, not `{other}`"),
            ))
        }
    };
    if !stream {
        return Ok(axum::Json(stored.response.as_ref()).into_response());
    }
    let from = match query.get("starting_after") {
        None => 0,
        Some(n) => n
            .parse::<usize>()
            .map(|n| n.saturating_add(1))
            .map_err(|_| {
                ApiError::invalid(
                    "starting_after",
                    format!("`starting_after` must be an event's sequence number, not `{n}`"),
                )
            })?,
    };
    let Some(log) = stored.events else {
        return Err(ApiError::invalid(
            "stream",
            format!("response `{id}` was not created with `background: true` and `stream: true`; only such a response can be streamed again"),
        ));
    };
    Ok(reply::replay(log, from))
}

pub async fn delete(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.responses.remove(&id) {
        return Err(missing(&id));
    }
    Ok(axum::Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
}

/// The input items of a stored response, as sent (text input as one user message).
pub async fn input_items(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let input = stored(&state, &id)?.input;
    let id_of = |item: Option<&serde_json::Value>| item.and_then(|i| i.get("id")).cloned();
    Ok(axum::Json(json!({
        "object": "list", "data": input.as_ref(), "has_more": false,
        "first_id": id_of(input.first()), "last_id": id_of(input.last()),
    }))
    .into_response())
}
