//! `/v1/models` (and one by id), `/props`, `/health`, `/metrics`, and the JSON 404/405.
use crate::server::error::{ApiError, OllamaError};
use crate::server::state::{Ready, SharedState};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The model `id` names (the base model or one of its LoRA adapters) as `/v1/models` lists it;
/// an adapter names its `parent` and the file it came from (`root`), as vLLM's listing does.
fn model_object(state: &SharedState, id: &str) -> serde_json::Value {
    let max_len = state.ready.get().map(|r| r.limits.context);
    let mut object = json!({"id": id, "object": "model", "created": state.created, "owned_by": "candor", "max_model_len": max_len});
    if let Some(adapter) = state.adapters.get(id) {
        object["parent"] = json!(state.model_name);
        object["root"] = json!(adapter.path.display().to_string());
    }
    object
}

pub async fn models(State(state): State<SharedState>) -> Response {
    let data: Vec<serde_json::Value> = state
        .model_names()
        .iter()
        .map(|id| model_object(&state, id))
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /props` (llama-server's): what its clients read to size their requests: the context,
/// the parallel sequences, the sampling a request gets for the fields it leaves out, the chat
/// templates (`chat_template_tool_use` where the model keeps one for tools), the build.
pub async fn props(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    let mut props = json!({
        "default_generation_settings": {
            "n_ctx": ready.limits.context,
            "params": default_params(ready),
        },
        "total_slots": ready.max_num_seqs,
        "model_alias": state.model_name,
        "chat_template": ready.template.as_ref().map(|t| t.source()),
        "modalities": {"vision": false, "audio": false},
        "build_info": format!("candor {}", crate::bench::report::git_commit()),
    });
    // As llama-server: only where the model keeps a template for requests with tools.
    if let Some(t) = &ready.tool_template {
        props["chat_template_tool_use"] = t.source().into();
    }
    Ok(axum::Json(props).into_response())
}

/// The sampling a request gets for the fields it leaves out, under llama.cpp's names.
pub fn default_params(ready: &Ready) -> serde_json::Value {
    let d = crate::server::generation_defaults::applied(&ready.limits.sampling);
    json!({
        "n_predict": ready.limits.default_max_tokens,
        "temperature": d.temperature,
        "top_k": d.top_k,
        "top_p": d.top_p,
        "min_p": d.min_p,
        "min_keep": 0,
        "repeat_penalty": d.repetition_penalty,
        "xtc_probability": d.xtc_probability,
        "xtc_threshold": d.xtc_threshold,
        "repeat_last_n": d.repeat_last_n,
        "mirostat": d.mirostat,
        "mirostat_tau": d.mirostat_tau,
        "mirostat_eta": d.mirostat_eta,
        "dynatemp_range": 0.0,
        "dynatemp_exponent": 1.0,
        "samplers": crate::server::sampler_chain::Chain::llama_cpp().names(),
    })
}

/// `GET /v1/models/{id}` (`client.models.retrieve`); the id may hold slashes (`org/name`).
pub async fn model(
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.check_model(Some(&id))?;
    Ok(axum::Json(model_object(&state, &id)).into_response())
}

pub async fn health(State(state): State<SharedState>) -> Response {
    match state.ready() {
        Ok(_) => (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn metrics(State(state): State<SharedState>) -> Response {
    let body = match state.ready.get() {
        Some(r) => {
            let mut text = r.stats.render();
            if state.runtime_lora || !state.adapters.served().is_empty() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                text += &state.adapters.requests_info(&r.stats.lora_in_use(), now);
            }
            text
        }
        None => String::new(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// `GET /`: a line saying the server runs (what Ollama's clients and people probe first).
pub async fn root() -> &'static str {
    "candor is running"
}

pub async fn not_found(uri: Uri) -> Response {
    let path = uri.path();
    if !path.starts_with("/api/") {
        return ApiError::not_found(format!("no route for {path}")).into_response();
    }
    // Ollama's clients read its error shape; its model management has no counterpart here.
    let managing = [
        "/api/pull",
        "/api/push",
        "/api/create",
        "/api/copy",
        "/api/delete",
        "/api/blobs",
    ]
    .iter()
    .any(|p| path.starts_with(p));
    let message = match managing {
        true => format!(
            "{path}: candor serves the one model it was started with (`candor serve --model`); Ollama's model management is not offered"
        ),
        false => format!("no route for {path}"),
    };
    OllamaError(ApiError::not_found(message)).into_response()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method not allowed for this route",
    )
    .with_code("method_not_allowed")
}
