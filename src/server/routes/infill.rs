//! `POST /infill`: llama-server's fill-in-the-middle endpoint, as editor plugins call it
//! (llama.vim, llama.vscode): the prompt from `server::infill`, sampling fields under their
//! llama.cpp names, `t_max_predict_ms` honoured, and llama-server's answer shape (`content`,
//! `stop_type`, `timings`), whole or streamed as `data:` lines.
use crate::server::error::ApiError;
use crate::server::generation::{self, ChoiceEvent, PromptIn};
use crate::server::infill::{parts, Chunk, FimTokens, InfillText};
use crate::server::json::Json;
use crate::server::openai::{CommonParams, Stop};
use crate::server::state::{new_id, SharedState};
use crate::server::validate::{completion_plan, no_nul};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

#[derive(Debug, Deserialize)]
pub struct InfillRequest {
    pub model: Option<String>,
    #[serde(default)]
    pub input_prefix: String,
    #[serde(default)]
    pub input_suffix: String,
    #[serde(default)]
    pub input_extra: Vec<Chunk>,
    /// The current line up to the cursor, after `input_prefix`.
    #[serde(default)]
    pub prompt: String,
    /// Tokens to generate; -1 (or none): the server's default.
    pub n_predict: Option<i64>,
    pub temperature: Option<f64>,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    pub min_p: Option<f64>,
    /// -1: random.
    pub seed: Option<i64>,
    pub stop: Option<Vec<String>>,
    #[serde(default)]
    pub stream: bool,
    /// Once this long has passed since the first token and a line is complete, the answer
    /// ends (`stop_type: "limit"`), as llama-server bounds an editor's wait.
    pub t_max_predict_ms: Option<u64>,
}

pub async fn infill(
    State(state): State<SharedState>,
    Json(req): Json<InfillRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.model.as_deref())?;
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
    let max_new = match req.n_predict {
        Some(n) if n > 0 => n as usize,
        _ => limits.default_max_tokens,
    };
    if max_new >= limits.context {
        return Err(ApiError::invalid(
            "n_predict",
            format!(
                "`n_predict` is {max_new}; the context is {} tokens",
                limits.context
            ),
        ));
    }
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
    let common = CommonParams {
        max_tokens: Some(max_new as i64),
        temperature: req.temperature,
        top_k: req.top_k,
        top_p: req.top_p,
        min_p: req.min_p,
        seed: req.seed.filter(|s| *s >= 0),
        stop: req.stop.clone().map(Stop::Many),
        stream: req.stream,
        ..CommonParams::default()
    };
    let plan = completion_plan(&common, ids.len(), limits, false)
        .map_err(|e| e.renamed(&[("max_tokens", "n_predict"), ("prompt", "input_prefix")]))?;
    let id = new_id("infill");
    let rx = generation::start(
        ready,
        &id,
        vec![PromptIn::plain(ids.clone())],
        &plan,
        None,
        None,
    )?;
    let run = Infill {
        rx,
        model: state.model_name.clone(),
        prompt_tokens: ids.len(),
        truncated,
        time_limit: req.t_max_predict_ms.map(Duration::from_millis),
        started: Instant::now(),
        first_token: None,
        pieces: 0,
        content: String::new(),
    };
    if req.stream {
        Ok(stream(run))
    } else {
        let mut run = run;
        let summary = loop {
            match run.next().await {
                Step::Text(_) => {}
                Step::Done(summary) => break summary?,
            }
        };
        Ok(axum::Json(summary).into_response())
    }
}

struct Infill {
    rx: UnboundedReceiver<ChoiceEvent>,
    model: String,
    prompt_tokens: usize,
    truncated: bool,
    time_limit: Option<Duration>,
    started: Instant,
    first_token: Option<Instant>,
    /// Pieces of text received (about a token each).
    pieces: usize,
    content: String,
}

enum Step {
    Text(String),
    /// The closing object (or the failure).
    Done(Result<Value, ApiError>),
}

impl Infill {
    async fn next(&mut self) -> Step {
        let event = match (self.time_limit, self.first_token) {
            // The time limit counts from the first token and ends a finished line only.
            (Some(limit), Some(first)) if self.content.contains('\n') => {
                let left = limit.saturating_sub(first.elapsed());
                match tokio::time::timeout(left, self.rx.recv()).await {
                    Ok(event) => event,
                    Err(_) => {
                        // The engine's count is not in yet: the pieces seen stand for it.
                        let seen = self.pieces;
                        return Step::Done(Ok(self.summary("limit", None, seen, 0)));
                    }
                }
            }
            _ => self.rx.recv().await,
        };
        match event {
            Some(ChoiceEvent::Delta { text, .. }) => {
                self.first_token.get_or_insert_with(Instant::now);
                self.pieces += 1;
                self.content.push_str(&text);
                Step::Text(text)
            }
            Some(ChoiceEvent::Finish {
                reason,
                completion_tokens,
                cached_tokens,
                stop_string,
                ..
            }) => {
                let stop_type = match (reason, &stop_string) {
                    ("length", _) => "limit",
                    (_, Some(_)) => "word",
                    _ => "eos",
                };
                Step::Done(Ok(self.summary(
                    stop_type,
                    stop_string,
                    completion_tokens,
                    cached_tokens,
                )))
            }
            Some(ChoiceEvent::Error { message, .. }) => {
                Step::Done(Err(ApiError::internal(message)))
            }
            None => Step::Done(Err(ApiError::internal("generation ended unexpectedly"))),
        }
    }

    /// llama-server's closing object; `predicted`: the tokens generated.
    fn summary(
        &self,
        stop_type: &str,
        stopping_word: Option<String>,
        predicted_n: usize,
        cached: usize,
    ) -> Value {
        let now = Instant::now();
        let first = self.first_token.unwrap_or(now);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let prompt_ms = ms(first.duration_since(self.started));
        let predicted_ms = ms(now.duration_since(first));
        json!({
            "content": self.content,
            "stop": true,
            "stop_type": stop_type,
            "stopping_word": stopping_word.unwrap_or_default(),
            "model": self.model,
            "tokens_predicted": predicted_n,
            "tokens_evaluated": self.prompt_tokens,
            "tokens_cached": cached,
            "truncated": self.truncated,
            "timings": {
                "prompt_n": self.prompt_tokens - cached.min(self.prompt_tokens),
                "prompt_ms": prompt_ms,
                "predicted_n": predicted_n,
                "predicted_ms": predicted_ms,
                "predicted_per_second": if predicted_ms > 0.0 { predicted_n as f64 * 1e3 / predicted_ms } else { 0.0 },
            },
        })
    }
}

/// `data: {"content": ..., "stop": false}` per piece, then the closing object; the stream owns
/// the receiver, so a client that goes away ends the generation.
fn stream(run: Infill) -> Response {
    let events = futures::stream::unfold(Some(run), |run| async move {
        let mut run = run?;
        let (event, next) = match run.next().await {
            Step::Text(text) => (json!({"content": text, "stop": false}), Some(run)),
            Step::Done(Ok(mut summary)) => {
                // The pieces carried the text already.
                summary["content"] = json!("");
                (summary, None)
            }
            Step::Done(Err(e)) => (e.body(), None),
        };
        let sse = Event::default().data(event.to_string());
        Some((Ok::<_, Infallible>(sse), next))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
