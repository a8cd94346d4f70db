//! text-generation-inference's native API, for clients written against it (huggingface_hub's
//! `InferenceClient.text_generation`, LangChain's `HuggingFaceEndpoint`): `POST /generate`
//! (`{"generated_text", "details"?}`), `POST /generate_stream` (a server-sent event per token,
//! `{"index", "token": {"id", "text", "logprob", "special"}, "generated_text", "details"}`,
//! the last carrying the whole text and why it ended), and `POST /` (either, by `stream`; a
//! whole answer as a one-item list, as TGI's compatibility route answers). `inputs` is the
//! prompt, tokenized with the model's special tokens; `parameters` take TGI's names:
//! `max_new_tokens`, `do_sample` (greedy unless it or a sampling parameter is set, as TGI
//! decides), `temperature`, `top_k`, `top_p`, `typical_p`, `repetition_penalty`,
//! `frequency_penalty`, `seed` (drawn where a sampled request sends none, and reported in
//! `details.seed` as TGI reports it), `stop`, `truncate` (the prompt's last tokens), `grammar`
//! (`{"type": "json" | "regex", "value"}`), `return_full_text`, `details` (each token's id,
//! text and log-probability, `top_n_tokens` alternatives), `adapter_id` (a served LoRA
//! adapter), `decoder_input_details` (the prompt's tokens with their log-probabilities in
//! `details.prefill`, whole answers only, as TGI). What TGI has and candor does not run
//! (`best_of` above 1, `watermark`) is a 400 that says so.
use super::completions::start_text;
use crate::server::error::ApiError;
use crate::server::generation::{ChoiceEvent, TokenInfo};
use crate::server::json::{reread, Json};
use crate::server::native_answer::sse;
use crate::server::openai::{CommonParams, Stop};
use crate::server::state::{Ready, SharedState};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    pub inputs: String,
    #[serde(default)]
    pub parameters: Parameters,
    /// `POST /` only: stream the answer.
    #[serde(default)]
    pub stream: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct Parameters {
    pub max_new_tokens: Option<i64>,
    pub do_sample: Option<bool>,
    pub temperature: Option<f64>,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    pub typical_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub seed: Option<u64>,
    #[serde(default)]
    pub stop: Vec<String>,
    pub truncate: Option<i64>,
    pub grammar: Option<Grammar>,
    #[serde(default)]
    pub return_full_text: bool,
    #[serde(default)]
    pub details: bool,
    pub top_n_tokens: Option<i64>,
    pub adapter_id: Option<String>,
    pub best_of: Option<i64>,
    #[serde(default)]
    pub watermark: bool,
    #[serde(default)]
    pub decoder_input_details: bool,
}

/// TGI's constrained generation: a JSON schema or a regular expression.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Grammar {
    Json(Value),
    Regex(String),
}

impl Parameters {
    /// Whether TGI samples: where asked to, or where any sampling parameter is set; else it
    /// decodes greedily.
    fn samples(&self) -> bool {
        self.do_sample == Some(true)
            || self.temperature.is_some()
            || self.top_k.is_some()
            || self.top_p.is_some()
            || self.typical_p.is_some()
    }

    /// A sampled request without a seed gets one drawn here, as TGI draws it, so that its
    /// `details.seed` says which (a greedy answer has none).
    fn draw_seed(&mut self) {
        if self.seed.is_none() && self.samples() {
            self.seed = Some(rand::random::<u64>());
        }
    }

