//! `POST /v1/messages` and `POST /v1/messages/count_tokens` (Anthropic's Messages API).
use super::chat::{chat_prompt_text, encode_prompt, start_chat, tool_plan};
use crate::server::error::{AnthropicError, ApiError};
use crate::server::json::Json;
use crate::server::messages::reply;
use crate::server::messages::request::{CountRequest, MessagesRequest};
use crate::server::prompt_end::PromptEnd;
use crate::server::state::{new_item_id, SharedState};
use crate::server::tools::ToolRequest;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub async fn messages(
    State(state): State<SharedState>,
    body: Result<Json<MessagesRequest>, ApiError>,
) -> Result<Response, AnthropicError> {
    let Json(req) = body?;
    let chat = req.to_chat()?;
    let id = new_item_id("msg");
    let started = start_chat(&state, &chat, id.clone()).await?;
    let model = req
        .model
        .clone()
        .unwrap_or_else(|| state.model_name.clone());
    if started.stream {
        Ok(reply::stream(id, model, started))
    } else {
        reply::complete(id, model, started).await
    }
}

/// The prompt's tokens, counted as `/v1/messages` would render them.
pub async fn count_tokens(
    State(state): State<SharedState>,
    body: Result<Json<CountRequest>, ApiError>,
) -> Result<Response, AnthropicError> {
    let Json(req) = body?;
    state.check_model(req.model.as_deref())?;
    let ready = state.ready()?;
    let chat = req.as_request().to_chat()?;
    let tool_request = ToolRequest {
        tools: chat.tools.as_deref(),
        tool_choice: chat.tool_choice.as_ref(),
        parallel_tool_calls: chat.parallel_tool_calls,
    };
    let tools = tool_plan(ready, &tool_request)?;
    let text = chat_prompt_text(
        ready,
        &chat.messages,
        tools.as_ref(),
        chat.chat_template_kwargs.as_ref(),
        PromptEnd::GenerationPrompt,
    )?;
    let count = encode_prompt(ready, &text.text)?.len();
    Ok(axum::Json(json!({"input_tokens": count})).into_response())
}
