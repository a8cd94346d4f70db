//! Ollama's endpoints (`server::ollama`): `/api/chat`, `/api/generate`, `/api/embed`,
//! `/api/embeddings`, `/api/tags`, `/api/show`, `/api/ps`, `/api/version`.
use super::chat::start_chat;
use super::completions::{fill_in_the_middle, start_text};
use super::embeddings::pooled;
use crate::server::embeddings::{checked_inputs, normalised, text_tokens};
use crate::server::error::{ApiError, OllamaError};
use crate::server::json::AnyJson;
use crate::server::ollama::reply::{self, OllamaRun, Shape};
use crate::server::ollama::request::{
    model_name, ChatBody, EmbedBody, EmbedInput, EmbeddingsBody, GenerateBody, Shared, ShowBody,
};
use crate::server::openai::{ChatRequest, Prompt};
use crate::server::sparse_route::Route;
use crate::server::state::{new_id, Ready, SharedState};
use crate::server::validate::{no_nul, top_logprobs};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::time::Instant;

/// The Ollama API level whose fields candor answers with (clients gate features on it).
const OLLAMA_API_VERSION: &str = "0.12.0";

type Answer = Result<Response, OllamaError>;

async fn answer(run: OllamaRun, streaming: bool) -> Answer {
    match streaming {
        true => Ok(reply::stream(run)),
        false => reply::complete(run).await,
    }
}

/// Run `chat` on the chat path and answer in `shape`.
async fn run_chat(
    state: &SharedState,
    chat: ChatRequest,
    shape: Shape,
    model: String,
    started: Instant,
) -> Answer {
    let run = start_chat(state, &chat, new_id("chat")).await?;
    let streaming = run.stream;
    let run = OllamaRun {
        shape,
        model,
        prompt_tokens: run.meta.prompt_tokens,
        answer: run.meta.answer,
        logprobs: chat.logprobs,
        rx: run.rx,
        started,
    };
    answer(run, streaming).await
}

pub async fn chat(
    State(state): State<SharedState>,
    body: Result<AnyJson<ChatBody>, ApiError>,
) -> Answer {
    let started = Instant::now();
    let AnyJson(req) = body?;
    if req.messages.is_empty() {
        return loaded(&state, &req.shared, Shape::Chat);
    }
    let model = served_name(&state, req.shared.model.as_deref());
    run_chat(&state, req.to_chat()?, Shape::Chat, model, started).await
}

pub async fn generate(
    State(state): State<SharedState>,
    body: Result<AnyJson<GenerateBody>, ApiError>,
) -> Answer {
    let started = Instant::now();
    let AnyJson(req) = body?;
    req.check()?;
    if req.prompt.is_empty() && req.suffix.as_deref().unwrap_or("").is_empty() {
        return loaded(&state, &req.shared, Shape::Generate);
    }
    let model = served_name(&state, req.shared.model.as_deref());
    let streaming = req.shared.streaming();
    let fill = req.suffix.as_deref().filter(|s| !s.is_empty());
    if !req.raw && fill.is_none() {
        return run_chat(&state, req.to_chat()?, Shape::Generate, model, started).await;
    }
    // Raw, or a fill between `prompt` and `suffix`: a text completion.
    let common = req.shared.common()?;
    state.check_model(common.model.as_deref())?;
    let ready = state.ready()?;
    no_nul("prompt", &req.prompt)?;
    let ids = match fill {
        Some(suffix) => fill_in_the_middle(ready, &Prompt::Text(req.prompt.clone()), suffix)?,
        None => ready
            .tokenizer
            .encode(&req.prompt, true)
            .map_err(|e| ApiError::internal(e.to_string()))?,
    };
    let (logprobs, top) = req.shared.logprobs();
    let top = top_logprobs(&ready.limits, logprobs, top)?;
    let prompt_tokens = ids.len();
    let format = req.shared.response_format()?;
    let (rx, _) = start_text(&state, &common, ids, format, top, &new_id("gen")).await?;
    let run = OllamaRun {
        shape: Shape::Generate,
        model,
        rx,
        prompt_tokens,
        answer: None,
        logprobs,
        started,
    };
    answer(run, streaming).await
}

/// The answer to a request that asks nothing, Ollama's way to load (or unload) a model: done at
/// once, since the one model is loaded for as long as the server runs.
fn loaded(state: &SharedState, shared: &Shared, shape: Shape) -> Answer {
    state.check_model(model_name(shared.model.as_deref()))?;
    state.ready()?;
    let mut answer = json!({
        "model": served_name(state, shared.model.as_deref()),
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "done": true,
        "done_reason": shared.load_request(),
    });
    match shape {
        Shape::Chat => answer["message"] = json!({"role": "assistant", "content": ""}),
        Shape::Generate => answer["response"] = json!(""),
    }
    Ok(axum::Json(answer).into_response())
}

