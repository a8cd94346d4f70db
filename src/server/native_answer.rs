//! llama-server's native endpoints (`/completion`, `/infill`): their sampling fields under
//! llama.cpp's names, and their answer: `content`, `stop_type`
//! (`eos`, `limit`, `word`), `tokens_predicted`, `tokens_evaluated`, `tokens_cached`,
//! `truncated`, `timings`, the tokens' ids (`return_tokens`) and their probabilities
//! (`n_probs`: `completion_probabilities`); whole, or streamed as
//! `data: {"content": ..., "stop": false}` lines and the closing object. `t_max_predict_ms`
//! ends an answer at a finished line once that long has passed since its first token, as
//! llama-server bounds an editor's wait; `n_indent` ends it before a later line that starts
//! less indented, so an editor's fill stays in its block.
use super::error::ApiError;
use super::generation::{ChoiceEvent, TokenInfo};
use super::openai::{CommonParams, Dialect, LlamaSamplers, Stop};
use super::routes::completions::start_text;
use super::state::SharedState;
use super::timings::{Clock, Counted};
use super::validate::Limits;
use crate::engine::scheduler::Drafts;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

/// The generation fields both endpoints take.
#[derive(Debug, Clone, Deserialize)]
pub struct NativeSampling {
    pub model: Option<String>,
    /// Tokens to generate; -1 (or none): the server's default; 0: none, the prompt only
    /// computed into the cache.
    pub n_predict: Option<i64>,
    pub temperature: Option<f64>,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    pub min_p: Option<f64>,
    pub repeat_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// -1: random.
    pub seed: Option<i64>,
    pub stop: Option<Vec<String>>,
    #[serde(default)]
    pub ignore_eos: bool,
    #[serde(default)]
    pub stream: bool,
    /// GBNF or lark, and a JSON schema (`guide.rs`).
    pub grammar: Option<String>,
    pub json_schema: Option<Value>,
    pub t_max_predict_ms: Option<u64>,
    /// Least indentation (spaces and tabs) of the answer's lines after its first: the answer
    /// ends before the first that has less (llama.vim sends the cursor line's).
    pub n_indent: Option<i64>,
    /// The most likely tokens listed at each generated token, with their log-probabilities
    /// (`completion_probabilities`); 0: none.
    pub n_probs: Option<i64>,
    /// The generated tokens' ids in `tokens`.
    #[serde(default)]
    pub return_tokens: bool,
    /// llama-server's forms or OpenAI's (`server::logit_bias`).
    pub logit_bias: Option<super::logit_bias::LogitBias>,
    /// Each streamed piece carries `timings` so far (the closing object always does).
    #[serde(default)]
    pub timings_per_token: bool,
    /// A stream tells the prompt's progress first (`prompt_progress` pieces).
    #[serde(default)]
    pub return_progress: bool,
    /// `completion_probabilities` shows the probabilities each token was drawn with, after
    /// every sampler (`prob`, `top_probs`), instead of the model's log-probabilities.
    #[serde(default)]
    pub post_sampling_probs: bool,
    /// Only these fields of the closing object, by path (`timings/prompt_n`), each under its
    /// path as a flat key, as llama-server answers (llama.vim reads them so).
    pub response_fields: Option<Vec<String>>,
    #[serde(flatten)]
    pub samplers: LlamaSamplers,
}

impl NativeSampling {
    /// The tokens to generate; as many as the context is long is the client's error.
    pub fn max_new(&self, limits: &Limits) -> Result<usize, ApiError> {
        let n = match self.n_predict {
            Some(n) if n >= 0 => n as usize,
            _ => limits.default_max_tokens,
        };
        if n >= limits.context {
            return Err(ApiError::invalid(
                "n_predict",
                format!(
                    "`n_predict` is {n}; the context is {} tokens",
                    limits.context
                ),
            ));
        }
        Ok(n)
    }

