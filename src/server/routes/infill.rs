//! `POST /infill`: llama-server's fill-in-the-middle endpoint, as editor plugins call it
//! (llama.vim, llama.vscode): the prompt from `server::infill`, sampling fields under their
//! llama.cpp names, and llama-server's answer (`server::native_answer`).
use crate::server::error::ApiError;
use crate::server::infill::{parts, Chunk, FimTokens, InfillText};
use crate::server::json::AnyJson;
use crate::server::native_answer::{self, NativeSampling};
use crate::server::state::SharedState;
use crate::server::validate::no_nul;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct InfillRequest {
    #[serde(default)]
    pub input_prefix: String,
    #[serde(default)]
    pub input_suffix: String,
    #[serde(default)]
    pub input_extra: Vec<Chunk>,
    /// The current line up to the cursor, after `input_prefix`.
    #[serde(default)]
    pub prompt: String,
    #[serde(flatten)]
    pub sampling: NativeSampling,
}

pub async fn infill(
    State(state): State<SharedState>,
    AnyJson(req): AnyJson<InfillRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.sampling.model.as_deref())?;
    let ready = state.ready()?;
    let fim = ready.fim.ok_or_else(|| {
        ApiError::bad_request(
            "this model has no fill-in-the-middle tokens; /infill needs a code model",
        )
    })?;
    for (param, text) in [
        ("input_prefix", &req.input_prefix),
        ("input_suffix", &req.input_suffix),
        ("prompt", &req.prompt),
    ] {
        no_nul(param, text)?;
    }
    for (i, c) in req.input_extra.iter().enumerate() {
        no_nul(&format!("input_extra[{i}].text"), &c.text)?;
        no_nul(&format!("input_extra[{i}].filename"), &c.filename)?;
    }
    let limits = &ready.limits;
    let max_new = req.sampling.max_new(limits)?;
    let fim = FimTokens::of(&ready.tokenizer, fim);
    let text = InfillText {
        prefix: &req.input_prefix,
        prompt: &req.prompt,
        suffix: &req.input_suffix,
        extra: &req.input_extra,
    };
    let (ids, truncated) = parts(&ready.tokenizer, fim, &text)
        .map_err(ApiError::internal)?
        .fit(fim, limits.context - max_new);
    native_answer::answer(&state, &req.sampling, ids, truncated, max_new, "infill").await
}
