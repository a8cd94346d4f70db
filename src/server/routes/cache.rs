//! `POST /reset_prefix_cache` (vLLM's): empty the prefix cache, so the next requests compute
//! their prompts from scratch (a benchmark measuring cold prompts again, without a restart).
//! Requests running keep their blocks; the answer tells how many blocks were cached.
use crate::server::error::ApiError;
use crate::server::state::SharedState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn reset_prefix_cache(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let blocks = ready
        .engine
        .reset_prefix_cache()?
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?;
    tracing::info!(blocks, "prefix cache reset");
    Ok(axum::Json(json!({"cached_blocks": blocks})).into_response())
}
