//! Answering a `/v1/responses` request: the response object, whole or as a stream of typed
//! events (`response.created` ... `response.completed`), from the choice events of the chat
//! request it ran as.
use super::conversations::ConversationStore;
use super::event_log::{CloseOnDrop, EventLog};
use super::items::OutputItems;
use super::request::ResponsesRequest;
use super::store::{ResponseStore, Stored};
use crate::server::answer_parts::{ChoiceReading, Ending};
use crate::server::error::ApiError;
use crate::server::generation::ChoiceEvent;
use crate::server::generation_defaults::Applied;
use crate::server::respond::typed_event;
use crate::server::routes::chat::StartedChat;
use crate::server::state::unix_now;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use candor_models::tokenizer::Tokenizer;
use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// Where a finished response is kept, with what a continuation of it needs.
pub struct Keep {
    pub store: Arc<ResponseStore>,
    /// Shared with each state kept (a background response is kept three times).
    pub input: Arc<Vec<Value>>,
    pub previous: Option<String>,
    /// The event log of a streamed background response.
    pub events: Option<Arc<EventLog>>,
}

/// The conversation a response joins: its input and output items are added once it ends.
pub struct Joins {
    pub store: Arc<ConversationStore>,
    pub id: String,
    pub input: Arc<Vec<Value>>,
}

/// The fields of the response object that do not change while it runs: the request's settings
/// as applied (OpenAI echoes them), with the server's defaults where the request was silent.
pub struct Shell {
    id: String,
    created_at: u64,
    settings: Map<String, Value>,
    keep: Option<Keep>,
    joins: Option<Joins>,
}

impl Shell {
    /// `keep`: `None` when the response is not to be kept (`store: false`, or no store).
    /// `defaults`: the sampling values of the fields the request left out (shown as used).
    pub fn new(
        id: String,
        model: &str,
        req: &ResponsesRequest,
        defaults: &Applied,
        keep: Option<Keep>,
        joins: Option<Joins>,
    ) -> Self {
        let or = |v: Option<Value>, default: Value| v.unwrap_or(default);
        let settings = json!({
            "model": model,
            "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens,
            "metadata": or(req.metadata.clone().map(Value::Object), json!({})),
            "parallel_tool_calls": req.parallel_tool_calls.unwrap_or(true),
            "temperature": req.common.temperature.unwrap_or(defaults.temperature),
            "top_p": req.common.top_p.unwrap_or(defaults.top_p),
            "top_logprobs": req.top_logprobs.unwrap_or(0),
            "tool_choice": or(req.tool_choice.clone(), json!("auto")),
            "tools": or(req.tools.clone().map(Value::Array), json!([])),
            "text": or(req.text.clone(), json!({"format": {"type": "text"}})),
            "reasoning": or(req.reasoning.clone(), json!({"effort": null, "summary": null})),
            "truncation": req.truncation.as_deref().unwrap_or("disabled"),
            "previous_response_id": req.previous_response_id,
            "background": req.background == Some(true),
            "store": keep.is_some(),
            "conversation": joins.as_ref().map(|j| json!({"id": j.id})),
        });
        Shell {
            id,
            created_at: unix_now(),
            settings: match settings {
                Value::Object(o) => o,
                _ => Map::new(),
            },
            keep,
            joins,
        }
    }

    /// The finished response object, kept when it is to be.
    fn finished(&mut self, end: &End, output: &[Value]) -> Value {
        let object = self.object(end.status(), output, Some(end));
        self.keep_as(&object);
        self.keep = None;
        if let Some(joins) = self.joins.take().filter(|_| end.error.is_none()) {
            let items: Vec<Value> = joins.input.iter().chain(output).cloned().collect();
            if let Err(e) = joins.store.append(&joins.id, &items) {
                tracing::warn!(id = %self.id, error = %e, "response not added to its conversation");
            }
        }
        object
    }

    /// Keep `object` as the response's state now (a background one is kept while it runs).
    fn keep_as(&self, object: &Value) {
        let Some(keep) = &self.keep else {
            return;
        };
        let stored = Stored {
            response: Arc::new(object.clone()),
            input: keep.input.clone(),
            previous: keep.previous.clone(),
            events: keep.events.clone(),
        };
        if !keep.store.put(&self.id, stored) {
            tracing::warn!(id = %self.id, "response larger than the whole responses store; not kept");
        }
    }