    /// The request in the fields the rest of the server reads.
    fn common(&self, stream: bool) -> Result<CommonParams, ApiError> {
        let refused = |param: &str, what: &str| {
            Err(ApiError::invalid(
                param,
                format!("`{param}`: {what} is not served"),
            ))
        };
        if self.best_of.is_some_and(|n| n > 1) {
            return refused("best_of", "choosing the best of several sequences");
        }
        if self.watermark {
            return refused("watermark", "watermarking");
        }
        if self.decoder_input_details && stream {
            return refused(
                "decoder_input_details",
                "a streamed answer's prompt details",
            );
        }
        let samples = self.samples();
        let mut common = CommonParams {
            model: self.adapter_id.clone(),
            max_tokens: self.max_new_tokens,
            temperature: match samples {
                true => self.temperature,
                false => Some(0.0),
            },
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed.map(|s| s as i64),
            stop: (!self.stop.is_empty()).then(|| Stop::Many(self.stop.clone())),
            stream,
            // TGI's text keeps the stop sequence that ended it.
            include_stop_str_in_output: true,
            truncate_prompt_tokens: self.truncate,
            // The prompt's tokens scored for `details.prefill` (vLLM's prompt logprobs).
            prompt_logprobs: self.decoder_input_details.then_some(0),
            ..CommonParams::default()
        };
        common.samplers.typical_p = self.typical_p;
        match &self.grammar {
            Some(Grammar::Json(schema)) => common.guided_json = Some(schema.clone()),
            Some(Grammar::Regex(regex)) => common.guided_regex = Some(regex.clone()),
            None => {}
        }
        Ok(common)
    }

    /// Whether the answer lists each token's alternatives (`top_n_tokens` above 0).
    fn listing_top(&self) -> bool {
        self.top_n_tokens.is_some_and(|n| n > 0)
    }

    /// The alternatives scored at each token (`top_n_tokens`), if tokens are detailed.
    fn logprobs(&self, ready: &Ready) -> Result<Option<usize>, ApiError> {
        let most = ready.limits.max_logprobs;
        let top = match self.top_n_tokens {
            None => 0,
            Some(n) if n >= 0 && n as u64 <= most as u64 => n as usize,
            Some(n) => {
                return Err(ApiError::invalid(
                    "top_n_tokens",
                    format!("`top_n_tokens` must be in [0, {most}], got {n}"),
                ))
            }
        };
        Ok((self.details || top > 0).then_some(top))
    }
}

/// TGI's names for the fields the plan checks.
const FIELD_NAMES: [(&str, &str); 2] = [
    ("max_tokens", "max_new_tokens"),
    ("truncate_prompt_tokens", "truncate"),
];

pub async fn generate(
    State(state): State<SharedState>,
    Json(mut req): Json<GenerateRequest>,
) -> Result<Response, ApiError> {
    req.parameters.draw_seed();
    let run = start(&state, &req, false).await?;
    Ok(axum::Json(run.finish(&req).await?).into_response())
}

pub async fn generate_stream(
    State(state): State<SharedState>,
    Json(mut req): Json<GenerateRequest>,
) -> Result<Response, ApiError> {
    req.parameters.draw_seed();
    let run = start(&state, &req, true).await?;
    Ok(sse(run.events(req)))
}

/// `POST /`: for a model that generates, TGI's: a stream where `stream` says, else the whole
/// answer as a one-item list; for one that does not, TEI's: its task (`/predict` for a
/// classifier, else `/embed`); for a token classifier, the token-classification pipeline's
/// entities (`routes::token_classify`).
pub async fn compat(
    State(state): State<SharedState>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    let ready = state.ready()?;
    if !ready.generates {
        if ready.token_classifier.is_some() {
            let req = reread(&body)?;
            return super::token_classify::token_classification(State(state), Json(req)).await;
        }
        return match ready.classifier.is_some() {
            true => super::tei_predict::predict(State(state), Json(reread(&body)?)).await,
            false => super::tei::embed(State(state), Json(reread(&body)?)).await,
        };
    }
    let mut req: GenerateRequest = reread(&body)?;
    req.parameters.draw_seed();
    let run = start(&state, &req, req.stream).await?;
    match req.stream {
        true => Ok(sse(run.events(req))),
        false => Ok(axum::Json(vec![run.finish(&req).await?]).into_response()),
    }
}

