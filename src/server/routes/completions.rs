//! `POST /v1/completions`.
use crate::server::error::ApiError;
use crate::server::generation::{self, ChoiceEvent, PromptIn};
use crate::server::guide;
use crate::server::json::Json;
use crate::server::native_prompt::{encode, prompts, Reading};
use crate::server::openai::{CommonParams, CompletionRequest, Prompt};
use crate::server::respond::{self, Kind, Meta};
use crate::server::state::{unix_now, Ready, SharedState};
use crate::server::structured;
use crate::server::timings::Clock;
use crate::server::validate::{self, completion_plan, no_nul, Plan};
use axum::extract::State;
use axum::response::Response;
use tokio::sync::mpsc::UnboundedReceiver;

/// Token ids sent as `param` (a prompt, an input), checked against the vocabulary.
pub fn token_ids(ready: &Ready, param: &str, ids: &[i64]) -> Result<Vec<u32>, ApiError> {
    validate::vocab_ids(param, ids, ready.limits.vocab)
}

/// One prompt of the request as sent: its text (None when sent as token ids) and its tokens.
struct Sent {
    text: Option<String>,
    ids: Vec<u32>,
}

/// The request's prompts: one text or token list, or a list of them (a batch, each prompt
/// answered as if alone, its choices after the previous prompt's); llama-server's mixed
/// forms read as its `/completion` reads them.
fn sent_prompts(ready: &Ready, prompt: &Prompt) -> Result<Vec<Sent>, ApiError> {
    let text = |t: &String| -> Result<Sent, ApiError> {
        Ok(Sent {
            text: Some(t.clone()),
            ids: encode(ready, "prompt", t, Reading::PROMPT)?,
        })
    };
    let tokens = |ids: &Vec<i64>| -> Result<Sent, ApiError> {
        Ok(Sent {
            text: None,
            ids: token_ids(ready, "prompt", ids)?,
        })
    };
    match prompt {
        Prompt::Text(t) => Ok(vec![text(t)?]),
        Prompt::Tokens(ids) => Ok(vec![tokens(ids)?]),
        Prompt::Texts(v) => v.iter().map(text).collect(),
        Prompt::TokenLists(v) => v.iter().map(tokens).collect(),
        Prompt::Mixed(items) => {
            let many = prompts(ready, "prompt", &serde_json::Value::Array(items.clone()))?;
            Ok(many
                .into_iter()
                .map(|ids| Sent { text: None, ids })
                .collect())
        }
    }
}

/// A fill-in-the-middle prompt: prefix, suffix and middle tokens around the two texts, in the
/// order the model was trained on (`Fim::around`: prefix-suffix-middle as llama.cpp's /infill
/// writes them, Mistral's suffix first); the completion is what goes between.
pub fn fill_in_the_middle(
    ready: &Ready,
    prompt: &Prompt,
    suffix: &str,
) -> Result<Vec<u32>, ApiError> {
    let fim = ready.fim.ok_or_else(|| {
        ApiError::invalid(
            "suffix",
            "this model has no fill-in-the-middle tokens, so `suffix` cannot be used",
        )
    })?;
    no_nul("suffix", suffix)?;
    let encode = |t: &str, bos: bool| {
        ready
            .tokenizer
            .encode(t, bos)
            .map_err(|e| ApiError::internal(e.to_string()))
    };
    let prefix = match prompt {
        Prompt::Text(t) => t.as_str(),
        Prompt::Texts(v) if v.len() == 1 => v[0].as_str(),
        _ => {
            return Err(ApiError::invalid(
                "prompt",
                "with `suffix`, the prompt is one text (the code before the insertion point)",
            ))
        }
    };
    no_nul("prompt", prefix)?;
    // BOS, where the model wants one, comes before everything.
    let mut ids: Vec<u32> = ready.tokenizer.added_bos().into_iter().collect();
    ids.extend(fim.around(&encode(prefix, false)?, &encode(suffix, false)?));
    Ok(ids)
}

/// Start one text completion of `ids` as `common` asks (`/completion`, `/infill`, Ollama's
/// raw `/api/generate`): its guides (`grammar`, `json_schema`...) or `format` (a response
/// format) compiled off the async workers, the plan checked, the engine request queued. The
/// choice's events, and the plan they follow.
pub async fn start_text(
    state: &SharedState,
    common: &CommonParams,
    ids: Vec<u32>,
    format: Option<serde_json::Value>,
    logprobs: Option<usize>,
    id: &str,
) -> Result<(UnboundedReceiver<ChoiceEvent>, Plan), ApiError> {
    let guide = guide::guide(common)?;
    let constrained = format.is_some() || guide.is_some();
    let constraint = structured::compile(state, constrained, move |ready| {
        structured::answer_format(ready, format.as_ref(), guide.as_ref())
    })
    .await?;
    let ready = state.ready()?;
    let plan = completion_plan(common, ids.len(), &ready.limits, false)?;
    if plan.ignore_eos && constraint.is_some() {
        return Err(structured::ignore_eos_conflict());
    }
    let rx = generation::start(
        ready,
        id,
        vec![PromptIn::plain(ids)],
        &plan,
        logprobs,
        constraint,
        None,
    )?;
    Ok((rx, plan))
}

