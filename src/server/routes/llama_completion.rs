//! `POST /completion`: llama-server's native text completion, for clients written against it:
//! `prompt` in llama-server's forms (a text, token ids, both mixed, or a list of prompts
//! answered side by side), llama.cpp's sampling names, and llama-server's answer
//! (`server::native_answer`).
use crate::server::error::ApiError;
use crate::server::json::AnyJson;
use crate::server::native_answer::{self, NativeSampling};
use crate::server::native_prompt::prompts;
use crate::server::state::SharedState;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct NativeCompletionRequest {
    /// A text, token ids, both mixed, or a list of prompts (`native_prompt::prompts`).
    pub prompt: Value,
    #[serde(flatten)]
    pub sampling: NativeSampling,
}

pub async fn completion(
    State(state): State<SharedState>,
    AnyJson(req): AnyJson<NativeCompletionRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.sampling.model.as_deref())?;
    let ready = state.ready()?;
    let mut prompts = prompts(ready, "prompt", &req.prompt)?;
    let max_new = req.sampling.max_new(&ready.limits)?;
    let (sampling, id) = (&req.sampling, "completion");
    match prompts.len() {
        1 => {
            let ids = prompts.pop().unwrap_or_default();
            native_answer::answer(&state, sampling, ids, false, max_new, id).await
        }
        _ => native_answer::answer_each(&state, sampling, prompts, max_new, id).await,
    }
}
