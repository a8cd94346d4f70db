//! Runs the `n` choices of one request through the engine and turns token events into text:
//! streaming detokenization, stop strings matched across token boundaries (never emitted), and
//! logprobs. Dropping the returned receiver (client gone) ends the driver tasks, which drops
//! their engine channels, which frees the sequences' KV blocks at the next engine step.
use super::error::ApiError;
use super::marker::held_back;
use super::prediction::PredictionUsage;
use super::prompt_logprobs::PromptScores;
use super::state::Ready;
use super::validate::Plan;
use crate::engine::generate::FinishReason;
use crate::engine::grammar::Constraint;
use crate::engine::infill::Infill;
use crate::engine::scheduler::{Drafts, EngineEvent, EngineRequest, TokenLogprobs};
use crate::engine::thought::Thought;
use candor_models::tokenizer::{StreamDecoder, Tokenizer};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One token with its logprobs: its id, its text, and its bytes (a token holding part of a
/// UTF-8 character has text that cannot show it; its bytes can, and a client joins them). An
/// echoed prompt's first token has no logprob (null), as nothing comes before it.
#[derive(Debug, Clone, Default)]
pub struct TokenInfo {
    pub id: u32,
    pub text: String,
    pub bytes: Vec<u8>,
    pub logprob: Option<f32>,
    /// The most likely tokens at its place (`logprob` always set on them, `top` never).
    pub top: Option<Vec<TokenInfo>>,
}

impl TokenInfo {
    /// Token `id` of `tok`, with no logprob.
    pub fn of(tok: &Tokenizer, id: u32) -> Self {
        TokenInfo {
            id,
            text: tok.decode_fragment(&[id], false).unwrap_or_default(),
            bytes: tok
                .token_bytes()
                .get(id as usize)
                .map(|t| t.bytes.clone())
                .unwrap_or_default(),
            logprob: None,
            top: None,
        }
    }
}

/// One prompt of a request: its tokens, and with `echo` the text that starts each of its
/// choices (their logprobs then start with the prompt tokens', which the engine scores).
#[derive(Debug, Clone)]
pub struct PromptIn {
    pub ids: Vec<u32>,
    pub echo: Option<String>,
}

impl PromptIn {
    pub fn plain(ids: Vec<u32>) -> Self {
        PromptIn { ids, echo: None }
    }
}

#[derive(Debug, Clone)]
pub enum ChoiceEvent {
    Delta {
        index: usize,
        text: String,
        tokens: Vec<TokenInfo>,
        /// The ids of the tokens generated since the last delta (vLLM's `token_ids`): with
        /// the text they became, or before it where a stop string holds it back.
        ids: Vec<u32>,
        /// The choice's tokens generated so far, its prompt's tokens served from the prefix
        /// cache and its speculative drafts (for `timings` as the answer goes).
        generated: usize,
        cached_tokens: usize,
        drafts: Drafts,
    },
    Finish {
        index: usize,
        reason: &'static str,
        completion_tokens: usize,
        /// Prompt tokens served from the prefix cache.
        cached_tokens: usize,
        /// The stop string that ended the choice, if one did.
        stop_string: Option<String>,
        /// With a `prediction`: how much of it the answer used.
        prediction: Option<PredictionUsage>,
        /// Its drafts in all (`EngineEvent::Finished`).
        drafts: Drafts,
        /// Token ids no delta told, and the end token that stopped it (which has no text).
        ids: Vec<u32>,
        /// vLLM's `prompt_logprobs` of its prompt, when asked (`server::prompt_logprobs`).
        prompt_logprobs: Option<serde_json::Value>,
    },
    Error {
        index: usize,
        message: String,
    },
    /// `processed` of the prompt's `total` tokens are computed (`cached` of them from the
    /// prefix cache); only where the plan asks (`return_progress`).
    Progress {
        index: usize,
        processed: usize,
        cached: usize,
        total: usize,
    },
}

/// Holds back text that could still become a stop string.
struct StopMatcher {
    stops: Vec<String>,
    pending: String,
    /// The stop string that ended the text stays in it.
    include: bool,
    /// The stop string that was hit.
    matched: Option<String>,
}

impl StopMatcher {
    fn new(stops: Vec<String>, include: bool) -> Self {
        StopMatcher {
            stops,
            pending: String::new(),
            include,
            matched: None,
        }
    }

    /// Add text; returns (text safe to emit, whether a stop string was hit).
    fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        // The earliest stop string in the text (the longest of those starting there).
        if let Some((pos, stop)) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|&(at, s)| (at, std::cmp::Reverse(s.len())))
        {
            let end = if self.include { pos + stop.len() } else { pos };
            let out = self.pending[..end].to_string();
            self.matched = Some(stop.clone());
            self.pending.clear();
            return (out, true);
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| held_back(&self.pending, s))
            .max()
            .unwrap_or(0);
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

fn finish_name(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length => "length",
    }
}

