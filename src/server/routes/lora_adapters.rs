//! llama-server's LoRA endpoints: `GET /lora-adapters` lists the adapters served (`id`, `path`,
//! `scale`, and here the `name` a request may give as its model), `POST /lora-adapters` with
//! `[{"id", "scale"}]` sets the scales requests for the base model run them at when they send
//! no `lora` list of their own (the adapters not named at 0), answering `{"success": true}`.
//! Unlike llama-server, adapters start at 0 for such requests (as with its
//! `--lora-init-without-apply`): here `--lora` serves an adapter as a model of its own, vLLM's
//! way, and the base model answers as itself until a client asks otherwise.
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::lora_list::{checked, ListAt, LoraScale};
use crate::server::state::SharedState;
use axum::extract::State;
use serde_json::{json, Value};

pub async fn list(State(state): State<SharedState>) -> axum::Json<Value> {
    let adapters: Vec<Value> = state
        .adapters
        .with_scales()
        .into_iter()
        .map(|(id, adapter, scale)| {
            json!({
                "id": id,
                "name": adapter.name,
                "path": adapter.path.display().to_string(),
                "scale": scale,
            })
        })
        .collect();
    axum::Json(Value::Array(adapters))
}

pub async fn set_scales(
    State(state): State<SharedState>,
    Json(body): Json<Vec<LoraScale>>,
) -> Result<axum::Json<Value>, ApiError> {
    let list = checked(ListAt::Body, &body)?;
    state
        .adapters
        .set_scales(&list)
        .map_err(|e| e.for_list(ListAt::Body))?;
    tracing::info!(?list, "LoRA scales for base-model requests set");
    Ok(axum::Json(json!({"success": true})))
}