    fn object(&self, status: &str, output: &[Value], end: Option<&End>) -> Value {
        let mut o = json!({
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "output": output, "error": null, "incomplete_details": null, "usage": null,
        });
        if let Some(end) = end {
            o["completed_at"] = json!(unix_now());
            o["usage"] = end.usage.clone();
            if end.cut_off {
                o["incomplete_details"] = json!({"reason": "max_output_tokens"});
            }
            if let Some(message) = &end.error {
                o["error"] = json!({"code": "server_error", "message": message});
            }
        }
        if let Some(fields) = o.as_object_mut() {
            fields.extend(self.settings.clone());
        }
        o
    }
}

/// How a response ended.
struct End {
    usage: Value,
    cut_off: bool,
    error: Option<String>,
}

impl End {
    fn status(&self) -> &'static str {
        match (&self.error, self.cut_off) {
            (Some(_), _) => "failed",
            (None, true) => "incomplete",
            (None, false) => "completed",
        }
    }
}

/// Reads the one choice of the chat request into output items.
struct Reading {
    choice: ChoiceReading<OutputItems>,
    tokenizer: Arc<Tokenizer>,
    prompt_tokens: usize,
}

impl Reading {
    fn new(started: &StartedChat, tokenizer: Arc<Tokenizer>) -> Self {
        let items = OutputItems::new(started.stream, started.meta.logprobs);
        Reading {
            choice: ChoiceReading::new(started.meta.answer.as_ref(), items),
            tokenizer,
            prompt_tokens: started.meta.prompt_tokens,
        }
    }

    /// One choice event; the end once the choice finished or failed.
    fn read(&mut self, event: Option<ChoiceEvent>) -> Option<End> {
        Some(match self.choice.read(event)? {
            Ending::Finished {
                reason,
                completion_tokens,
                cached_tokens,
                ..
            } => End {
                usage: self.usage(completion_tokens, cached_tokens),
                cut_off: reason == "length",
                error: None,
            },
            Ending::Failed(message) => End {
                usage: Value::Null,
                cut_off: false,
                error: Some(message),
            },
        })
    }

    /// Reasoning tokens are the thought's text encoded again: the generated ids are not kept
    /// apart by where their text went.
    fn usage(&self, completion: usize, cached: usize) -> Value {
        let thought = self.choice.render.thought();
        let reasoning = match thought.is_empty() {
            true => 0,
            false => self
                .tokenizer
                .encode(thought, false)
                .map_or(0, |ids| ids.len().min(completion)),
        };
        json!({
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": self.prompt_tokens + completion,
        })
    }
}

/// Run to the end: the finished response object (kept when it is to be), and the failure if
/// the generation failed.
async fn run_to_end(
    mut shell: Shell,
    mut started: StartedChat,
    tokenizer: Arc<Tokenizer>,
) -> (Value, Option<String>) {
    let mut reading = Reading::new(&started, tokenizer);
    let end = loop {
        if let Some(end) = reading.read(started.rx.recv().await) {
            break end;
        }
    };
    let object = shell.finished(&end, reading.choice.render.items());
    (object, end.error)
}

/// Run to the end, then answer with the response object.
pub async fn complete(
    shell: Shell,
    started: StartedChat,
    tokenizer: Arc<Tokenizer>,
) -> Result<Response, ApiError> {
    match run_to_end(shell, started, tokenizer).await {
        (_, Some(message)) => Err(ApiError::internal(message)),
        (object, None) => Ok(axum::Json(object).into_response()),
    }
}