fn token_info(tok: &Tokenizer, id: u32, lp: TokenLogprobs) -> TokenInfo {
    let scored = |id: u32, logprob: f32| TokenInfo {
        logprob: Some(logprob),
        ..TokenInfo::of(tok, id)
    };
    TokenInfo {
        top: Some(lp.top.into_iter().map(|(t, l)| scored(t, l)).collect()),
        ..scored(id, lp.logprob)
    }
}

/// What a choice says before its first token when it echoes the prompt: the prompt's text, and
/// its tokens with their logprobs when asked for (collected as the engine scores them).
struct EchoOut {
    text: String,
    ids: Vec<u32>,
    tokens: Option<Vec<TokenInfo>>,
    /// Alternatives shown per token (the engine may score more for `prompt_logprobs`).
    top: usize,
}

impl EchoOut {
    /// `logprobs`: the alternatives per token when the echo shows logprobs.
    fn new(text: String, ids: Vec<u32>, logprobs: Option<usize>) -> Self {
        EchoOut {
            text,
            ids,
            tokens: logprobs.map(|_| Vec::new()),
            top: logprobs.unwrap_or(0),
        }
    }

    fn scored(&mut self, tok: &Tokenizer, scored: Vec<TokenLogprobs>) {
        let Some(tokens) = &mut self.tokens else {
            return;
        };
        if tokens.is_empty() {
            if let Some(&first) = self.ids.first() {
                tokens.push(TokenInfo::of(tok, first));
            }
        }
        for mut lp in scored {
            let Some(&id) = self.ids.get(tokens.len()) else {
                break;
            };
            lp.top.truncate(self.top);
            tokens.push(token_info(tok, id, lp));
        }
    }

    /// The delta that opens the choice (a one-token prompt has no scores to wait for), once
    /// the prompt is in (`cached_tokens` of it from the prefix cache).
    fn delta(mut self, tok: &Tokenizer, index: usize, cached_tokens: usize) -> ChoiceEvent {
        self.scored(tok, Vec::new());
        ChoiceEvent::Delta {
            index,
            text: self.text,
            tokens: self.tokens.unwrap_or_default(),
            ids: Vec::new(),
            generated: 0,
            cached_tokens,
            drafts: Drafts::default(),
        }
    }
}