    /// The same request in the OpenAI fields the rest of the server reads.
    pub fn common(&self, max_new: usize) -> CommonParams {
        CommonParams {
            model: self.model.clone(),
            max_tokens: Some(max_new as i64),
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed.filter(|s| *s >= 0),
            stop: self.stop.clone().map(Stop::Many),
            ignore_eos: self.ignore_eos,
            stream: self.stream,
            grammar: self.grammar.clone(),
            json_schema: self.json_schema.clone(),
            samplers: self.samplers.clone(),
            dialect: Dialect::LlamaServer,
            logprobs_after_sampling: self.post_sampling_probs,
            logit_bias: self.logit_bias.clone(),
            return_progress: self.return_progress,
            ..CommonParams::default()
        }
    }

    /// What the answer shows of its tokens, and so how many alternatives the engine scores
    /// at each (none but the token itself where only the ids are wanted).
    pub fn shown(&self, limits: &Limits) -> Result<Shown, ApiError> {
        let n_probs = match self.n_probs {
            None => 0,
            Some(n) if n >= 0 && n as u64 <= limits.max_logprobs as u64 => n as usize,
            Some(n) => {
                return Err(ApiError::invalid(
                    "n_probs",
                    format!("`n_probs` must be in [0, {}], got {n}", limits.max_logprobs),
                ))
            }
        };
        Ok(Shown {
            n_probs,
            after_sampling: self.post_sampling_probs,
            ids: self.return_tokens,
            fields: self.response_fields.clone(),
            timings_per_token: self.timings_per_token,
        })
    }

    /// Where an answer ends besides its tokens: `t_max_predict_ms`, `n_indent`.
    pub fn ends(&self) -> Ends {
        Ends {
            time_limit: self.t_max_predict_ms.map(Duration::from_millis),
            n_indent: self.n_indent.map_or(0, |n| n.max(0) as usize),
        }
    }
}

/// What an answer shows of its tokens, and of its closing object.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    /// Alternatives listed per token in `completion_probabilities` (0: no list).
    pub n_probs: usize,
    /// They are the probabilities after sampling (`prob`, `top_probs`), not logprobs.
    pub after_sampling: bool,
    /// The ids in `tokens`.
    pub ids: bool,
    /// `response_fields`: the closing object's fields shown, by path.
    pub fields: Option<Vec<String>>,
    /// Each streamed piece carries the timings so far.
    pub timings_per_token: bool,
}

impl Shown {
    /// The alternatives the engine scores at each token, if it scores them at all.
    fn logprobs(&self) -> Option<usize> {
        (self.n_probs > 0 || self.ids).then_some(self.n_probs)
    }

    /// The closing object, or with `response_fields` the value at each path that has one,
    /// under the path (`{"timings/prompt_n": 12}`).
    fn closing(&self, object: Value) -> Value {
        let Some(paths) = &self.fields else {
            return object;
        };
        let found = paths.iter().filter_map(|path| {
            let value = path
                .split('/')
                .try_fold(&object, |at, key| at.as_object()?.get(key))?;
            Some((path.clone(), value.clone()))
        });
        Value::Object(found.collect())
    }
}

/// One token as `completion_probabilities` lists it (and its alternatives, without theirs):
/// `token` is the text of its bytes up to an incomplete character, as llama-server has it;
/// its `logprob` and `top_logprobs`, or after sampling its `prob` and `top_probs`.
fn probability(t: &TokenInfo, after_sampling: bool) -> Value {
    let valid = match std::str::from_utf8(&t.bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&t.bytes[..e.valid_up_to()]).unwrap_or_default(),
    };
    let mut entry = json!({"id": t.id, "token": valid, "bytes": t.bytes});
    let (value, top) = if after_sampling {
        (json!(t.logprob.map(f32::exp)), "top_probs")
    } else {
        (json!(t.logprob), "top_logprobs")
    };
    entry[if after_sampling { "prob" } else { "logprob" }] = value;
    if let Some(alternatives) = &t.top {
        let listed = alternatives.iter().map(|a| probability(a, after_sampling));
        entry[top] = listed.collect();
    }
    entry
}

