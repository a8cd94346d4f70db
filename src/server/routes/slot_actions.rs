//! llama-server's slot actions, `POST /slots/{id}?action=save|restore|erase` with
//! `{"filename"}`: save the prompt cache slot `id`'s last request left (its tokens and their
//! K/V) to a file in `--slot-save-path`, restore one into the prefix cache, or drop the slot's
//! prompt from the cache. Off unless the server was started with `--slot-save-path`.
//!
//! A restored prompt joins the prefix cache all requests share, so whichever slot the next
//! request with those tokens lands in, it computes none of them (llama-server restores into the
//! one slot named, which only that slot's next request can use).
use crate::engine::saved_prompts::{SlotAction, SlotOutcome};
use crate::server::error::ApiError;
use crate::server::slot_file;
use crate::server::state::{Ready, SharedState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::time::Instant;

#[derive(Debug, Deserialize)]
pub struct ActionQuery {
    action: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    filename: Option<String>,
}

pub async fn slot_action(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    Query(query): Query<ActionQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(dir) = state.slot_save_path.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_supported_error",
            "slot actions are off on this server: start it with --slot-save-path DIR",
        ));
    };
    let ready = state.ready()?;
    let slot = slot_id(&id, ready)?;
    let body: ActionBody = match body.is_empty() {
        true => ActionBody::default(),
        false => serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?,
    };
    let filename = || {
        body.filename
            .as_deref()
            .ok_or_else(|| ApiError::invalid("filename", "`filename` is required"))
    };
    let started = Instant::now();
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    match query.action.as_deref() {
        Some("save") => {
            let name = filename()?;
            let path = slot_file::path_in(&dir, name)?;
            let SlotOutcome::Saved(saved) = run(ready, SlotAction::Save(slot)).await? else {
                return Err(ApiError::internal("the engine answered another action"));
            };
            let model = model_identity(ready);
            let tokens = saved.tokens.len();
            let written =
                tokio::task::spawn_blocking(move || slot_file::write(&path, &saved, &model))
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))??;
            tracing::info!(slot, file = %name, tokens, bytes = written, "prompt cache saved");
            Ok(axum::Json(json!({
                "id_slot": slot, "filename": name, "n_saved": tokens, "n_written": written,
                "timings": {"save_ms": ms(started)},
            }))
            .into_response())
        }
        Some("restore") => {
            let name = filename()?;
            let path = slot_file::path_in(&dir, name)?;
            let model = model_identity(ready);
            let (saved, read) = tokio::task::spawn_blocking(move || slot_file::read(&path, &model))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))??;
            let vocab = ready.limits.vocab;
            if let Some(t) = saved.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(ApiError::bad_request(format!(
                    "`{name}` holds token {t}, past this model's vocabulary of {vocab}"
                )));
            }
            let SlotOutcome::Restored(tokens) = run(ready, SlotAction::Restore(saved)).await?
            else {
                return Err(ApiError::internal("the engine answered another action"));
            };
            tracing::info!(slot, file = %name, tokens, "prompt cache restored");
            Ok(axum::Json(json!({
                "id_slot": slot, "filename": name, "n_restored": tokens, "n_read": read,
                "timings": {"restore_ms": ms(started)},
            }))
            .into_response())
        }
        Some("erase") => {
            let SlotOutcome::Erased(tokens) = run(ready, SlotAction::Erase(slot)).await? else {
                return Err(ApiError::internal("the engine answered another action"));
            };
            Ok(axum::Json(json!({"id_slot": slot, "n_erased": tokens})).into_response())
        }
        Some(other) => Err(ApiError::invalid(
            "action",
            format!("unknown action `{other}`: use save, restore or erase"),
        )),
        None => Err(ApiError::invalid(
            "action",
            "`action` is required in the query: save, restore or erase",
        )),
    }
}

/// Slot `id`, one of the engine's `--max-num-seqs`.
fn slot_id(id: &str, ready: &Ready) -> Result<usize, ApiError> {
    match id.parse::<usize>() {
        Ok(slot) if slot < ready.max_num_seqs => Ok(slot),
        _ => Err(ApiError::invalid(
            "id_slot",
            format!(
                "no slot `{id}`: slots are numbered 0 to {}",
                ready.max_num_seqs.saturating_sub(1)
            ),
        )),
    }
}

/// What a saved prompt's rows belong to: the weights file as the server describes it (a
/// re-download of another quantization or another model is another identity).
fn model_identity(ready: &Ready) -> String {
    let f = &ready.facts;
    format!(
        "{} {} of {} bytes{}",
        f.arch,
        f.format,
        f.size_bytes,
        f.quantization
            .as_deref()
            .map(|q| format!(", {q}"))
            .unwrap_or_default()
    )
}

/// The engine's answer to `action`: a refusal is the client's (400), as every reason it gives
/// is about the slot or the file asked for.
async fn run(ready: &Ready, action: SlotAction) -> Result<SlotOutcome, ApiError> {
    ready
        .engine
        .slot_action(action)?
        .await
        .map_err(|_| ApiError::unavailable("the engine stopped"))?
        .map_err(ApiError::bad_request)
}