async fn start(state: &SharedState, req: &GenerateRequest, stream: bool) -> Result<Run, ApiError> {
    let ready = state.ready()?;
    let p = &req.parameters;
    let common = p.common(stream)?;
    state.check_model(common.model.as_deref())?;
    let logprobs = p.logprobs(ready)?;
    let prompt = Value::String(req.inputs.clone());
    let mut prompts = crate::server::native_prompt::prompts(ready, "inputs", &prompt)?;
    let mut ids = prompts.pop().unwrap_or_default();
    crate::server::validate::truncate_prompt(
        &mut ids,
        common.truncate_prompt_tokens,
        &ready.limits,
    )
    .map_err(|e| e.renamed(&FIELD_NAMES))?;
    let id = crate::server::request_id::answer_id("generate");
    let prompt = ids.clone();
    let (rx, _) = start_text(state, &common, ids, None, logprobs, &id)
        .await
        .map_err(|e| e.renamed(&FIELD_NAMES))?;
    Ok(Run {
        rx,
        prompt,
        prefill: None,
        ready_tokenizer: ready.tokenizer.clone(),
        text: String::new(),
        tokens: Vec::new(),
    })
}

struct Run {
    rx: UnboundedReceiver<ChoiceEvent>,
    /// The prompt's tokens, and their scores where `decoder_input_details` asked (vLLM's
    /// `prompt_logprobs` shape, from the answer's end).
    prompt: Vec<u32>,
    prefill: Option<Value>,
    ready_tokenizer: std::sync::Arc<candor_models::tokenizer::Tokenizer>,
    text: String,
    /// The answer's tokens so far.
    tokens: Vec<Detailed>,
}

/// A token as TGI details it, and its alternatives (`top_n_tokens`; none where the engine
/// scored none), which TGI lists beside the tokens.
struct Detailed {
    token: Value,
    top: Vec<Value>,
}

/// What the engine said next.
enum Next {
    Tokens(Vec<Detailed>),
    /// The end: TGI's finish reason, how many tokens were generated, and the tokens no text
    /// told (the end token that stopped it, as TGI lists it last).
    End(&'static str, usize, Vec<Detailed>),
}

impl Run {
    /// One token as TGI lists it: `{"id", "text", "logprob", "special"}`.
    fn listed(&self, t: &TokenInfo) -> Value {
        let special = self.ready_tokenizer.is_special(t.id);
        json!({"id": t.id, "text": t.text, "logprob": t.logprob, "special": special})
    }

    /// A token the engine scored (its text, log-probability and alternatives).
    fn scored(&self, info: &TokenInfo) -> Detailed {
        let top = info.top.iter().flatten().map(|t| self.listed(t)).collect();
        Detailed {
            token: self.listed(info),
            top,
        }
    }

    /// A token of which only its id is known.
    fn bare(&self, id: u32) -> Detailed {
        self.scored(&TokenInfo::of(&self.ready_tokenizer, id))
    }

    async fn next(&mut self) -> Result<Next, ApiError> {
        loop {
            match self.rx.recv().await {
                Some(ChoiceEvent::Delta {
                    text, tokens, ids, ..
                }) => {
                    self.text.push_str(&text);
                    let new: Vec<Detailed> = match tokens.is_empty() {
                        false => tokens.iter().map(|t| self.scored(t)).collect(),
                        true => ids.iter().map(|&id| self.bare(id)).collect(),
                    };
                    if !new.is_empty() {
                        return Ok(Next::Tokens(new));
                    }
                }
                Some(ChoiceEvent::Finish {
                    reason,
                    completion_tokens,
                    stop_string,
                    ids,
                    prompt_logprobs,
                    ..
                }) => {
                    self.prefill = prompt_logprobs;
                    let why = match (reason, stop_string) {
                        ("length", _) => "length",
                        (_, Some(_)) => "stop_sequence",
                        _ => "eos_token",
                    };
                    let tail = ids.iter().map(|&id| self.bare(id)).collect();
                    // TGI counts the end token among the generated ones.
                    let generated = completion_tokens + usize::from(why == "eos_token");
                    return Ok(Next::End(why, generated, tail));
                }
                Some(ChoiceEvent::Error { message, .. }) => {
                    return Err(ApiError::internal(message))
                }
                Some(_) => {}
                None => return Err(ApiError::internal("the engine stopped")),
            }
        }
    }

