//! Turning choice events into OpenAI responses: one JSON object, or an SSE stream of chunks
//! ending with `data: [DONE]`. Chat and text completions differ only in object names and in
//! where text and logprobs go.
use super::answer::{AnswerReader, AnswerSetup, Released};
use super::error::ApiError;
use super::generation::{ChoiceEvent, TokenInfo};
use super::prediction::PredictionUsage;
use super::timings::{Clock, Counted};
use super::tools::call_json;
use crate::engine::scheduler::Drafts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Text,
}

pub struct Meta {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: String,
    pub prompt_tokens: usize,
    /// Choices in all, `choices_per_prompt` for each prompt in turn.
    pub n: usize,
    pub choices_per_prompt: usize,
    pub logprobs: bool,
    pub include_usage: bool,
    /// vLLM's `continuous_usage_stats` (with `include_usage`): every chunk tells the usage so
    /// far, its choice's tokens as its completion.
    pub continuous_usage: bool,
    /// Chat answers read for thinking and tool calls (`None`: plain text).
    pub answer: Option<AnswerSetup>,
    /// Since the request came, for llama-server's `timings` (the whole answer's, and with
    /// `timings_per_token` each chunk's).
    pub clock: Clock,
    pub timings_per_token: bool,
    /// vLLM's `return_token_ids`: each choice's prompt ids (a chat's one prompt, for every
    /// choice) and, with every answer, its ids. None when not asked.
    pub token_ids: Option<Vec<Arc<Vec<u32>>>>,
    /// vLLM's `return_tokens_as_token_ids`: logprobs name tokens `token_id:N`.
    pub tokens_as_ids: bool,
}

/// Tokens as logprobs name them with `return_tokens_as_token_ids` (`token_id:N`, its bytes
/// those of that name, as vLLM's), the alternatives too.
fn named_by_id(tokens: &[TokenInfo]) -> Vec<TokenInfo> {
    tokens
        .iter()
        .map(|t| {
            let text = format!("token_id:{}", t.id);
            TokenInfo {
                id: t.id,
                bytes: text.clone().into_bytes(),
                text,
                logprob: t.logprob,
                top: t.top.as_deref().map(named_by_id),
            }
        })
        .collect()
}

/// The drafts of every choice together.
fn total(drafts: &[Drafts]) -> Drafts {
    drafts.iter().fold(Drafts::default(), |sum, d| Drafts {
        drafted: sum.drafted + d.drafted,
        accepted: sum.accepted + d.accepted,
    })
}

/// Prompt tokens taken from the prefix cache: for each prompt the most of its choices' (they
/// share it), summed over the prompts (a completion of several, counted as `prompt_tokens`
/// counts them).
#[derive(Default)]
struct CachedTokens(Vec<usize>);

impl CachedTokens {
    /// Choice `index` of `meta` took `cached` tokens of its prompt from the cache.
    fn note(&mut self, meta: &Meta, index: usize, cached: usize) {
        let prompt = index / meta.choices_per_prompt.max(1);
        if self.0.len() <= prompt {
            self.0.resize(prompt + 1, 0);
        }
        self.0[prompt] = self.0[prompt].max(cached);
    }

    fn total(&self) -> usize {
        self.0.iter().sum()
    }
}

/// What the choices' ends add up to, for `usage`.
#[derive(Default)]
struct Counts {
    completion: usize,
    cached: CachedTokens,
    prediction: Option<PredictionUsage>,
    /// Each choice's speculative drafts (the last count its deltas told).
    drafts: Vec<Drafts>,
}

impl Counts {
    /// What `timings` counts for a prompt of `prompt` tokens.
    fn counted(&self, prompt: usize) -> Counted {
        Counted {
            prompt,
            cached: self.cached.total(),
            predicted: self.completion,
            drafts: total(&self.drafts),
        }
    }

