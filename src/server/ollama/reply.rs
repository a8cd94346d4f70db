//! Ollama's answers to `/api/chat` (`message`) and `/api/generate` (`response`): a line per
//! released piece (`done: false`), then the closing line with `done_reason` and the counts and
//! durations (nanoseconds) Ollama reports, as NDJSON; or the closing object alone, holding the
//! whole answer, with `stream: false`. Thoughts go to `thinking`, calls to `tool_calls` with
//! their arguments as objects.
use crate::server::answer::{AnswerSetup, Released};
use crate::server::answer_parts::{ChoiceReading, Ending, RenderParts};
use crate::server::error::{ApiError, OllamaError};
use crate::server::generation::{ChoiceEvent, TokenInfo};
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

/// Which endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `/api/chat`: `message: {role, content, thinking, tool_calls}`.
    Chat,
    /// `/api/generate`: `response`, `thinking`.
    Generate,
}

/// A started generation and what its answer needs.
pub struct OllamaRun {
    pub shape: Shape,
    pub model: String,
    pub rx: UnboundedReceiver<ChoiceEvent>,
    pub prompt_tokens: usize,
    /// How to read thoughts and calls out of the text (`None`: plain text).
    pub answer: Option<AnswerSetup>,
    pub logprobs: bool,
    pub started: Instant,
}

/// What the answer released since it was last taken.
#[derive(Default)]
struct Pieces {
    thinking: String,
    content: String,
    calls: Vec<Value>,
    logprobs: Vec<Value>,
    keep_logprobs: bool,
}

impl RenderParts for Pieces {
    fn push(&mut self, released: Released, tokens: &[TokenInfo]) {
        self.thinking.push_str(&released.reasoning);
        self.content.push_str(&released.content);
        for (_, call) in released.calls {
            // Ollama's arguments are an object; text that is not one stays a string.
            let arguments = serde_json::from_str::<Value>(&call.arguments)
                .unwrap_or(Value::String(call.arguments));
            self.calls
                .push(json!({"function": {"name": call.name, "arguments": arguments}}));
        }
        if self.keep_logprobs {
            self.logprobs.extend(tokens.iter().map(logprob));
        }
    }

    fn finish(&mut self, _complete: bool) {}
}

fn logprob(t: &TokenInfo) -> Value {
    let top: Vec<Value> = t
        .top
        .iter()
        .flatten()
        .map(|a| json!({"token": a.text, "logprob": a.logprob, "bytes": a.bytes}))
        .collect();
    json!({"token": t.text, "logprob": t.logprob, "bytes": t.bytes, "top_logprobs": top})
}

impl Pieces {
    fn is_empty(&self) -> bool {
        self.thinking.is_empty()
            && self.content.is_empty()
            && self.calls.is_empty()
            && self.logprobs.is_empty()
    }

    fn take(&mut self) -> Pieces {
        Pieces {
            keep_logprobs: self.keep_logprobs,
            ..std::mem::take(self)
        }
    }

    fn append(&mut self, more: Pieces) {
        self.thinking.push_str(&more.thinking);
        self.content.push_str(&more.content);
        self.calls.extend(more.calls);
        self.logprobs.extend(more.logprobs);
    }

