//! Answering a `/v1/messages` request: the message object, whole or as Anthropic's event
//! stream (`message_start`, the content block events, `message_delta`, `message_stop`), from
//! the choice events of the chat request it ran as.
use super::blocks::ContentBlocks;
use crate::server::answer_parts::{ChoiceReading, Ending};
use crate::server::error::{AnthropicError, ApiError};
use crate::server::generation::ChoiceEvent;
use crate::server::respond::typed_event;
use crate::server::routes::chat::StartedChat;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::convert::Infallible;

/// How the answer ended, in the API's words.
struct End {
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    output_tokens: usize,
    cached_tokens: usize,
    error: Option<String>,
}

struct Reading {
    id: String,
    model: String,
    prompt_tokens: usize,
    choice: ChoiceReading<ContentBlocks>,
}

impl Reading {
    fn new(id: String, model: String, started: &StartedChat) -> Self {
        let blocks = ContentBlocks::new(started.stream);
        Reading {
            id,
            model,
            prompt_tokens: started.meta.prompt_tokens,
            choice: ChoiceReading::new(started.meta.answer.as_ref(), blocks),
        }
    }

    /// One choice event; the end, in the API's words, once the choice ended.
    fn read(&mut self, event: Option<ChoiceEvent>) -> Option<End> {
        Some(match self.choice.read(event)? {
            Ending::Finished {
                reason,
                completion_tokens,
                cached_tokens,
                stop_string,
            } => {
                let (stop_reason, stop_sequence) = match reason {
                    "tool_calls" => ("tool_use", None),
                    "length" => ("max_tokens", None),
                    _ if stop_string.is_some() => ("stop_sequence", stop_string),
                    _ => ("end_turn", None),
                };
                End {
                    stop_reason,
                    stop_sequence,
                    output_tokens: completion_tokens,
                    cached_tokens,
                    error: None,
                }
            }
            Ending::Failed(message) => End {
                stop_reason: "end_turn",
                stop_sequence: None,
                output_tokens: 0,
                cached_tokens: 0,
                error: Some(message),
            },
        })
    }

    /// Anthropic counts cached prompt tokens apart from `input_tokens`.
    fn usage(&self, output_tokens: usize, cached: usize) -> Value {
        json!({
            "input_tokens": self.prompt_tokens.saturating_sub(cached),
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
            "output_tokens": output_tokens,
        })
    }

    fn message(&self, content: &[Value], end: Option<&End>) -> Value {
        let (stop_reason, stop_sequence) = match end {
            Some(e) => (Some(e.stop_reason), e.stop_sequence.clone()),
            None => (None, None),
        };
        let usage = match end {
            Some(e) => self.usage(e.output_tokens, e.cached_tokens),
            None => self.usage(0, 0),
        };
        json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": usage,
        })
    }
}

/// Run to the end, then answer with the message.
pub async fn complete(
    id: String,
    model: String,
    mut started: StartedChat,
) -> Result<Response, AnthropicError> {
    let mut reading = Reading::new(id, model, &started);
    let end = loop {
        if let Some(end) = reading.read(started.rx.recv().await) {
            break end;
        }
    };
    if let Some(message) = end.error {
        return Err(ApiError::internal(message).into());
    }
    let message = reading.message(reading.choice.render.blocks(), Some(&end));
    Ok(axum::Json(message).into_response())
}

/// Answer with the event stream; it owns the receiver, so a client that goes away ends the
/// generation.
pub fn stream(id: String, model: String, started: StartedChat) -> Response {
    struct St {
        reading: Reading,
        rx: tokio::sync::mpsc::UnboundedReceiver<ChoiceEvent>,
        queue: VecDeque<Value>,
        done: bool,
    }
    let reading = Reading::new(id, model, &started);
    let start = json!({"type": "message_start", "message": reading.message(&[], None)});
    let st = St {
        reading,
        rx: started.rx,
        queue: VecDeque::from([start, json!({"type": "ping"})]),
        done: false,
    };
    let events = futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(event) = st.queue.pop_front() {
                return Some((Ok::<_, Infallible>(typed_event(&event)), st));
            }
            if st.done {
                return None;
            }
            let end = st.reading.read(st.rx.recv().await);
            st.queue.extend(st.reading.choice.render.take_events());
            if let Some(end) = end {
                st.done = true;
                if let Some(message) = end.error {
                    // Headers are sent already: the failure is told in-band.
                    st.queue.push_back(json!({"type": "error",
                        "error": {"type": "api_error", "message": message}}));
                    continue;
                }
                let usage = st.reading.usage(end.output_tokens, end.cached_tokens);
                st.queue.push_back(json!({"type": "message_delta",
                    "delta": {"stop_reason": end.stop_reason, "stop_sequence": end.stop_sequence},
                    "usage": usage}));
                st.queue.push_back(json!({"type": "message_stop"}));
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