/// The model name an answer carries: as the client sent it (Ollama echoes its tag), else the
/// served name.
fn served_name(state: &SharedState, sent: Option<&str>) -> String {
    sent.map(str::to_string)
        .unwrap_or_else(|| state.model_name.clone())
}

/// `texts` as token lists for pooling: encoded as `/v1/embeddings` does (after the checkout's
/// default prompt, if it has one), cut to the context when `truncate` (Ollama's default), else
/// refused when too long.
fn embed_inputs(
    ready: &Ready,
    texts: &[String],
    truncate: bool,
) -> Result<Vec<Vec<u32>>, ApiError> {
    let prompt = ready.prompts.text_for(None)?.unwrap_or_default();
    let lists = texts
        .iter()
        .map(|text| text_tokens(ready, &format!("{prompt}{text}")))
        .collect::<Result<Vec<_>, _>>()?;
    checked_inputs(ready, lists, |_| "input", truncate).map_err(|mut e| {
        if e.code == Some("context_length_exceeded") {
            e.message.push_str(" (send `truncate: true` to cut it)");
        }
        e
    })
}

pub async fn embed(
    State(state): State<SharedState>,
    body: Result<AnyJson<EmbedBody>, ApiError>,
) -> Answer {
    let started = Instant::now();
    let AnyJson(req) = body?;
    state.check_model(model_name(req.model.as_deref()))?;
    let ready = state.ready()?;
    let texts = match &req.input {
        EmbedInput::Text(t) => vec![t.clone()],
        EmbedInput::Texts(v) => v.clone(),
    };
    let dimensions = ready.embedding_dimensions(req.dimensions)?;
    let inputs = embed_inputs(ready, &texts, req.truncate != Some(false))?;
    let vectors: Vec<Vec<f32>> = pooled(
        ready,
        &inputs,
        Route::Encoder,
        0,
        model_name(req.model.as_deref()),
    )
    .await?
    .into_iter()
    .map(|v| normalised(v, dimensions))
    .collect();
    let tokens: usize = inputs.iter().map(Vec::len).sum();
    Ok(axum::Json(json!({
        "model": served_name(&state, req.model.as_deref()),
        "embeddings": vectors,
        "total_duration": started.elapsed().as_nanos() as u64,
        "load_duration": 0,
        "prompt_eval_count": tokens,
    }))
    .into_response())
}

/// The older `/api/embeddings`: one prompt, one vector (not normalised, as Ollama's).
pub async fn embeddings(
    State(state): State<SharedState>,
    body: Result<AnyJson<EmbeddingsBody>, ApiError>,
) -> Answer {
    let AnyJson(req) = body?;
    state.check_model(model_name(req.model.as_deref()))?;
    let ready = state.ready()?;
    let inputs = embed_inputs(ready, std::slice::from_ref(&req.prompt), true)?;
    let vector = pooled(
        ready,
        &inputs,
        Route::Encoder,
        0,
        model_name(req.model.as_deref()),
    )
    .await?
    .remove(0);
    Ok(axum::Json(json!({"embedding": vector})).into_response())
}

/// `details` of the served model, as Ollama describes a model.
fn details(ready: &Ready) -> Value {
    let f = &ready.facts;
    json!({
        "parent_model": "",
        "format": f.format,
        "family": f.arch,
        "families": [f.arch],
        "parameter_size": f.parameters.map(parameter_size),
        "quantization_level": f.quantization,
    })
}

/// `494.03M`, `7.6B`: Ollama's short parameter counts.
fn parameter_size(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n => format!("{:.2}M", n as f64 / 1e6),
    }
}

