//! `candor run-batch`: a file of requests in OpenAI's Batch API format run offline, as
//! `vllm run-batch` does: the model loaded as `candor serve` loads it, every line sent to the
//! same handlers a server runs (so an answer is byte for byte what the endpoint returns), many
//! at once so the engine batches them, and one output line per input line, in input order.
//! The input is read as the batch needs it, a few batches ahead of what runs: a file larger
//! than memory runs in the memory its lines in flight take.
pub mod line;

use super::{load, new_state, router, ServeConfig};
use axum::body::Body;
use futures::StreamExt;
use line::{Refused, Request};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("the model failed to load: {0}")]
    Load(String),
    #[error("cannot write the results: {0}")]
    Write(#[from] std::io::Error),
    /// Every line before it was run and its result written.
    #[error("cannot read line {line} of the input: {source}")]
    Read { line: usize, source: std::io::Error },
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchSummary {
    pub lines: usize,
    /// Lines answered 200.
    pub succeeded: usize,
    /// Lines not sent, or answered with an error.
    pub failed: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub seconds: f64,
}

/// Run the request `lines` (each without its newline, as `BufRead::split` gives them) on the
/// model of `config` and write each result, in their order, to `out` (one JSON line each);
/// `on_done` sees every finished line. Blank lines are skipped. A line that cannot be read
/// ends the batch there: the lines before it are answered and written, then `Read` says
/// where it stopped.
pub async fn run_batch(
    config: ServeConfig,
    lines: impl Iterator<Item = std::io::Result<Vec<u8>>> + Send + 'static,
    out: &mut (dyn Write + Send),
    on_done: impl Fn(),
) -> Result<BatchSummary, BatchError> {
    // Nothing listens: the lines come from whoever may read the file, with no key to show.
    let config = ServeConfig {
        api_keys: super::auth::ApiKeys::default(),
        ..config
    };
    let state = new_state(&config);
    {
        let (config, state) = (config.clone(), state.clone());
        tokio::task::spawn_blocking(move || load(&config, &state))
            .await
            .map_err(|e| BatchError::Load(e.to_string()))?
            .map_err(BatchError::Load)?;
    }
    let app = router(state, config.body_limit, false);
    let t0 = Instant::now();
    // Enough in flight to fill the engine's batch and keep its queue fed.
    let in_flight = config.max_num_seqs + config.max_waiting.min(config.max_num_seqs);
    let unread = Arc::new(Mutex::new(None));
    let parsed = Box::pin(read_ahead(lines, in_flight.max(1) * 2, unread.clone()));
    let mut results = parsed
        .enumerate()
        .map(|(order, parsed)| {
            let app = app.clone();
            async move {
                let id = super::state::new_item_id("batch_req");
                let written = match parsed {
                    Ok(request) => {
                        let sent = send(app, &request).await;
                        let usage = sent.body.get("usage").cloned();
                        // The answer's own id (`chatcmpl-…`) where it has one, else the
                        // request's, as the server's log names it.
                        let request_id = match sent.body.get("id").and_then(Value::as_str) {
                            Some(id) => id.to_string(),
                            None => sent.request_id,
                        };
                        Outcome::Answered {
                            line: line::answered(
                                &id,
                                &request.custom_id,
                                sent.status,
                                &request_id,
                                sent.body,
                            ),
                            ok: sent.status == 200,
                            usage,
                        }
                    }
                    Err(why) => Outcome::Refused(line::refused(&id, &why)),
                };
                (order, written)
            }
        })
        .buffer_unordered(in_flight.max(1));
    let mut summary = BatchSummary::default();
    let mut waiting: BTreeMap<usize, Value> = BTreeMap::new();
    let mut next = 0;
    while let Some((order, outcome)) = results.next().await {
        summary.lines += 1;
        let line = match outcome {
            Outcome::Answered { line, ok, usage } => {
                if ok {
                    summary.succeeded += 1;
                } else {
                    summary.failed += 1;
                }
                let count = |key: &str| {
                    usage
                        .as_ref()
                        .and_then(|u| u.get(key))
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                };
                // Chat and completions count prompt and completion tokens; the Responses
                // API input and output tokens.
                summary.prompt_tokens += count("prompt_tokens") + count("input_tokens");
                summary.completion_tokens += count("completion_tokens") + count("output_tokens");
                line
            }
            Outcome::Refused(line) => {
                summary.failed += 1;
                line
            }
        };
        waiting.insert(order, line);
        while let Some(line) = waiting.remove(&next) {
            writeln!(out, "{line}")?;
            next += 1;
        }
        on_done();
    }
    out.flush()?;
    summary.seconds = t0.elapsed().as_secs_f64();
    let unread = unread.lock().map(|mut u| u.take()).unwrap_or(None);
    match unread {
        Some((line, source)) => Err(BatchError::Read { line, source }),
        None => Ok(summary),
    }
}

/// The input's lines parsed in order (blank ones skipped), read on a thread of their own at
/// most `ahead` lines before the batch asks for them. Reading stops at the first line that
/// cannot be read; `unread` then holds its number and why.
fn read_ahead(
    lines: impl Iterator<Item = std::io::Result<Vec<u8>>> + Send + 'static,
    ahead: usize,
    unread: Arc<Mutex<Option<(usize, std::io::Error)>>>,
) -> impl futures::Stream<Item = Result<Request, Refused>> {
    let (tx, rx) = tokio::sync::mpsc::channel(ahead);
    // A thread, not the runtime's: reading a file or stdin blocks.
    std::thread::spawn(move || {
        for line in lines {
            let failed = line.is_err();
            // The batch stopped listening, or there is nothing after an unreadable line.
            if tx.blocking_send(line).is_err() || failed {
                break;
            }
        }
    });
    let start = (rx, HashMap::new(), 0usize);
    futures::stream::unfold(start, move |(mut rx, mut seen, mut number)| {
        let unread = unread.clone();
        async move {
            loop {
                number += 1;
                match rx.recv().await? {
                    Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
                    Ok(bytes) => {
                        let parsed = line::parse_bytes(&bytes, number, &mut seen);
                        return Some((parsed, (rx, seen, number)));
                    }
                    Err(e) => {
                        if let Ok(mut slot) = unread.lock() {
                            *slot = Some((number, e));
                        }
                        return None;
                    }
                }
            }
        }
    })
}

enum Outcome {
    Answered {
        line: Value,
        ok: bool,
        usage: Option<Value>,
    },
    Refused(Value),
}

/// What the server answered a line.
struct Sent {
    status: u16,
    /// The request's id (`X-Request-Id` of the answer).
    request_id: String,
    body: Value,
}

/// POST `request` to its endpoint: the status, the request's id and the JSON answer. A full
/// queue (429) is tried again shortly: every line waits its turn, none is dropped for the
/// batch's size.
async fn send(app: axum::Router, request: &Request) -> Sent {
    let failed = |status: u16, message: String| Sent {
        status,
        request_id: String::new(),
        body: error_body(&message),
    };
    let body = request.body.to_string();
    let mut pause = Duration::from_millis(10);
    loop {
        let http = axum::http::Request::post(&request.url)
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.clone()));
        let http = match http {
            Ok(http) => http,
            Err(e) => return failed(400, format!("not a request: {e}")),
        };
        let response = match app.clone().oneshot(http).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        if status == 429 {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            continue;
        }
        let request_id = response
            .headers()
            .get(super::request_id::HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
            Ok(bytes) => bytes,
            Err(e) => return failed(500, format!("the answer broke off: {e}")),
        };
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        return Sent {
            status,
            request_id,
            body,
        };
    }
}

fn error_body(message: &str) -> Value {
    super::error::ApiError::internal(message).body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reading_stops_at_an_unreadable_line_after_the_lines_before_it() {
        let line = |id: &str| {
            let body = serde_json::json!({"custom_id": id, "method": "POST",
                "url": "/v1/completions", "body": {"prompt": "a"}});
            Ok(body.to_string().into_bytes())
        };
        let lines = vec![
            line("a"),
            Ok(b"  ".to_vec()),
            line("b"),
            Err(std::io::Error::other("disk gone")),
            line("c"),
        ];
        let unread = Arc::new(Mutex::new(None));
        let parsed: Vec<_> = read_ahead(lines.into_iter(), 1, unread.clone())
            .collect()
            .await;
        let ids: Vec<String> = parsed
            .into_iter()
            .map(|p| p.map(|r| r.custom_id).unwrap_or_default())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        let (number, why) = unread.lock().unwrap().take().unwrap();
        assert_eq!((number, why.to_string()), (4, "disk gone".to_string()));
    }
}