/// The tokens that end a choice: the model's end tokens unless `ignore_eos`, and the request's
/// `stop_token_ids` either way (as in vLLM).
fn end_tokens(model_eos: &[u32], plan: &Plan) -> Vec<u32> {
    let mut ids = if plan.ignore_eos {
        Vec::new()
    } else {
        model_eos.to_vec()
    };
    for &id in &plan.stop_token_ids {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Submit the `n` choices of each prompt (all or none) and start their drivers. Choice `i` of
/// prompt `p` is index `p * n + i` and samples with seed `seed + i`, as it would alone.
pub fn start(
    ready: &Ready,
    request_id: &str,
    prompts: Vec<PromptIn>,
    plan: &Plan,
    logprobs: Option<usize>,
    constraint: Option<Constraint>,
    thought: Option<Thought>,
) -> Result<mpsc::UnboundedReceiver<ChoiceEvent>, ApiError> {
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let eos_ids = end_tokens(&ready.eos_ids, plan);
    let total = prompts.len() * plan.n;
    // Text as the answer would be, so drafts from it are the tokens the model would write.
    let prediction = match &plan.prediction {
        Some(text) => Arc::new(
            ready
                .tokenizer
                .encode(text, false)
                .map_err(|e| ApiError::internal(e.to_string()))?,
        ),
        None => Arc::default(),
    };
    let lora = ready.lora_of(plan.model.as_deref(), plan.lora.as_deref())?;
    // The plan's sampling with what needs the vocabulary, shared by every choice.
    let mut shared = plan.sampling.clone();
    shared.dry = plan
        .dry
        .as_ref()
        .map(|d| d.params(ready.dry_breakers.of(&ready.tokenizer, d.breaker_strings())));
    // A bias named by a text goes to each of its tokens, read as plain text (llama-server's).
    for (text, bias) in &plan.text_bias {
        let ids = ready
            .tokenizer
            .encode_text(text, false)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        shared
            .logit_bias
            .extend(ids.into_iter().map(|id| (id, *bias)));
    }
    shared.banned = super::banned_words::banned(
        &ready.tokenizer,
        plan.allowed_token_ids.as_deref(),
        &plan.bad_words,
    )?;
    shared.infill = plan.infill.then(|| {
        Arc::new(Infill {
            vocab: ready.tokenizer.token_bytes(),
            ends: eos_ids.clone(),
        })
    });
    let mut engines = Vec::with_capacity(total);
    let mut requests = Vec::with_capacity(total);
    let mut echoes = Vec::with_capacity(total);
    let mut scores = Vec::with_capacity(total);
    for prompt in &prompts {
        for i in 0..plan.n {
            let (tx, rx) = mpsc::unbounded_channel();
            let mut sampling = shared.clone();
            sampling.seed = sampling.seed.map(|s| s.wrapping_add(i as u64));
            requests.push(EngineRequest {
                id: if total > 1 {
                    format!("{request_id}/{}", requests.len())
                } else {
                    request_id.to_string()
                },
                prompt_ids: prompt.ids.clone(),
                max_tokens: plan.max_tokens,
                sampling,
                eos_ids: eos_ids.clone(),
                // `end_tokens` left the model's out already.
                ignore_eos: false,
                logprobs,
                logprobs_after_sampling: plan.logprobs_after_sampling,
                // Echoed logprobs and vLLM's `prompt_logprobs` read the same scores, each
                // keeping its own number of alternatives.
                prompt_logprobs: prompt.echo.as_ref().and(logprobs).max(plan.prompt_logprobs),
                constraint: constraint.as_ref().map(Constraint::fork),
                thought: thought.clone(),
                pooling: None,
                prediction: prediction.clone(),
                priority: plan.priority,
                lora: lora.clone(),
                cache_prompt: plan.cache_prompt,
                cache_salt: plan.cache_salt.clone(),
                events: tx,
            });
            engines.push(rx);
            echoes.push(
                prompt
                    .echo
                    .clone()
                    .map(|text| EchoOut::new(text, prompt.ids.clone(), logprobs)),
            );
            scores.push(
                plan.prompt_logprobs
                    .map(|k| PromptScores::new(k, prompt.ids.clone())),
            );
        }
    }
    submit(ready, requests)?;
    let choices = engines.into_iter().zip(echoes).zip(scores);
    for (index, ((rx, echo), prompt_scores)) in choices.enumerate() {
        let reading = Reading {
            prompt_scores,
            stop: StopMatcher::new(plan.stop.clone(), plan.include_stop),
            keep_special_tokens: plan.keep_special_tokens,
            hidden_special_tokens: plan.hidden_special_tokens.clone(),
            prediction: plan.prediction.is_some().then(|| prediction.clone()),
            progress: plan.return_progress,
        };
        tokio::spawn(drive(
            index,
            rx,
            ready.tokenizer.clone(),
            reading,
            echo,
            out_tx.clone(),
        ));
    }
    Ok(out_rx)
}

/// How a choice's tokens become its text and its end.
struct Reading {
    /// vLLM's `prompt_logprobs`, collected as the engine scores the prompt.
    prompt_scores: Option<PromptScores>,
    stop: StopMatcher,
    keep_special_tokens: bool,
    hidden_special_tokens: Vec<u32>,
    /// The prediction's tokens, to count what the answer used of them.
    prediction: Option<Arc<Vec<u32>>>,
    /// Tell the prompt's progress (`ChoiceEvent::Progress`).
    progress: bool,
}

async fn drive(
    index: usize,
    mut rx: mpsc::UnboundedReceiver<EngineEvent>,
    tok: Arc<Tokenizer>,
    reading: Reading,
    mut echo: Option<EchoOut>,
    out: mpsc::UnboundedSender<ChoiceEvent>,
) {
    let Reading {
        mut prompt_scores,
        mut stop,
        keep_special_tokens,
        hidden_special_tokens,
        prediction,
        progress,
    } = reading;
    let mut decoder = StreamDecoder::new(&tok);
    if keep_special_tokens {
        decoder = decoder.with_special_tokens().hiding(hidden_special_tokens);
    }
    let mut generated: Vec<u32> = Vec::new();
    let used = |generated: &[u32]| {
        prediction
            .as_ref()
            .map(|p| crate::server::prediction::usage(p, generated))
    };
    let mut completion = 0usize;
    let mut cached_tokens = 0usize;
    // Ids of tokens whose delta is not sent yet (their text held back, or none).
    let mut ids: Vec<u32> = Vec::new();
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = out.closed() => return,
        };
        let Some(event) = event else {
            let _ = out.send(ChoiceEvent::Error {
                index,
                message: "the engine stopped".into(),
            });
            return;
        };
        match event {
            // Generation requests pool nothing (`/v1/embeddings` reads its own events).
            EngineEvent::Embedding(_) => {}
            EngineEvent::PromptLogprobs(scored) => {
                if let Some(scores) = &mut prompt_scores {
                    scores.add(&scored);
                }
                if let Some(echo) = &mut echo {
                    echo.scored(&tok, scored);
                }
            }
            EngineEvent::PromptProgress {
                computed,
                cached_tokens: cached,
                prompt_len,
            } => {
                let told = ChoiceEvent::Progress {
                    index,
                    processed: computed,
                    cached,
                    total: prompt_len,
                };
                if progress && out.send(told).is_err() {
                    return;
                }
            }
            EngineEvent::Prefilled { cached_tokens: c } => {
                cached_tokens = c;
                if let Some(echo) = echo.take() {
                    if out.send(echo.delta(&tok, index, cached_tokens)).is_err() {
                        return;
                    }
                }
            }
            EngineEvent::Token {
                id,
                logprobs,
                drafts,
            } => {
                completion += 1;
                ids.push(id);
                if prediction.is_some() {
                    generated.push(id);
                }
                let piece = decoder.push(id).unwrap_or_default();
                let (text, hit) = stop.push(&piece);
                let tokens = logprobs
                    .map(|lp| vec![token_info(&tok, id, lp)])
                    .unwrap_or_default();
                let has_news = !text.is_empty() || !tokens.is_empty();
                if has_news
                    && out
                        .send(ChoiceEvent::Delta {
                            index,
                            text,
                            tokens,
                            ids: std::mem::take(&mut ids),
                            generated: completion,
                            cached_tokens,
                            drafts,
                        })
                        .is_err()
                {
                    return;
                }
                if hit {
                    // The request ends here; dropping `rx` cancels it in the engine.
                    let _ = out.send(ChoiceEvent::Finish {
                        index,
                        reason: "stop",
                        completion_tokens: completion,
                        cached_tokens,
                        stop_string: stop.matched.take(),
                        prediction: used(&generated),
                        drafts,
                        ids,
                        prompt_logprobs: prompt_scores.as_ref().map(|s| s.to_json(&tok)),
                    });
                    return;
                }
            }
            EngineEvent::Finished {
                reason,
                drafts,
                stop_token,
                ..
            } => {
                ids.extend(stop_token);
                let mut rest = decoder.flush().unwrap_or_default();
                let (text, hit) = stop.push(&rest);
                rest = if hit { text } else { text + &stop.flush() };
                if !rest.is_empty() {
                    let _ = out.send(ChoiceEvent::Delta {
                        index,
                        text: rest,
                        tokens: Vec::new(),
                        ids: Vec::new(),
                        generated: completion,
                        cached_tokens,
                        drafts,
                    });
                }
                let reason = if hit { "stop" } else { finish_name(reason) };
                let _ = out.send(ChoiceEvent::Finish {
                    index,
                    reason,
                    completion_tokens: completion,
                    cached_tokens,
                    stop_string: stop.matched.take(),
                    prediction: used(&generated),
                    drafts,
                    ids,
                    prompt_logprobs: prompt_scores.as_ref().map(|s| s.to_json(&tok)),
                });
                return;
            }
            EngineEvent::Error(message) => {
                let _ = out.send(ChoiceEvent::Error { index, message });
                return;
            }
        }
    }
}