/// `background: true`: answer at once and run it apart; the client polls `GET
/// /v1/responses/{id}` and may cancel it (`POST .../cancel`). Not streamed, the answer is the
/// queued response; streamed, it is the event stream, read from the response's event log: a
/// client that goes away stops reading, not the response, and may read on with `GET
/// /v1/responses/{id}?stream=true&starting_after=N`.
pub fn background(mut shell: Shell, started: StartedChat, tokenizer: Arc<Tokenizer>) -> Response {
    let log = started.stream.then(|| Arc::new(EventLog::new()));
    let Some(keep) = shell.keep.as_mut() else {
        // `routes::responses` refuses a background response that cannot be kept.
        return ApiError::internal("a background response must be kept").into_response();
    };
    keep.events = log.clone();
    let store = keep.store.clone();
    let queued = shell.object("queued", &[], None);
    shell.keep_as(&queued);
    let id = shell.id.clone();
    // The task waits until it is registered: one that ended first would leave its entry.
    let (registered, wait) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let (store, id, log, queued) = (store.clone(), id.clone(), log.clone(), queued.clone());
        tokio::spawn(async move {
            if wait.await.is_err() {
                return;
            }
            let _ended = Ended { store, id };
            let _closing = log.clone().map(CloseOnDrop);
            shell.keep_as(&shell.object("in_progress", &[], None));
            match log {
                None => {
                    run_to_end(shell, started, tokenizer).await;
                }
                Some(log) => {
                    let opening = [
                        json!({"type": "response.created", "response": queued}),
                        json!({"type": "response.queued", "response": queued}),
                    ];
                    let mut feed = EventFeed::new(shell, started, tokenizer, opening);
                    while let Some(event) = feed.next().await {
                        log.push(event);
                    }
                }
            }
        })
    };
    store.running(&id, task.abort_handle());
    let _ = registered.send(());
    match log {
        Some(log) => replay(log, 0),
        None => axum::Json(queued).into_response(),
    }
}

/// Tells the store a background task ended, however it ended.
struct Ended {
    store: Arc<ResponseStore>,
    id: String,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.store.finished(&self.id);
    }
}

/// Answer with the events of a streamed background response from index `from` on, following
/// it until it ends.
pub fn replay(log: Arc<EventLog>, from: usize) -> Response {
    let events = log
        .follow(from)
        .map(|event| Ok::<_, Infallible>(typed_event(&event)));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The typed events of one response, numbered, from its opening events to its end (the
/// response is kept as it ended before the last event is given).
struct EventFeed {
    shell: Shell,
    rx: UnboundedReceiver<ChoiceEvent>,
    reading: Reading,
    queue: VecDeque<Value>,
    sequence: u64,
    done: bool,
}

impl EventFeed {
    fn new(
        shell: Shell,
        started: StartedChat,
        tokenizer: Arc<Tokenizer>,
        opening: impl IntoIterator<Item = Value>,
    ) -> Self {
        let in_progress = shell.object("in_progress", &[], None);
        let mut queue = VecDeque::from_iter(opening);
        queue.push_back(json!({"type": "response.in_progress", "response": in_progress}));
        EventFeed {
            reading: Reading::new(&started, tokenizer),
            shell,
            rx: started.rx,
            queue,
            sequence: 0,
            done: false,
        }
    }

    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(mut event) = self.queue.pop_front() {
                event["sequence_number"] = json!(self.sequence);
                self.sequence += 1;
                return Some(event);
            }
            if self.done {
                return None;
            }
            let end = self.reading.read(self.rx.recv().await);
            self.queue.extend(self.reading.choice.render.take_events());
            if let Some(end) = end {
                if let Some(message) = &end.error {
                    // Headers are sent already: the failure is told in-band.
                    self.queue
                        .push_back(json!({"type": "error", "code": "server_error",
                                                "message": message, "param": null}));
                }
                let kind = match end.status() {
                    "failed" => "response.failed",
                    "incomplete" => "response.incomplete",
                    _ => "response.completed",
                };
                let object = self
                    .shell
                    .finished(&end, self.reading.choice.render.items());
                self.queue
                    .push_back(json!({"type": kind, "response": object}));
                self.done = true;
            }
        }
    }
}

/// Answer with the typed event stream. It owns the receiver: a client that goes away drops
/// the stream and with it the generation.
pub fn stream(shell: Shell, started: StartedChat, tokenizer: Arc<Tokenizer>) -> Response {
    let created =
        json!({"type": "response.created", "response": shell.object("in_progress", &[], None)});
    let feed = EventFeed::new(shell, started, tokenizer, [created]);
    let events = futures::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok::<_, Infallible>(typed_event(&event)), feed))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