fn modified_at(ready: &Ready) -> String {
    let at: chrono::DateTime<chrono::Utc> = ready
        .facts
        .modified
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        .into();
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The served models as `/api/tags` and `/api/ps` list them, with `extra` fields: the base
/// model, then its LoRA adapters (each with the base model's details; a name of Ollama's
/// `:latest` form as the others).
fn listed(state: &SharedState, ready: &Ready, extra: Value) -> Response {
    let models: Vec<Value> = state
        .model_names()
        .into_iter()
        .map(|model| {
            let name = format!("{model}:latest");
            let mut entry = json!({
                "name": name, "model": name,
                "size": ready.facts.size_bytes,
                "details": details(ready),
            });
            if let (Some(entry), Value::Object(extra)) = (entry.as_object_mut(), &extra) {
                entry.extend(extra.clone());
            }
            entry
        })
        .collect();
    axum::Json(json!({"models": models})).into_response()
}

/// `GET /api/tags`: the models served.
pub async fn tags(State(state): State<SharedState>) -> Answer {
    let ready = state.ready()?;
    Ok(listed(
        &state,
        ready,
        json!({"modified_at": modified_at(ready)}),
    ))
}

/// `GET /api/ps`: the model is loaded for as long as the server runs.
pub async fn ps(State(state): State<SharedState>) -> Answer {
    let ready = state.ready()?;
    let on_accelerator = ready.facts.device_kind != "cpu";
    let extra = json!({
        "size_vram": if on_accelerator { ready.facts.size_bytes } else { 0 },
        "context_length": ready.limits.context,
    });
    Ok(listed(&state, ready, extra))
}

/// `POST /api/show`: the template, the details and what the model can do.
pub async fn show(
    State(state): State<SharedState>,
    body: Result<AnyJson<ShowBody>, ApiError>,
) -> Answer {
    let AnyJson(req) = body?;
    let sent = req.model.as_deref().or(req.name.as_deref());
    if sent.is_none() {
        return Err(ApiError::invalid("model", "`model` is required").into());
    }
    state.check_model(model_name(sent))?;
    let ready = state.ready()?;
    let f = &ready.facts;
    let mut capabilities = vec!["completion", "embedding"];
    if ready.fim.is_some() {
        capabilities.push("insert");
    }
    let template = ready.template.as_ref().map(|t| t.source().to_string());
    // Tools where requests with tools are served: a call format candor reads (the
    // operator's, or the template's), or harmony's messages.
    let calls_read = |t: &str| {
        ready.tool_format.is_some()
            || crate::server::tools::format::ToolFormat::detect(t).is_ok()
            || crate::server::harmony::template_harmony(t)
    };
    // The template requests with tools render with, where the model keeps one apart.
    let tool_template = ready.tool_template.as_ref().map(|t| t.source());
    if tool_template
        .or(template.as_deref())
        .is_some_and(calls_read)
    {
        capabilities.push("tools");
    }
    if ready.think_tags.is_some()
        || template
            .as_deref()
            .is_some_and(crate::server::harmony::template_harmony)
    {
        capabilities.push("thinking");
    }
    Ok(axum::Json(json!({
        "modelfile": "",
        "parameters": parameters(&ready.limits.sampling),
        "template": template.unwrap_or_default(),
        "details": details(ready),
        "model_info": {
            "general.architecture": f.arch,
            "general.parameter_count": f.parameters,
            format!("{}.context_length", f.arch): f.trained_context,
            format!("{}.embedding_length", f.arch): ready.hidden_size,
        },
        "capabilities": capabilities,
        "modified_at": modified_at(ready),
    }))
    .into_response())
}

/// The sampling defaults as Ollama lists a Modelfile's parameters: a line each, the name
/// padded to 30 columns (`temperature                    0.7`).
fn parameters(d: &candor_models::generation_config::GenerationDefaults) -> String {
    let number = |v: f64| serde_json::Number::from_f64(v).map_or(v.to_string(), |n| n.to_string());
    [
        ("temperature", d.temperature.map(number)),
        ("top_p", d.top_p.map(number)),
        ("top_k", d.top_k.map(|k| k.to_string())),
        ("min_p", d.min_p.map(number)),
        ("repeat_penalty", d.repetition_penalty.map(number)),
        ("repeat_last_n", d.repeat_last_n.map(|n| n.to_string())),
        ("mirostat", d.mirostat.map(|m| m.to_string())),
        ("mirostat_tau", d.mirostat_tau.map(number)),
        ("mirostat_eta", d.mirostat_eta.map(number)),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some(format!("{name:<30} {}", value?)))
    .collect::<Vec<_>>()
    .join("\n")
}

/// `GET /api/version`.
pub async fn version() -> Response {
    axum::Json(json!({"version": OLLAMA_API_VERSION})).into_response()
}

#[cfg(test)]
mod tests {
    use super::parameter_size;

    #[test]
    fn parameter_counts_read_as_ollama_writes_them() {
        assert_eq!(parameter_size(494_032_768), "494.03M");
        assert_eq!(parameter_size(7_615_616_512), "7.6B");
    }
}