    /// Choice `index` has drafted this much so far.
    fn drafted(&mut self, index: usize, drafts: Drafts) {
        if self.drafts.len() <= index {
            self.drafts.resize(index + 1, Drafts::default());
        }
        self.drafts[index] = drafts;
    }

    fn add(&mut self, completion: usize, prediction: Option<PredictionUsage>) {
        self.completion += completion;
        if let Some(p) = prediction {
            self.prediction.get_or_insert_default().add(p);
        }
    }

    fn usage(&self, prompt: usize) -> Value {
        let mut u = json!({
            "prompt_tokens": prompt, "completion_tokens": self.completion,
            "total_tokens": prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached.total()},
        });
        if let Some(p) = self.prediction {
            u["completion_tokens_details"] = json!({
                "accepted_prediction_tokens": p.accepted,
                "rejected_prediction_tokens": p.rejected,
            });
        }
        u
    }
}

/// One token's logprobs as chat (and responses) give them: text, bytes, and the top tokens.
pub fn token_logprob(t: &TokenInfo) -> Value {
    let alternative =
        |a: &TokenInfo| json!({"token": a.text, "logprob": a.logprob, "bytes": a.bytes});
    json!({
        "token": t.text,
        "logprob": t.logprob,
        "bytes": t.bytes,
        "top_logprobs": t.top.iter().flatten().map(alternative).collect::<Vec<_>>(),
    })
}

/// `tokens` as logprobs name them: by their text, or `by_id`.
fn as_named(tokens: &[TokenInfo], by_id: bool) -> std::borrow::Cow<'_, [TokenInfo]> {
    match by_id {
        true => std::borrow::Cow::Owned(named_by_id(tokens)),
        false => std::borrow::Cow::Borrowed(tokens),
    }
}

fn chat_logprobs(tokens: &[TokenInfo], by_id: bool) -> Value {
    let tokens = as_named(tokens, by_id);
    json!({"content": tokens.iter().map(token_logprob).collect::<Vec<_>>()})
}

