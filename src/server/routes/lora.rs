//! vLLM's runtime LoRA endpoints: `POST /v1/load_lora_adapter` (`lora_name`, `lora_path`) and
//! `POST /v1/unload_lora_adapter` (`lora_name`), answered as vLLM answers them (plain text on
//! success). Off unless the server was started with `--allow-runtime-lora`: a load reads any
//! path the server can.
use crate::server::adapters::{LoadRefused, ServedAdapter};
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::state::SharedState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
pub struct LoadLora {
    pub lora_name: String,
    pub lora_path: String,
}

#[derive(Debug, Deserialize)]
pub struct UnloadLora {
    pub lora_name: String,
}

fn allowed(state: &SharedState) -> Result<(), ApiError> {
    match state.runtime_lora {
        true => Ok(()),
        false => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "loading and unloading LoRA adapters while serving is off: start the server with \
             --allow-runtime-lora (or serve adapters with --lora NAME=PATH)",
        )),
    }
}

/// Serve the adapter at `lora_path` as the model `lora_name`, beside those already served.
pub async fn load(
    State(state): State<SharedState>,
    Json(req): Json<LoadLora>,
) -> Result<Response, ApiError> {
    allowed(&state)?;
    let name = req.lora_name.trim().to_string();
    if name.is_empty() || state.names_base_model(&name) {
        return Err(ApiError::invalid(
            "lora_name",
            "`lora_name` must be a name of its own (not empty, not one of the base model's)",
        ));
    }
    let served = ServedAdapter {
        name: name.clone(),
        path: PathBuf::from(&req.lora_path),
    };
    if !served.path.exists() {
        return Err(ApiError::invalid(
            "lora_path",
            format!("{} does not exist", served.path.display()),
        ));
    }
    state.ready()?;
    state
        .adapters
        .begin_load(&name)
        .map_err(|refused| match refused {
            LoadRefused::Loaded(_) => ApiError::invalid("lora_name", refused.to_string()),
            LoadRefused::Full(_) => ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                refused.to_string(),
            ),
        })?;
    // In a task of its own: a client that goes away mid-load neither leaves the name claimed
    // nor an adapter loaded that no name reaches.
    let task = tokio::spawn(async move {
        let outcome = read_and_attach(&state, &served.path).await;
        state
            .adapters
            .end_load(served, outcome.as_ref().ok().copied());
        outcome
    });
    let slot = task
        .await
        .map_err(|e| ApiError::internal(format!("the load stopped: {e}")))??;
    tracing::info!(adapter = %name, slot, path = %req.lora_path, "LoRA adapter loaded");
    Ok((
        StatusCode::OK,
        format!("Success: LoRA adapter '{name}' added successfully."),
    )
        .into_response())
}

/// Read the adapter at `path` and have the engine serve it: its slot.
async fn read_and_attach(state: &SharedState, path: &std::path::Path) -> Result<u32, ApiError> {
    let ready = state.ready()?;
    let path = path.to_path_buf();
    let adapter = tokio::task::spawn_blocking(move || candor_models::lora::read_adapter(&path))
        .await
        .map_err(|e| ApiError::internal(format!("reading the adapter stopped: {e}")))?
        .map_err(|e| ApiError::invalid("lora_path", e.to_string()))?;
    let answer = ready.engine.load_lora(adapter)?;
    answer
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?
        .map_err(|m| ApiError::invalid("lora_path", m))
}

/// Stop serving the adapter `lora_name`: refused to new requests at once, its slot emptied
/// once the requests already running with it end.
pub async fn unload(
    State(state): State<SharedState>,
    Json(req): Json<UnloadLora>,
) -> Result<Response, ApiError> {
    allowed(&state)?;
    let ready = state.ready()?;
    let name = req.lora_name.trim();
    let slot = state.adapters.remove(name).ok_or_else(|| {
        ApiError::not_found(format!("the LoRA adapter `{name}` is not loaded"))
            .with_code("model_not_found")
    })?;
    // Not waited for: requests running with it finish first, then the engine empties it.
    let _emptied = ready.engine.unload_lora(slot)?;
    tracing::info!(adapter = %name, slot, "LoRA adapter unloaded");
    Ok((
        StatusCode::OK,
        format!("Success: LoRA adapter '{name}' removed successfully."),
    )
        .into_response())
}
