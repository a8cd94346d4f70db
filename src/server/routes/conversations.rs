//! OpenAI's Conversations API: `POST /v1/conversations`, `GET` / `POST` (metadata) / `DELETE
//! /v1/conversations/{id}`, `GET` / `POST /v1/conversations/{id}/items`, `GET` / `DELETE
//! /v1/conversations/{id}/items/{item_id}`. A response joins one with `conversation`.
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::responses::conversations::{Conversation, ConversationError};
use crate::server::responses::request::add_item;
use crate::server::state::SharedState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

#[derive(Debug, Deserialize)]
pub struct CreateBody {
    #[serde(default)]
    pub items: Vec<Value>,
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
pub struct UpdateBody {
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct ItemsBody {
    pub items: Vec<Value>,
}

fn error(e: ConversationError) -> ApiError {
    match e {
        ConversationError::Missing(_) => ApiError::not_found(e.to_string()),
        ConversationError::TooLarge(..) => ApiError::invalid("items", e.to_string()),
    }
}

/// OpenAI's metadata: at most 16 keys of up to 64 characters, string values of up to 512.
fn metadata(m: Option<Map<String, Value>>) -> Result<Value, ApiError> {
    let m = m.unwrap_or_default();
    if m.len() > 16 {
        return Err(ApiError::invalid(
            "metadata",
            "`metadata` holds at most 16 keys",
        ));
    }
    for (k, v) in &m {
        let fits = v.as_str().is_some_and(|s| s.chars().count() <= 512);
        if k.chars().count() > 64 || !fits {
            return Err(ApiError::invalid(
                "metadata",
                format!(
                    "`metadata.{k}`: keys of at most 64 characters, string values of at most 512"
                ),
            ));
        }
    }
    Ok(Value::Object(m))
}

/// Items a conversation is to hold: each must be one a response could read.
fn check_items(items: &[Value]) -> Result<(), ApiError> {
    let mut scratch = Vec::new();
    for (i, item) in items.iter().enumerate() {
        add_item(&mut scratch, item, &format!("items[{i}]"))?;
    }
    Ok(())
}

fn list(items: &[Value], has_more: bool) -> Response {
    let id = |i: Option<&Value>| i.and_then(|i| i.get("id")).cloned();
    axum::Json(json!({
        "object": "list", "data": items, "has_more": has_more,
        "first_id": id(items.first()), "last_id": id(items.last()),
    }))
    .into_response()
}

fn get(state: &SharedState, id: &str) -> Result<Conversation, ApiError> {
    state.conversations.get(id).map_err(error)
}

pub async fn create(
    State(state): State<SharedState>,
    Json(body): Json<CreateBody>,
) -> Result<Response, ApiError> {
    check_items(&body.items)?;
    let c = state
        .conversations
        .create(metadata(body.metadata)?, &body.items)
        .map_err(error)?;
    Ok(axum::Json(c.object()).into_response())
}

pub async fn retrieve(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(get(&state, &id)?.object()).into_response())
}

pub async fn update(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Json(body): Json<UpdateBody>,
) -> Result<Response, ApiError> {
    let c = state
        .conversations
        .set_metadata(&id, metadata(Some(body.metadata))?)
        .map_err(error)?;
    Ok(axum::Json(c.object()).into_response())
}

pub async fn delete(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !state.conversations.delete(&id) {
        return Err(error(ConversationError::Missing(id)));
    }
    Ok(
        axum::Json(json!({"id": id, "object": "conversation.deleted", "deleted": true}))
            .into_response(),
    )
}

/// `GET .../items`: `order` (`desc`, newest first, by default, or `asc`), `limit` (1 to 100,
/// 20 by default), `after` (an item id: those after it in that order).
pub async fn list_items(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut items = get(&state, &id)?.items;
    match query.get("order").map(String::as_str) {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "order",
                format!("`order` must be `asc` or `desc`, not `{other}`"),
            ))
        }
    }
    let limit = match query.get("limit") {
        None => 20,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=100) => n,
            _ => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("`limit` must be in [1, 100], not `{l}`"),
                ))
            }
        },
    };
    let start = match query.get("after") {
        None => 0,
        Some(after) => {
            items
                .iter()
                .position(|i| i["id"].as_str() == Some(after.as_str()))
                .ok_or_else(|| {
                    ApiError::invalid("after", format!("no item `{after}` in conversation `{id}`"))
                })?
                + 1
        }
    };
    let end = (start + limit).min(items.len());
    Ok(list(&items[start..end], end < items.len()))
}

pub async fn add_items(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Json(body): Json<ItemsBody>,
) -> Result<Response, ApiError> {
    if body.items.is_empty() {
        return Err(ApiError::invalid("items", "`items` must not be empty"));
    }
    check_items(&body.items)?;
    let added = state
        .conversations
        .append(&id, &body.items)
        .map_err(error)?;
    Ok(list(&added, false))
}

fn missing_item(id: &str, item_id: &str) -> ApiError {
    ApiError::not_found(format!("no item `{item_id}` in conversation `{id}`"))
}

pub async fn retrieve_item(
    State(state): State<SharedState>,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let item = get(&state, &id)?
        .items
        .into_iter()
        .find(|i| i["id"].as_str() == Some(item_id.as_str()))
        .ok_or_else(|| missing_item(&id, &item_id))?;
    Ok(axum::Json(item).into_response())
}

pub async fn delete_item(
    State(state): State<SharedState>,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let c = state
        .conversations
        .remove_item(&id, &item_id)
        .map_err(error)?
        .ok_or_else(|| missing_item(&id, &item_id))?;
    Ok(axum::Json(c.object()).into_response())
}
