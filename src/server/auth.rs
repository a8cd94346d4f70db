//! API keys, compared in constant time: `Authorization: Bearer KEY`, or `x-api-key: KEY` as
//! Anthropic's clients send it. /, /health (and llama-server's /v1/health) and /metrics stay
//! open.
use super::error::{AnthropicError, ApiError, OllamaError};
use super::state::SharedState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

pub async fn require_key(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let Some(key) = state.api_key.as_deref() else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if matches!(path, "/" | "/health" | "/v1/health" | "/metrics") {
        return next.run(req).await;
    }
    let headers = req.headers();
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
        next.run(req).await
    } else if path.starts_with("/v1/messages") {
        AnthropicError(ApiError::unauthorized()).into_response()
    } else if path.starts_with("/api/") {
        OllamaError(ApiError::unauthorized()).into_response()
    } else {
        ApiError::unauthorized().into_response()
    }
}