    /// The prompt's tokens as TGI's `details.prefill` lists them (each with its logprob
    /// under the tokens before it, the first none); empty unless `decoder_input_details`.
    fn prefill_tokens(&self) -> Value {
        let Some(Value::Array(scored)) = &self.prefill else {
            return json!([]);
        };
        let listed: Vec<Value> = (self.prompt.iter().enumerate())
            .map(|(i, &id)| {
                let own = scored.get(i).and_then(|place| place.get(id.to_string()));
                let text = match own {
                    Some(own) => own["decoded_token"].clone(),
                    None => json!(TokenInfo::of(&self.ready_tokenizer, id).text),
                };
                json!({"id": id, "text": text, "logprob": own.map(|o| o["logprob"].clone())})
            })
            .collect();
        json!(listed)
    }

    /// The answer's whole text as TGI gives it (after the prompt with `return_full_text`).
    fn generated_text(&self, req: &GenerateRequest) -> String {
        match req.parameters.return_full_text {
            true => format!("{}{}", req.inputs, self.text),
            false => self.text.clone(),
        }
    }

    /// The whole answer: `generated_text`, and `details` where asked.
    async fn finish(mut self, req: &GenerateRequest) -> Result<Value, ApiError> {
        loop {
            match self.next().await? {
                Next::Tokens(new) => self.tokens.extend(new),
                Next::End(why, generated, tail) => {
                    self.tokens.extend(tail);
                    let mut answer = json!({"generated_text": self.generated_text(req)});
                    if req.parameters.details {
                        let mut details = closing_details(why, generated, req);
                        details["prefill"] = self.prefill_tokens();
                        if req.parameters.listing_top() {
                            let tops: Vec<&Vec<Value>> =
                                self.tokens.iter().map(|d| &d.top).collect();
                            details["top_tokens"] = json!(tops);
                        }
                        let tokens: Vec<&Value> = self.tokens.iter().map(|d| &d.token).collect();
                        details["tokens"] = json!(tokens);
                        answer["details"] = details;
                    }
                    return Ok(answer);
                }
            }
        }
    }

    /// A stream of token events, the last with `generated_text` and `details`.
    fn events(self, req: GenerateRequest) -> impl Stream<Item = Value> + Send {
        /// The run, the request, the token event held back (the last one closes the
        /// answer) and how many were sent.
        struct Streaming {
            run: Run,
            req: GenerateRequest,
            held: Option<Value>,
            index: usize,
        }
        impl Streaming {
            /// Send the held event and hold each new token's, the last kept back.
            fn hold(&mut self, tokens: Vec<Detailed>, out: &mut Vec<Value>) {
                for Detailed { token, top } in tokens {
                    out.extend(self.held.take());
                    self.index += 1;
                    let mut event = json!({"index": self.index, "token": token,
                                           "generated_text": null, "details": null});
                    if self.req.parameters.listing_top() {
                        event["top_tokens"] = json!(top);
                    }
                    self.held = Some(event);
                }
            }
        }
        let start = Streaming {
            run: self,
            req,
            held: None,
            index: 0,
        };
        futures::stream::unfold(Some(start), |s| async move {
            let mut s = s?;
            let mut out = Vec::new();
            match s.run.next().await {
                Ok(Next::Tokens(new)) => {
                    s.hold(new, &mut out);
                    Some((out, Some(s)))
                }
                Ok(Next::End(why, generated, tail)) => {
                    s.hold(tail, &mut out);
                    let mut last = (s.held.take())
                        .unwrap_or_else(|| json!({"index": s.index + 1, "token": null}));
                    last["generated_text"] = json!(s.run.generated_text(&s.req));
                    last["details"] = closing_details(why, generated, &s.req);
                    out.push(last);
                    Some((out, None))
                }
                Err(e) => {
                    out.extend(s.held.take());
                    let message = e.body()["error"]["message"].clone();
                    out.push(json!({"error": message, "error_type": "generation"}));
                    Some((out, None))
                }
            }
        })
        .flat_map(futures::stream::iter)
    }
}

/// The `details` every answer closes with: why it ended, its tokens, its seed.
fn closing_details(why: &str, generated: usize, req: &GenerateRequest) -> Value {
    json!({
        "finish_reason": why,
        "generated_tokens": generated,
        "seed": req.parameters.seed,
    })
}