/// Where an answer ends besides its tokens and stop strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ends {
    /// At a finished line once this long has passed since the first token.
    pub time_limit: Option<Duration>,
    /// Before a line after the first that starts with fewer spaces and tabs (0: off).
    pub n_indent: usize,
}

/// Where `content` must end under `n_indent`: at the first non-blank character of a line after
/// the first whose indentation (spaces and tabs) is less, looking from `from` (lines before it
/// were checked already). Blank lines do not end an answer (llama-server, which looks once per
/// token, also stops at some). Returns the cut, or where to look from next time.
fn indent_cut(content: &str, from: usize, n_indent: usize) -> Result<usize, usize> {
    let bytes = content.as_bytes();
    let mut at = from;
    while let Some(nl) = content[at..].find('\n').map(|i| at + i) {
        let start = nl + 1;
        let indent = bytes[start..]
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        match bytes.get(start + indent) {
            // The line's first character has not come yet: look again from its start.
            None => return Err(nl),
            Some(b'\n') => at = start,
            Some(_) if indent < n_indent => return Ok(start + indent),
            Some(_) => at = start,
        }
    }
    Err(at)
}

/// llama.cpp's names for the fields the plan checks.
const FIELD_NAMES: [(&str, &str); 2] = [
    ("max_tokens", "n_predict"),
    ("repetition_penalty", "repeat_penalty"),
];

/// Run a prompt of `ids` (cut to fit when `truncated`) as `sampling` asks, and answer in
/// llama-server's shape.
pub async fn answer(
    state: &SharedState,
    sampling: &NativeSampling,
    ids: Vec<u32>,
    truncated: bool,
    max_new: usize,
    id_prefix: &str,
) -> Result<Response, ApiError> {
    let run = start(state, sampling, ids, truncated, max_new, id_prefix, 0).await?;
    if sampling.stream {
        Ok(sse(events(run)))
    } else {
        Ok(axum::Json(run.finish().await?).into_response())
    }
}

/// Run each of `prompts` as `sampling` asks (`/completion` with a list of prompts), and
/// answer as llama-server does: their closing objects in a list, or one stream of all their
/// pieces, each object naming its prompt's `index`. Every prompt is queued before any answer
/// is awaited, so they run side by side.
pub async fn answer_each(
    state: &SharedState,
    sampling: &NativeSampling,
    prompts: Vec<Vec<u32>>,
    max_new: usize,
    id_prefix: &str,
) -> Result<Response, ApiError> {
    let mut runs = Vec::with_capacity(prompts.len());
    for (index, ids) in prompts.into_iter().enumerate() {
        runs.push(start(state, sampling, ids, false, max_new, id_prefix, index).await?);
    }
    if sampling.stream {
        let all = futures::stream::select_all(runs.into_iter().map(|run| Box::pin(events(run))));
        return Ok(sse(all));
    }
    let answers = futures::future::try_join_all(runs.into_iter().map(NativeRun::finish)).await?;
    Ok(axum::Json(answers).into_response())
}

/// Queue one prompt, answered as prompt `index` of the request.
async fn start(
    state: &SharedState,
    sampling: &NativeSampling,
    ids: Vec<u32>,
    truncated: bool,
    max_new: usize,
    id_prefix: &str,
    index: usize,
) -> Result<NativeRun, ApiError> {
    let common = sampling.common(max_new);
    let shown = sampling.shown(&state.ready()?.limits)?;
    let prompt_tokens = ids.len();
    let id = crate::server::request_id::answer_id(id_prefix);
    let (rx, _) = start_text(state, &common, ids, None, shown.logprobs(), &id)
        .await
        .map_err(|e| e.renamed(&FIELD_NAMES))?;
    let model = state.answering_model(common.model.as_deref());
    let run = NativeRun::new(rx, model, prompt_tokens, truncated, sampling.ends());
    Ok(run.showing(shown).answering(index))
}