/// The refusal of a generation by a server whose model generates nothing: a sequence
/// classifier (its file's head scores labels), or an encoder (it reads text whole and has no
/// language-model head).
pub fn generation_refused(ready: &Ready) -> ApiError {
    if ready.encoder {
        let head = match ready.classifier {
            Some(_) => "; its classification head answers /classify, /score and /rerank",
            None => "",
        };
        return ApiError::bad_request(format!(
            "the served model is an encoder (it reads a text whole, it has no language-model \
             head to generate or score tokens with): it answers embeddings{head}"
        ));
    }
    ApiError::bad_request(
        "the served model is a sequence classifier (its file's head scores labels, it has no \
         language-model head to generate or score tokens with): it answers /classify, /score, \
         /rerank and embeddings",
    )
}

/// Queue a request's engine requests together, counting a refusal for lack of room.
pub fn submit(ready: &Ready, requests: Vec<EngineRequest>) -> Result<(), ApiError> {
    if !ready.generates && requests.iter().any(|r| r.pooling.is_none()) {
        return Err(generation_refused(ready));
    }
    ready.engine.submit_group(requests).map_err(|e| {
        if matches!(e, crate::engine::scheduler::SubmitError::QueueFull(_)) {
            ready.stats.requests_rejected.inc();
        }
        e.into()
    })
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    #[test]
    fn stop_strings_across_pieces_are_held_back_and_cut() {
        let mut m = StopMatcher::new(vec!["</end>".into()], false);
        assert_eq!(m.push("hello </"), ("hello ".to_string(), false));
        assert_eq!(m.push("en"), (String::new(), false));
        assert_eq!(m.push("d> tail"), (String::new(), true));
        let mut m = StopMatcher::new(vec!["ab".into()], false);
        assert_eq!(m.push("xa"), ("x".to_string(), false));
        assert_eq!(m.push("c"), ("ac".to_string(), false));
        assert_eq!(m.flush(), "");
        // Kept, the stop string ends the text (the longest of those starting first).
        let mut m = StopMatcher::new(vec!["</e".into(), "</end>".into(), "x".into()], true);
        assert_eq!(m.push("hi </end> x"), ("hi </end>".to_string(), true));
        assert_eq!(m.matched.as_deref(), Some("</end>"));
    }
}