/// What `echo` puts before a prompt's answers: the prompt as sent when it is text, else its
/// tokens' text (special tokens as the answer shows them).
fn echoed(ready: &Ready, sent: &Sent, plan: &Plan) -> String {
    match &sent.text {
        Some(t) => t.clone(),
        None => ready
            .tokenizer
            .decode(&sent.ids, !plan.keep_special_tokens)
            .unwrap_or_default(),
    }
}

pub async fn completions(
    State(state): State<SharedState>,
    Json(req): Json<CompletionRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.common.model.as_deref())?;
    let ready = state.ready()?;
    if req.echo && req.suffix.is_some() {
        return Err(ApiError::invalid(
            "echo",
            "`echo` cannot be combined with `suffix` (the answer goes inside the prompt)",
        ));
    }
    if let Some(best_of) = req.best_of.filter(|&b| b != req.common.n.unwrap_or(1)) {
        return Err(ApiError::invalid(
            "best_of",
            format!(
                "`best_of` {best_of} is not supported (only equal to `n`); request `n` choices \
                 with `logprobs` and rank them"
            ),
        ));
    }
    if req.suffix.is_some() && req.common.truncate_prompt_tokens.is_some() {
        return Err(ApiError::invalid(
            "truncate_prompt_tokens",
            "`truncate_prompt_tokens` cannot cut a fill-in-the-middle prompt (`suffix`): its \
             start holds the prefix marker",
        ));
    }
    let mut sent = match &req.suffix {
        Some(suffix) => vec![Sent {
            text: None,
            ids: fill_in_the_middle(ready, &req.prompt, suffix)?,
        }],
        None => sent_prompts(ready, &req.prompt)?,
    };
    for s in &mut sent {
        if validate::truncate_prompt(&mut s.ids, req.common.truncate_prompt_tokens, &ready.limits)?
        {
            // An echo shows the tokens that ran, not the text sent.
            s.text = None;
        }
    }
    if sent.len() > 1 {
        if let Some(i) = sent.iter().position(|s| s.ids.is_empty()) {
            return Err(ApiError::invalid("prompt", format!("prompt {i} is empty")));
        }
    }
    let format = req.response_format.clone();
    let guide = guide::guide(&req.common)?;
    let constrained = format.is_some() || guide.is_some();
    let constraint = structured::compile(&state, constrained, move |ready| {
        structured::answer_format(ready, format.as_ref(), guide.as_ref())
    })
    .await?;
    // Each prompt must leave room for the answer: the longest decides.
    let longest = sent.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    let p = completion_plan(&req.common, longest, &ready.limits, req.echo)?;
    let choices = sent.len() * p.n;
    if choices > ready.limits.max_choices {
        return Err(ApiError::invalid(
            "prompt",
            format!(
                "{} prompts x n {} = {choices} choices; at most {} per request",
                sent.len(),
                p.n,
                ready.limits.max_choices
            ),
        ));
    }
    if p.ignore_eos && constraint.is_some() {
        return Err(structured::ignore_eos_conflict());
    }
    let logprobs = match req.logprobs {
        None => None,
        Some(k) if (0..=5).contains(&k) => Some(k as usize),
        Some(k) => {
            return Err(ApiError::invalid(
                "logprobs",
                format!("`logprobs` must be in [0, 5], got {k}"),
            ))
        }
    };
    let id = crate::server::request_id::answer_id("cmpl");
    let prompt_tokens = sent.iter().map(|s| s.ids.len()).sum();
    // Choice `k` answers prompt `k / n` (`generation::start` runs each prompt's n together).
    let token_ids = req.common.return_token_ids.then(|| {
        sent.iter()
            .flat_map(|s| std::iter::repeat_n(std::sync::Arc::new(s.ids.clone()), p.n))
            .collect()
    });
    let prompts = sent
        .into_iter()
        .map(|s| PromptIn {
            echo: req.echo.then(|| echoed(ready, &s, &p)),
            ids: s.ids,
        })
        .collect();
    let rx = generation::start(ready, &id, prompts, &p, logprobs, constraint, None)?;
    let meta = Meta {
        kind: Kind::Text,
        id,
        created: unix_now(),
        model: state.answering_model(req.common.model.as_deref()),
        system_fingerprint: ready.system_fingerprint.clone(),
        prompt_tokens,
        n: choices,
        choices_per_prompt: p.n,
        logprobs: logprobs.is_some(),
        include_usage: p.include_usage,
        continuous_usage: p.continuous_usage,
        clock: Clock::start(),
        timings_per_token: req.common.timings_per_token,
        token_ids,
        tokens_as_ids: req.common.return_tokens_as_token_ids,
        answer: None,
    };
    if p.stream {
        Ok(respond::stream(meta, rx))
    } else {
        respond::complete(meta, rx).await
    }
}
