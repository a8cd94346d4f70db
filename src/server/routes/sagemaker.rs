//! Amazon SageMaker's contract, as vLLM serves it: `GET`/`POST /ping` answers as `/health`, and
//! `POST /invocations` runs whichever request its body is (a chat by its `messages`, a
//! completion by its `prompt`, embeddings by `input`, a rerank by `query` and `documents`, a
//! score by `text_1` and `text_2`), through that endpoint's own handler; a body of `inputs`,
//! as Hugging Face's SageMaker containers take it, runs as text-generation-inference's `POST
//! /` (a generation, or for a model that does not generate text-embeddings-inference's task).
//! Also vLLM's `GET /version`.
use crate::server::error::ApiError;
use crate::server::json::{parse, Json};
use crate::server::routes::{chat, completions, embeddings, misc, similarity, tgi};
use crate::server::state::SharedState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub async fn ping(state: State<SharedState>) -> Response {
    misc::health(state).await
}

/// `{"version"}`: the build, as vLLM's `/version` tells its own.
pub async fn version() -> axum::Json<Value> {
    axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": crate::bench::report::git_commit(),
    }))
}

/// Which endpoint a body is for, by the fields only that endpoint's requests have.
fn endpoint_of(body: &Value) -> Option<&'static str> {
    let has = |key: &str| body.get(key).is_some();
    if has("messages") {
        Some("chat")
    } else if has("prompt") {
        Some("completions")
    } else if has("input") {
        Some("embeddings")
    } else if has("query") && (has("documents") || has("texts")) {
        Some("rerank")
    } else if has("text_1") && has("text_2") {
        Some("score")
    } else if has("inputs") {
        Some("huggingface")
    } else {
        None
    }
}

pub async fn invocations(
    State(state): State<SharedState>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let endpoint = endpoint_of(&body).ok_or_else(|| {
        ApiError::bad_request(
            "`/invocations` runs a chat (`messages`), a completion (`prompt`), embeddings \
             (`input`), a rerank (`query`, `documents`), a score (`text_1`, `text_2`) or \
             Hugging Face's `inputs`: the body has none of those fields",
        )
    })?;
    // Read as the endpoint reads its own body, so a field's error names it the same way.
    let bytes = serde_json::to_vec(&body).map_err(|e| ApiError::internal(e.to_string()))?;
    let state = State(state);
    match endpoint {
        "chat" => chat::chat_completions(state, Json(parse(&bytes)?)).await,
        "completions" => completions::completions(state, Json(parse(&bytes)?)).await,
        "embeddings" => embeddings::embeddings(state, Json(parse(&bytes)?)).await,
        "rerank" => similarity::rerank(state, Json(parse(&bytes)?)).await,
        "huggingface" => tgi::compat(state, Json(body)).await,
        _ => similarity::score(state, Json(parse(&bytes)?)).await,
    }
    .map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_body_is_read_by_its_fields() {
        assert_eq!(
            endpoint_of(&json!({"messages": [], "prompt": "x"})),
            Some("chat")
        );
        assert_eq!(endpoint_of(&json!({"prompt": "x"})), Some("completions"));
        assert_eq!(endpoint_of(&json!({"input": "x"})), Some("embeddings"));
        assert_eq!(
            endpoint_of(&json!({"query": "q", "documents": []})),
            Some("rerank")
        );
        assert_eq!(
            endpoint_of(&json!({"text_1": "a", "text_2": "b"})),
            Some("score")
        );
        // text-embeddings-inference's rerank, and Hugging Face's containers' `inputs`.
        assert_eq!(
            endpoint_of(&json!({"query": "q", "texts": []})),
            Some("rerank")
        );
        assert_eq!(
            endpoint_of(&json!({"inputs": "x", "parameters": {}})),
            Some("huggingface")
        );
        assert_eq!(endpoint_of(&json!({"query": "q"})), None);
        assert_eq!(endpoint_of(&json!([1])), None);
    }
}
