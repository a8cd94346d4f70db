//! `GET /slots`: llama-server's per-slot state, which load balancers and dashboards written
//! for it read (`is_processing`, with `?fail_on_no_slot=1` a 503 when none is free). A slot
//! here is one of the `--max-num-seqs` sequences the engine runs at once: a running sequence
//! holds the lowest free slot from its start to its end (`EngineStats::set_running_seqs`).
use super::misc::default_params;
use crate::engine::stats::RunningSeq;
use crate::server::error::ApiError;
use crate::server::state::{Ready, SharedState};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
pub struct SlotsQuery {
    /// Answer 503 when every slot is busy (llama-server reads any value but 0 as yes).
    #[serde(default)]
    fail_on_no_slot: Option<String>,
}

pub async fn slots(
    State(state): State<SharedState>,
    Query(query): Query<SlotsQuery>,
) -> Result<Response, ApiError> {
    if !state.slots {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_supported_error",
            "the slots endpoint is off on this server (started with --no-slots)",
        ));
    }
    let ready = state.ready()?;
    let running = ready.stats.running_seqs();
    let total = ready.max_num_seqs.max(running.len());
    let wants_free = query
        .fail_on_no_slot
        .as_deref()
        .is_some_and(|v| !matches!(v, "" | "0" | "false"));
    if wants_free && running.len() >= total {
        return Err(ApiError::unavailable("no slot available"));
    }
    // An idle slot shows the defaults a request would get: the same for every one.
    let defaults = default_params(ready);
    let slots: Vec<Value> = (0..total)
        .map(|id| match running.iter().find(|s| s.slot == id) {
            Some(seq) => busy(ready, id, seq),
            None => idle(ready, id, &defaults),
        })
        .collect();
    Ok(axum::Json(slots).into_response())
}

/// What every slot says of the server.
fn slot(ready: &Ready, id: usize) -> Value {
    json!({
        "id": id,
        "n_ctx": ready.limits.context,
        "speculative": ready.engine.config().speculative_tokens > 0,
    })
}

fn idle(ready: &Ready, id: usize, defaults: &Value) -> Value {
    let mut s = slot(ready, id);
    s["id_task"] = json!(-1);
    s["is_processing"] = json!(false);
    s["params"] = defaults.clone();
    s["next_token"] = json!([{"has_next_token": false, "has_new_line": false, "n_remain": -1,
                              "n_decoded": 0, "stopping_word": ""}]);
    s
}

fn busy(ready: &Ready, id: usize, seq: &RunningSeq) -> Value {
    let mut s = slot(ready, id);
    s["id_task"] = json!(seq.admitted);
    s["request_id"] = json!(seq.request_id);
    s["is_processing"] = json!(true);
    s["n_prompt_tokens"] = json!(seq.prompt_tokens);
    s["n_prompt_tokens_processed"] = json!(seq.computed.min(seq.prompt_tokens));
    s["params"] = json!({
        "n_predict": seq.max_tokens,
        "temperature": seq.temperature,
        "top_k": seq.top_k,
        "top_p": seq.top_p,
        "min_p": seq.min_p,
        "seed": seq.seed.map_or(-1, |s| s as i128),
        "cache_prompt": seq.cache_prompt,
        "lora": seq.lora.scales().iter()
            .map(|&(id, scale)| json!({"id": id, "scale": scale}))
            .collect::<Vec<_>>(),
    });
    s["next_token"] = json!([{
        "has_next_token": true,
        "has_new_line": false,
        "n_remain": seq.max_tokens.saturating_sub(seq.generated),
        "n_decoded": seq.generated,
        "stopping_word": "",
    }]);
    s
}