pub struct NativeRun {
    rx: UnboundedReceiver<ChoiceEvent>,
    model: String,
    prompt_tokens: usize,
    truncated: bool,
    ends: Ends,
    /// Where `n_indent` looks for the next new line in `content`.
    indent_from: usize,
    clock: Clock,
    /// Pieces of text received (about a token each).
    pieces: usize,
    /// Tokens generated so far, the prompt's from the prefix cache and the drafts, as the
    /// pieces said.
    generated: usize,
    cached: usize,
    drafts: Drafts,
    content: String,
    shown: Shown,
    /// Tokens not yet shown: a stream shows them with each piece, a whole answer at its end.
    tokens: Vec<TokenInfo>,
    /// The prompt's place in the request (`index` of each object sent).
    index: usize,
}

impl NativeRun {
    /// `truncated`: whether the prompt was cut to fit.
    pub fn new(
        rx: UnboundedReceiver<ChoiceEvent>,
        model: String,
        prompt_tokens: usize,
        truncated: bool,
        ends: Ends,
    ) -> Self {
        NativeRun {
            rx,
            model,
            prompt_tokens,
            truncated,
            ends,
            indent_from: 0,
            clock: Clock::start(),
            pieces: 0,
            generated: 0,
            cached: 0,
            drafts: Drafts::default(),
            content: String::new(),
            shown: Shown::default(),
            tokens: Vec::new(),
            index: 0,
        }
    }

    /// Answer as prompt `index` of the request.
    pub fn answering(mut self, index: usize) -> Self {
        self.index = index;
        self
    }

    /// Show the tokens' ids or probabilities as `shown` says (the engine must score them:
    /// `Shown::logprobs`).
    pub fn showing(mut self, shown: Shown) -> Self {
        self.shown = shown;
        self
    }

    /// The tokens received since the last call, as `tokens` and `completion_probabilities`
    /// set on `object` (`tokens` always, empty unless asked for, as llama-server sends it).
    fn show_tokens(&mut self, object: &mut Value) {
        let tokens = std::mem::take(&mut self.tokens);
        let ids: Vec<u32> = if self.shown.ids {
            tokens.iter().map(|t| t.id).collect()
        } else {
            Vec::new()
        };
        object["tokens"] = json!(ids);
        if self.shown.n_probs > 0 {
            let listed = tokens
                .iter()
                .map(|t| probability(t, self.shown.after_sampling));
            object["completion_probabilities"] = listed.collect();
        }
    }

    /// Run to the end: the closing object.
    pub async fn finish(mut self) -> Result<Value, ApiError> {
        loop {
            match self.next().await {
                Step::Done(summary) => {
                    let mut summary = summary?;
                    self.show_tokens(&mut summary);
                    return Ok(self.shown.closing(summary));
                }
                Step::Last(_, mut summary) => {
                    self.show_tokens(&mut summary);
                    return Ok(self.shown.closing(summary));
                }
                Step::Text(_) | Step::Progress(_) => {}
            }
        }
    }
}

enum Step {
    Text(String),
    /// The prompt's progress (`prompt_progress`), before any text.
    Progress(Value),
    /// The last text, and the closing object (`n_indent` cut the answer there).
    Last(String, Value),
    /// The closing object (or the failure).
    Done(Result<Value, ApiError>),
}

