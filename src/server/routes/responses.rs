//! `POST /v1/responses`.
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::responses::reply::{self, Shell};
use crate::server::responses::request::{ResponsesRequest, FIELD_NAMES};
use crate::server::routes::chat::start_chat;
use crate::server::state::{new_item_id, SharedState};
use axum::extract::State;
use axum::response::Response;

pub async fn responses(
    State(state): State<SharedState>,
    Json(req): Json<ResponsesRequest>,
) -> Result<Response, ApiError> {
    let chat = req.to_chat()?;
    let id = new_item_id("resp");
    let started = start_chat(&state, &chat, id.clone())
        .await
        .map_err(|e| e.renamed(&FIELD_NAMES))?;
    let tokenizer = state.ready()?.tokenizer.clone();
    let shell = Shell::new(id, &state.model_name, &req);
    if started.stream {
        Ok(reply::stream(shell, started, tokenizer))
    } else {
        reply::complete(shell, started, tokenizer).await
    }
}
