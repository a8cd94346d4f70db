//! `POST /completion`: llama-server's native text completion, for clients written against it:
//! `prompt` as text (tokenized as `/v1/completions` does it) or token ids, llama.cpp's
//! sampling names, and llama-server's answer (`server::native_answer`).
use super::completions::token_ids;
use crate::server::error::ApiError;
use crate::server::json::Json;
use crate::server::native_answer::{self, NativeSampling};
use crate::server::openai::Prompt;
use crate::server::state::SharedState;
use crate::server::validate::no_nul;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct NativeCompletionRequest {
    pub prompt: Prompt,
    #[serde(flatten)]
    pub sampling: NativeSampling,
}

pub async fn completion(
    State(state): State<SharedState>,
    Json(req): Json<NativeCompletionRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.sampling.model.as_deref())?;
    let ready = state.ready()?;
    let ids = match &req.prompt {
        Prompt::Text(text) => {
            no_nul("prompt", text)?;
            ready
                .tokenizer
                .encode(text, true)
                .map_err(|e| ApiError::internal(e.to_string()))?
        }
        Prompt::Tokens(ids) => token_ids(ready, "prompt", ids)?,
        _ => {
            return Err(ApiError::invalid(
                "prompt",
                "`prompt` is one text or one list of token ids here",
            ))
        }
    };
    let max_new = req.sampling.max_new(&ready.limits)?;
    native_answer::answer(&state, &req.sampling, ids, false, max_new, "completion").await
}