/// `text_offset` counts the text's own bytes whatever the tokens are named.
fn text_logprobs(tokens: &[TokenInfo], offset: usize, by_id: bool) -> Value {
    let mut offsets = Vec::with_capacity(tokens.len());
    let mut at = offset;
    for t in tokens {
        offsets.push(at);
        at += t.text.len();
    }
    let tokens = as_named(tokens, by_id);
    json!({
        "tokens": tokens.iter().map(|t| &t.text).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(|t| t.top.as_ref().map(|top| top.iter().map(|a| (a.text.clone(), json!(a.logprob))).collect::<serde_json::Map<String, Value>>())).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

/// Collect every choice, then answer with one JSON object.
pub async fn complete(
    mut meta: Meta,
    mut rx: UnboundedReceiver<ChoiceEvent>,
) -> Result<Response, ApiError> {
    let mut text = vec![String::new(); meta.n];
    let mut tokens: Vec<Vec<TokenInfo>> = vec![Vec::new(); meta.n];
    let mut ids: Vec<Vec<u32>> = vec![Vec::new(); meta.n];
    let mut prompt_logprobs: Vec<Option<Value>> = vec![None; meta.n];
    let mut finish: Vec<Option<&'static str>> = vec![None; meta.n];
    let mut counts = Counts::default();
    while finish.iter().any(|f| f.is_none()) {
        match rx.recv().await {
            Some(ChoiceEvent::Delta {
                index,
                text: t,
                tokens: mut tk,
                ids: mut new_ids,
                drafts,
                ..
            }) => {
                meta.clock.token();
                counts.drafted(index, drafts);
                text[index].push_str(&t);
                tokens[index].append(&mut tk);
                ids[index].append(&mut new_ids);
            }
            Some(ChoiceEvent::Finish {
                index,
                reason,
                completion_tokens,
                cached_tokens,
                prediction,
                drafts,
                ids: mut last_ids,
                prompt_logprobs: scores,
                ..
            }) => {
                counts.drafted(index, drafts);
                ids[index].append(&mut last_ids);
                prompt_logprobs[index] = scores;
                finish[index] = Some(reason);
                counts.cached.note(&meta, index, cached_tokens);
                counts.add(completion_tokens, prediction);
            }
            Some(ChoiceEvent::Error { message, .. }) => return Err(ApiError::internal(message)),
            // Told in a stream only.
            Some(ChoiceEvent::Progress { .. }) => {}
            None => return Err(ApiError::internal("generation ended unexpectedly")),
        }
    }
    let choices: Vec<Value> = (0..meta.n)
        .map(|i| {
            let lp = if meta.logprobs {
                match meta.kind {
                    Kind::Chat => chat_logprobs(&tokens[i], meta.tokens_as_ids),
                    Kind::Text => text_logprobs(&tokens[i], 0, meta.tokens_as_ids),
                }
            } else {
                Value::Null
            };
            let mut choice = match (meta.kind, &meta.answer) {
                (Kind::Chat, None) => json!({"index": i, "message": {"role": "assistant", "content": text[i]}, "logprobs": lp, "finish_reason": finish[i]}),
                (Kind::Chat, Some(setup)) => {
                    let mut reader = AnswerReader::new(setup);
                    let answer = reader.read_all(&text[i]);
                    let reason = finish[i].map(|r| reader.finish_reason(r));
                    let message = answer_message(answer, setup.reasoning.is_some());
                    json!({"index": i, "message": message, "logprobs": lp, "finish_reason": reason})
                }
                (Kind::Text, _) => json!({"index": i, "text": text[i], "logprobs": lp, "finish_reason": finish[i]}),
            };
            if let Some(prompts) = &meta.token_ids {
                if meta.kind == Kind::Text {
                    choice["prompt_token_ids"] = json!(prompts.get(i).map(|p| p.as_slice()));
                }
                choice["token_ids"] = json!(ids[i]);
            }
            if let (Kind::Text, Some(scores)) = (meta.kind, &mut prompt_logprobs[i]) {
                choice["prompt_logprobs"] = std::mem::take(scores);
            }
            choice
        })
        .collect();
    let object = match meta.kind {
        Kind::Chat => "chat.completion",
        Kind::Text => "text_completion",
    };
    let mut answer = json!({
        "id": meta.id, "object": object, "created": meta.created, "model": meta.model,
        "system_fingerprint": meta.system_fingerprint,
        "choices": choices, "usage": counts.usage(meta.prompt_tokens),
        "timings": meta.clock.timings(counts.counted(meta.prompt_tokens)),
    });
    if let (Kind::Chat, Some(prompts)) = (meta.kind, &meta.token_ids) {
        answer["prompt_token_ids"] = json!(prompts.first().map(|p| p.as_slice()));
    }
    // A chat's choices share its prompt: its scores once, at the top, as vLLM's.
    if let (Kind::Chat, Some(Some(scores))) = (meta.kind, prompt_logprobs.first_mut()) {
        answer["prompt_logprobs"] = std::mem::take(scores);
    }
    Ok(axum::Json(answer).into_response())
}

/// An assistant message read for thinking and calls: `content` is null when the answer is
/// only calls; `reasoning_content` is there for thinking models (null without a thought).
fn answer_message(answer: Released, thinking_model: bool) -> Value {
    let mut message = json!({"role": "assistant", "content": answer.content});
    if thinking_model {
        let reasoning = Some(answer.reasoning).filter(|r| !r.is_empty());
        message["reasoning_content"] = json!(reasoning);
    }
    if !answer.calls.is_empty() {
        if message["content"]
            .as_str()
            .is_some_and(|c| c.trim().is_empty())
        {
            message["content"] = Value::Null;
        }
        let calls: Vec<Value> = answer
            .calls
            .iter()
            .map(|(_, c)| call_json(c, None))
            .collect();
        message["tool_calls"] = json!(calls);
    }
    message
}

/// Stream deltas for what a reader released: thinking, then content, then one delta per call.
fn answer_deltas(released: Released) -> Vec<Value> {
    let mut deltas = Vec::new();
    if !released.reasoning.is_empty() {
        deltas.push(json!({"reasoning_content": released.reasoning}));
    }
    if !released.content.is_empty() {
        deltas.push(json!({"content": released.content}));
    }
    for (index, call) in &released.calls {
        deltas.push(json!({"tool_calls": [call_json(call, Some(*index))]}));
    }
    deltas
}

/// A stream chunk's common fields around `choices`.
fn chunk_object(meta: &Meta, choices: Vec<Value>) -> Value {
    let object = match meta.kind {
        Kind::Chat => "chat.completion.chunk",
        Kind::Text => "text_completion",
    };
    json!({"id": meta.id, "object": object, "created": meta.created, "model": meta.model,
           "system_fingerprint": meta.system_fingerprint, "choices": choices})
}

fn chunk(
    meta: &Meta,
    choices: Vec<Value>,
    usage_value: Option<Value>,
    timings: Option<Value>,
) -> Event {
    chunk_event(meta, chunk_object(meta, choices), usage_value, timings)
}

/// A chunk's event, its usage (null until the last with `include_usage`) and timings added.
fn chunk_event(
    meta: &Meta,
    mut v: Value,
    usage_value: Option<Value>,
    timings: Option<Value>,
) -> Event {
    if let Some(u) = usage_value {
        v["usage"] = u;
    } else if meta.include_usage {
        v["usage"] = Value::Null;
    }
    if let Some(t) = timings {
        v["timings"] = t;
    }
    Event::default().data(v.to_string())
}

/// llama-server's `prompt_progress` chunk: no choices, the prompt's progress.
fn progress_chunk(meta: &Meta, progress: Value) -> Event {
    let mut v = chunk_object(meta, Vec::new());
    v["prompt_progress"] = progress;
    Event::default().data(v.to_string())
}

/// A typed event (`{"type": ...}`, the Responses and Messages APIs) as an SSE event named
/// after its type.
pub fn typed_event(event: &Value) -> Event {
    let name = event["type"].as_str().unwrap_or("message");
    Event::default().event(name).data(event.to_string())
}

/// Answer with an SSE stream. The stream owns the receiver: when the client goes away, axum
/// drops the stream, the receiver, and with it the generation.
pub fn stream(meta: Meta, rx: UnboundedReceiver<ChoiceEvent>) -> Response {
    let s = async_stream(meta, rx);
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}

fn async_stream(
    meta: Meta,
    rx: UnboundedReceiver<ChoiceEvent>,
) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    struct St {
        meta: Meta,
        rx: UnboundedReceiver<ChoiceEvent>,
        started: bool,
        finished: usize,
        counts: Counts,
        /// Each choice's tokens so far, and the prompt's from the prefix cache.
        generated: Vec<usize>,
        cached: CachedTokens,
        offsets: Vec<usize>,
        /// Per choice, when the answers are read for thinking or tool calls.
        readers: Vec<Option<AnswerReader>>,
        /// Per text choice, whether a chunk told its prompt's ids (`return_token_ids`).
        prompt_told: Vec<bool>,
        done: bool,
        queue: std::collections::VecDeque<Event>,
    }
    impl St {
        /// The usage a chunk tells with `continuous_usage_stats`: the prompt's and the
        /// `completion` tokens of its choice so far, as vLLM counts them.
        fn usage_so_far(&self, completion: usize) -> Value {
            let prompt = self.meta.prompt_tokens;
            json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
        }

        /// With `return_token_ids`, a text choice's chunk carries the ids of its tokens, and
        /// its first chunk its prompt's.
        fn tell_ids(&mut self, choice: &mut Value, index: usize, ids: Vec<u32>) {
            let Some(prompts) = &self.meta.token_ids else {
                return;
            };
            if !std::mem::replace(&mut self.prompt_told[index], true) {
                choice["prompt_token_ids"] = json!(prompts.get(index).map(|p| p.as_slice()));
            }
            choice["token_ids"] = json!(ids);
        }

        /// What the timings count so far.
        fn progress(&self) -> Counted {
            Counted {
                prompt: self.meta.prompt_tokens,
                cached: self.cached.total(),
                predicted: self.generated.iter().sum(),
                drafts: total(&self.counts.drafts),
            }
        }
    }
    let n = meta.n;
    let readers = (0..n)
        .map(|_| meta.answer.as_ref().map(AnswerReader::new))
        .collect();
    let st = St {
        meta,
        rx,
        started: false,
        finished: 0,
        counts: Counts::default(),
        generated: vec![0; n],
        cached: CachedTokens::default(),
        offsets: vec![0; n],
        readers,
        prompt_told: vec![false; n],
        done: false,
        queue: Default::default(),
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.queue.pop_front() {
                return Some((Ok(e), st));
            }
            if st.done {
                return None;
            }
            if !st.started && st.meta.kind == Kind::Chat {
                st.started = true;
                let first: Vec<Value> = (0..st.meta.n)
                    .map(|i| json!({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}))
                    .collect();
                let mut v = chunk_object(&st.meta, first);
                // A chat's prompt ids go in the first chunk only, as vLLM's.
                if let Some(prompts) = &st.meta.token_ids {
                    v["prompt_token_ids"] = json!(prompts.first().map(|p| p.as_slice()));
                }
                let usage = st.meta.continuous_usage.then(|| st.usage_so_far(0));
                st.queue.push_back(chunk_event(&st.meta, v, usage, None));
                continue;
            }
            if st.finished == st.meta.n {
                if st.meta.include_usage {
                    let u = st.counts.usage(st.meta.prompt_tokens);
                    let timings = st.meta.clock.timings(st.progress());
                    st.queue
                        .push_back(chunk(&st.meta, Vec::new(), Some(u), Some(timings)));
                }
                st.queue.push_back(Event::default().data("[DONE]"));
                st.done = true;
                continue;
            }
            let ev = match st.rx.recv().await {
                Some(ev) => ev,
                None => {
                    st.queue.push_back(Event::default().data(json!({"error": {"message": "generation ended unexpectedly", "type": "server_error", "param": null, "code": null}}).to_string()));
                    st.done = true;
                    continue;
                }
            };
            match &ev {
                ChoiceEvent::Delta {
                    index,
                    generated,
                    cached_tokens,
                    drafts,
                    ..
                } => {
                    st.meta.clock.token();
                    st.counts.drafted(*index, *drafts);
                    st.generated[*index] = *generated;
                    st.cached.note(&st.meta, *index, *cached_tokens);
                }
                ChoiceEvent::Finish {
                    index,
                    completion_tokens,
                    cached_tokens,
                    drafts,
                    ..
                } => {
                    st.counts.drafted(*index, *drafts);
                    st.generated[*index] = *completion_tokens;
                    st.cached.note(&st.meta, *index, *cached_tokens);
                }
                ChoiceEvent::Error { .. } | ChoiceEvent::Progress { .. } => {}
            }
            // The answer's last chunk carries the timings, each chunk with `timings_per_token`.
            let last = matches!(ev, ChoiceEvent::Finish { .. })
                && st.finished + 1 == st.meta.n
                && !st.meta.include_usage;
            let choices: Vec<Value> = match (ev, st.meta.kind) {
                (
                    ChoiceEvent::Delta {
                        index,
                        text,
                        tokens,
                        ids,
                        ..
                    },
                    Kind::Chat,
                ) => {
                    let mut lp = if st.meta.logprobs {
                        chat_logprobs(&tokens, st.meta.tokens_as_ids)
                    } else {
                        Value::Null
                    };
                    let deltas = match &mut st.readers[index] {
                        Some(reader) => answer_deltas(reader.push(&text)),
                        None => vec![json!({"content": text})],
                    };
                    let mut ids = st.meta.token_ids.as_ref().map(|_| ids);
                    // Tokens held inside a call still report their logprobs and ids.
                    let held = !lp.is_null() || ids.as_ref().is_some_and(|ids| !ids.is_empty());
                    let deltas = if deltas.is_empty() && held {
                        vec![json!({})]
                    } else {
                        deltas
                    };
                    deltas
                        .into_iter()
                        .map(|delta| {
                            let lp = std::mem::take(&mut lp);
                            let mut choice = json!({"index": index, "delta": delta, "logprobs": lp, "finish_reason": null});
                            if let Some(ids) = &mut ids {
                                choice["token_ids"] = json!(std::mem::take(ids));
                            }
                            choice
                        })
                        .collect()
                }
                (
                    ChoiceEvent::Delta {
                        index,
                        text,
                        tokens,
                        ids,
                        ..
                    },
                    Kind::Text,
                ) => {
                    let lp = if st.meta.logprobs {
                        text_logprobs(&tokens, st.offsets[index], st.meta.tokens_as_ids)
                    } else {
                        Value::Null
                    };
                    st.offsets[index] += text.len();
                    let mut choice = json!({"index": index, "text": text, "logprobs": lp, "finish_reason": null});
                    st.tell_ids(&mut choice, index, ids);
                    vec![choice]
                }
                (
                    ChoiceEvent::Finish {
                        index,
                        reason,
                        completion_tokens,
                        cached_tokens,
                        prediction,
                        ids,
                        ..
                    },
                    kind,
                ) => {
                    st.finished += 1;
                    st.counts.cached.note(&st.meta, index, cached_tokens);
                    st.counts.add(completion_tokens, prediction);
                    match kind {
                        Kind::Chat => {
                            let (rest, reason) = match &mut st.readers[index] {
                                Some(reader) => {
                                    (answer_deltas(reader.finish()), reader.finish_reason(reason))
                                }
                                None => (Vec::new(), reason),
                            };
                            let asked = st.meta.token_ids.is_some();
                            let mut choices: Vec<Value> = rest
                                .into_iter()
                                .map(|delta| {
                                    let mut choice = json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": null});
                                    if asked {
                                        choice["token_ids"] = json!([]);
                                    }
                                    choice
                                })
                                .collect();
                            let mut last = json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": reason});
                            if asked {
                                last["token_ids"] = json!(ids);
                            }
                            choices.push(last);
                            choices
                        }
                        Kind::Text => {
                            let mut choice = json!({"index": index, "text": "", "logprobs": null, "finish_reason": reason});
                            st.tell_ids(&mut choice, index, ids);
                            vec![choice]
                        }
                    }
                }
                (
                    ChoiceEvent::Progress {
                        processed,
                        cached,
                        total,
                        ..
                    },
                    _,
                ) => {
                    // A chunk of its own, with no choices (as usage's), before any token.
                    let progress = st.meta.clock.progress(processed, cached, total);
                    st.queue.push_back(progress_chunk(&st.meta, progress));
                    continue;
                }
                (ChoiceEvent::Error { message, .. }, _) => {
                    // Headers are sent already: report in-band, as OpenAI-compatible servers do.
                    st.queue.push_back(Event::default().data(json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}}).to_string()));
                    st.done = true;
                    continue;
                }
            };
            let count = choices.len();
            for (i, choice) in choices.into_iter().enumerate() {
                let timed = st.meta.timings_per_token || (last && i + 1 == count);
                let timings = timed.then(|| st.meta.clock.timings(st.progress()));
                let usage = st.meta.continuous_usage.then(|| {
                    let index = choice["index"].as_u64().unwrap_or(0) as usize;
                    st.usage_so_far(st.generated.get(index).copied().unwrap_or(0))
                });
                st.queue
                    .push_back(chunk(&st.meta, vec![choice], usage, timings));
            }
        }
    })
}