    /// The answer's fields of a line, in the endpoint's shape.
    fn fields(&self, shape: Shape) -> Value {
        let mut out = match shape {
            Shape::Chat => {
                let mut message = json!({"role": "assistant", "content": self.content});
                if !self.thinking.is_empty() {
                    message["thinking"] = json!(self.thinking);
                }
                if !self.calls.is_empty() {
                    message["tool_calls"] = json!(self.calls);
                }
                json!({"message": message})
            }
            Shape::Generate => {
                let mut out = json!({"response": self.content});
                if !self.thinking.is_empty() {
                    out["thinking"] = json!(self.thinking);
                }
                out
            }
        };
        if self.keep_logprobs && !self.logprobs.is_empty() {
            out["logprobs"] = json!(self.logprobs);
        }
        out
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Reads the one choice into lines.
struct Reading {
    run: OllamaRun,
    choice: ChoiceReading<Pieces>,
    first_token: Option<Instant>,
}

/// What one read gave: the pieces released (maybe none), and the closing line's fields once the
/// answer ended, or its failure.
enum Read {
    More(Pieces),
    End(Pieces, Value),
    Failed(String),
}

impl Reading {
    fn new(run: OllamaRun) -> Self {
        let pieces = Pieces {
            keep_logprobs: run.logprobs,
            ..Pieces::default()
        };
        Reading {
            choice: ChoiceReading::new(run.answer.as_ref(), pieces),
            run,
            first_token: None,
        }
    }

    fn line(&self, pieces: &Pieces, done: bool) -> Value {
        let mut line = json!({"model": self.run.model, "created_at": now()});
        if let (Some(line), Value::Object(fields)) =
            (line.as_object_mut(), pieces.fields(self.run.shape))
        {
            line.extend(fields);
        }
        line["done"] = json!(done);
        line
    }

    async fn read(&mut self) -> Read {
        let event = self.run.rx.recv().await;
        if matches!(event, Some(ChoiceEvent::Delta { .. })) {
            self.first_token.get_or_insert_with(Instant::now);
        }
        let ending = self.choice.read(event);
        let pieces = self.choice.render.take();
        match ending {
            None => Read::More(pieces),
            Some(Ending::Failed(message)) => Read::Failed(message),
            Some(Ending::Finished {
                reason,
                completion_tokens,
                ..
            }) => {
                let end = Instant::now();
                let first = self.first_token.unwrap_or(end);
                let ns = |from: Instant, to: Instant| to.duration_since(from).as_nanos() as u64;
                let started = self.run.started;
                let summary = json!({
                    "done_reason": if reason == "length" { "length" } else { "stop" },
                    "total_duration": ns(started, end),
                    "load_duration": 0,
                    "prompt_eval_count": self.run.prompt_tokens,
                    "prompt_eval_duration": ns(started, first),
                    "eval_count": completion_tokens,
                    "eval_duration": ns(first, end),
                });
                Read::End(pieces, summary)
            }
        }
    }
}

/// The closing line: the answer's `pieces` and the summary.
fn closing(reading: &Reading, pieces: &Pieces, summary: Value) -> Value {
    let mut line = reading.line(pieces, true);
    if let (Some(line), Value::Object(summary)) = (line.as_object_mut(), summary) {
        line.extend(summary);
    }
    line
}

/// Run to the end; the one object holding the whole answer.
pub async fn complete(run: OllamaRun) -> Result<Response, OllamaError> {
    let mut reading = Reading::new(run);
    let mut all = Pieces {
        keep_logprobs: reading.run.logprobs,
        ..Pieces::default()
    };
    loop {
        match reading.read().await {
            Read::More(pieces) => all.append(pieces),
            Read::End(pieces, summary) => {
                all.append(pieces);
                return Ok(axum::Json(closing(&reading, &all, summary)).into_response());
            }
            Read::Failed(message) => return Err(ApiError::internal(message).into()),
        }
    }
}

/// The NDJSON stream: a line per released piece, then the closing line (or `{"error": ...}`,
/// which Ollama's clients raise). It owns the receiver: a client that goes away ends the
/// generation.
pub fn stream(run: OllamaRun) -> Response {
    let lines = futures::stream::unfold(Some(Reading::new(run)), |reading| async move {
        let mut reading = reading?;
        loop {
            let (line, next) = match reading.read().await {
                Read::More(pieces) if pieces.is_empty() => continue,
                Read::More(pieces) => (reading.line(&pieces, false), Some(reading)),
                Read::End(pieces, summary) => {
                    let line = if pieces.is_empty() {
                        closing(&reading, &pieces, summary)
                    } else {
                        // The last pieces go on their own line, as every piece does.
                        let mut both = reading.line(&pieces, false).to_string();
                        both.push('\n');
                        both.push_str(&closing(&reading, &Pieces::default(), summary).to_string());
                        return Some((Ok::<_, Infallible>(Bytes::from(both + "\n")), None));
                    };
                    (line, None)
                }
                Read::Failed(message) => (json!({"error": message}), None),
            };
            let mut text = line.to_string();
            text.push('\n');
            return Some((Ok::<_, Infallible>(Bytes::from(text)), next));
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}