impl NativeRun {
    async fn next(&mut self) -> Step {
        let event = match (self.ends.time_limit, self.clock.first_token()) {
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
            Some(ChoiceEvent::Delta {
                text,
                tokens,
                generated,
                cached_tokens,
                drafts,
                ..
            }) => {
                self.clock.token();
                self.pieces += 1;
                (self.generated, self.cached, self.drafts) = (generated, cached_tokens, drafts);
                self.tokens.extend(tokens);
                let before = self.content.len();
                self.content.push_str(&text);
                if self.ends.n_indent > 0 {
                    match indent_cut(&self.content, self.indent_from, self.ends.n_indent) {
                        Err(from) => self.indent_from = from,
                        Ok(cut) => {
                            // The line that starts too far left came with this text. Dropping
                            // the receiver (with `self`) ends the generation.
                            self.content.truncate(cut);
                            let kept = self.content[before.min(cut)..].to_string();
                            let seen = self.pieces;
                            return Step::Last(kept, self.summary("limit", None, seen, 0));
                        }
                    }
                }
                Step::Text(text)
            }
            Some(ChoiceEvent::Finish {
                reason,
                completion_tokens,
                cached_tokens,
                stop_string,
                drafts,
                ..
            }) => {
                self.drafts = drafts;
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
            Some(ChoiceEvent::Progress {
                processed,
                cached,
                total,
                ..
            }) => Step::Progress(self.clock.progress(processed, cached, total)),
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
        let counted = Counted {
            prompt: self.prompt_tokens,
            cached,
            predicted: predicted_n,
            drafts: self.drafts,
        };
        json!({
            "index": self.index,
            "content": self.content,
            "stop": true,
            "stop_type": stop_type,
            "stopping_word": stopping_word.unwrap_or_default(),
            // Editor plugins read it to tell a one-line fill from a block.
            "has_new_line": self.content.contains('\n'),
            "model": self.model,
            "tokens_predicted": predicted_n,
            "tokens_evaluated": self.prompt_tokens,
            "tokens_cached": cached,
            "truncated": self.truncated,
            "timings": self.clock.timings(counted),
        })
    }

    /// The timings so far, as the pieces counted them.
    fn timings_now(&self) -> Value {
        self.clock.timings(Counted {
            prompt: self.prompt_tokens,
            cached: self.cached,
            predicted: self.generated,
            drafts: self.drafts,
        })
    }
}

/// `{"content": ..., "stop": false}` per piece, then the closing object; the stream owns the
/// receiver, so a client that goes away ends the generation.
fn events(run: NativeRun) -> impl futures::Stream<Item = Value> {
    futures::stream::unfold(Some(run), |run| async move {
        let mut run = run?;
        let (event, next) = match run.next().await {
            Step::Text(text) => {
                let mut piece = json!({"index": run.index, "content": text, "stop": false});
                run.show_tokens(&mut piece);
                if run.shown.timings_per_token {
                    piece["timings"] = run.timings_now();
                }
                (piece, Some(run))
            }
            Step::Progress(progress) => {
                let piece = json!({"index": run.index, "content": "", "tokens": [],
                                   "stop": false, "prompt_progress": progress});
                (piece, Some(run))
            }
            Step::Last(text, mut summary) => {
                // The last text rides in the closing object.
                summary["content"] = json!(text);
                run.show_tokens(&mut summary);
                (run.shown.closing(summary), None)
            }
            Step::Done(Ok(mut summary)) => {
                // The pieces carried the text already.
                summary["content"] = json!("");
                run.show_tokens(&mut summary);
                (run.shown.closing(summary), None)
            }
            Step::Done(Err(e)) => (e.body(), None),
        };
        Some((event, next))
    })
}

/// Objects sent as server-sent events, `data: {...}` each.
/// Server-sent events of JSON objects, kept alive while the answer is quiet.
pub fn sse(events: impl futures::Stream<Item = Value> + Send + 'static) -> Response {
    let events = events.map(|event| Ok::<_, Infallible>(Event::default().data(event.to_string())));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::indent_cut;

    #[test]
    fn a_later_line_less_indented_ends_the_answer_before_its_text() {
        let body = "a + b\n    return x\n\n        return y\nprint(1)\n";
        let cut = indent_cut(body, 0, 4).unwrap();
        assert_eq!(&body[..cut], "a + b\n    return x\n\n        return y\n");
        // A tab counts as one, as llama-server counts it.
        assert_eq!(indent_cut("x\n\ty", 0, 2), Ok(3));
        // The first line is never checked; blank lines pass.
        assert_eq!(indent_cut("x = 1\n\n  ", 0, 4), Err(6));
        // A line whose first character has not come yet is looked at again.
        let from = indent_cut("x\n  ", 0, 4).unwrap_err();
        assert_eq!(from, 1);
        assert_eq!(indent_cut("x\n    y", from, 4), Err(2));
        assert_eq!(indent_cut("x\n  y", from, 4), Ok(4));
    }
}
