//! `POST /v1/chat/completions`.
use crate::server::answer::{AnswerSetup, Reasoning};
use crate::server::error::ApiError;
use crate::server::generation::{self, ChoiceEvent, PromptIn};
use crate::server::guide;
use crate::server::json::Json;
use crate::server::openai::{ChatRequest, Content, Message};
use crate::server::prompt_end::{cut_after_final, final_text, PromptEnd};
use crate::server::respond::{self, Kind, Meta};
use crate::server::state::{unix_now, Ready, SharedState};
use crate::server::structured;
use crate::server::timings::Clock;
use crate::server::tools::{self, ToolPlan, ToolRequest};
use crate::server::truncation;
use crate::server::validate::{self, no_nul, plan, top_logprobs};
use crate::server::{harmony, reasoning, thinking};
use axum::extract::State;
use axum::response::Response;
use candor_models::chat_template::{ChatMessage, ChatTemplate, Thought};
use tokio::sync::mpsc::UnboundedReceiver;

const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

/// Flatten OpenAI messages into template messages, checking roles and content.
pub fn to_chat_messages(messages: &[Message]) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        if !ROLES.contains(&m.role.as_str()) {
            return Err(ApiError::invalid(
                &format!("{param}.role"),
                format!(
                    "unknown role `{}` (expected one of {})",
                    m.role,
                    ROLES.join(", ")
                ),
            ));
        }
        let content = match &m.content {
            // An assistant turn that only called tools has no content, as in transformers.
            None if m.tool_calls.is_some() => None,
            None => Some(String::new()),
            Some(Content::Text(t)) => Some(t.clone()),
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), &p.text) {
                        ("text", Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                &format!("{param}.content"),
                                format!(
                                    "content part of type `{kind}` is not supported (text only)"
                                ),
                            ));
                        }
                    }
                }
                Some(text)
            }
        };
        no_nul(
            &format!("{param}.content"),
            content.as_deref().unwrap_or(""),
        )?;
        let tool_calls = match &m.tool_calls {
            Some(calls) if m.role == "assistant" => {
                Some(tools::template_tool_calls(calls, &param)?)
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    &format!("{param}.tool_calls"),
                    "only assistant messages carry `tool_calls`",
                ))
            }
            None => None,
        };
        // "developer" is OpenAI's newer name for "system".
        let role = if m.role == "developer" {
            "system".to_string()
        } else {
            m.role.clone()
        };
        let reasoning = match (&m.reasoning_content, m.role.as_str()) {
            (Some(text), "assistant") => {
                no_nul(&format!("{param}.reasoning_content"), text)?;
                Some(Thought::new(text))
            }
            (Some(_), _) => {
                return Err(ApiError::invalid(
                    &format!("{param}.reasoning_content"),
                    "only assistant messages carry a thought",
                ))
            }
            (None, _) => None,
        };
        out.push(ChatMessage {
            role,
            content,
            tool_calls,
            tool_call_id: m.tool_call_id.clone(),
            name: m.name.clone(),
            reasoning,
        });
    }
    Ok(out)
}

/// A request's tool plan against the model's chat template and vocabulary.
pub fn tool_plan(ready: &Ready, req: &ToolRequest) -> Result<Option<tools::ToolPlan>, ApiError> {
    let special = |text: &str| ready.tokenizer.is_special_text(text);
    let with_tools = req.tools.is_some_and(|t| !t.is_empty());
    tools::plan(
        req,
        template_for(ready, with_tools)?.source(),
        ready.tool_format,
        &special,
    )
}

/// The template a request renders with: the model's tool template where the request has
/// tools and the model keeps one apart (as transformers' `apply_chat_template` picks it),
/// its chat template otherwise.
pub fn template_for(ready: &Ready, with_tools: bool) -> Result<&ChatTemplate, ApiError> {
    match ready.tool_template.as_deref().filter(|_| with_tools) {
        Some(t) => Ok(t),
        None => chat_template(ready),
    }
}

/// The model's chat template; without one, a 400 that says what the server can do instead (a
/// classifier's or encoder's own refusal where the model generates nothing at all).
pub fn chat_template(ready: &Ready) -> Result<&ChatTemplate, ApiError> {
    ready
        .template
        .as_deref()
        .ok_or_else(|| match ready.generates {
            true => ApiError::bad_request(
                "this model has no chat template; use /v1/completions with a plain prompt",
            ),
            false => crate::server::generation::generation_refused(ready),
        })
}

/// Variables a request may not set through `chat_template_kwargs`: the server sets them.
const RESERVED_TEMPLATE_VARIABLES: [&str; 5] = [
    "messages",
    "tools",
    "add_generation_prompt",
    "bos_token",
    "eos_token",
];

/// A chat request's prompt text, and where a demanded call's opening goes.
pub struct ChatPrompt {
    pub text: String,
    /// A demanded call's opening when the prompt leaves the answer inside a thought: the engine
    /// writes it once the thought closes (`engine::thought::AnswerPrefix`), since at the end of
    /// the prompt it would be part of the thought. None: the opening, if any, ends `text`.
    pub opening_after_thought: Option<String>,
}

/// Render messages (with tools and template switches) with the model's template, ending as
/// `end` says; a forced call opening ends the prompt, or follows the thought it opens.
pub fn chat_prompt_text(
    ready: &Ready,
    messages: &[Message],
    tools: Option<&ToolPlan>,
    kwargs: Option<&serde_json::Map<String, serde_json::Value>>,
    end: PromptEnd,
) -> Result<ChatPrompt, ApiError> {
    let mut msgs = to_chat_messages(messages)?;
    let template = template_for(ready, tools.is_some())?;
    let format = ready
        .tool_format
        .or_else(|| tools::format::ToolFormat::detect(template.source()).ok());
    if let Some(format) = format {
        tools::calls_into_content(&mut msgs, format, template.source());
        if matches!(
            format,
            tools::format::ToolFormat::Mistral | tools::format::ToolFormat::MistralArgs
        ) {
            tools::mistral_ids::in_mistral_form(&mut msgs);
        }
    }
    let mut extra = kwargs.cloned().unwrap_or_default();
    if let Some(name) = RESERVED_TEMPLATE_VARIABLES
        .iter()
        .find(|name| extra.contains_key(**name))
    {
        return Err(ApiError::invalid(
            "chat_template_kwargs",
            format!("`{name}` is set by the server, not through `chat_template_kwargs`"),
        ));
    }
    if let Some(t) = tools {
        extra.insert("tools".into(), t.tools.clone());
    }
    // A request's own `chat_template_kwargs` win over the server's.
    let variables =
        format.map(|f| f.template_variables(tools.map(|t| &t.tools), chrono::Utc::now()));
    for (name, value) in variables.into_iter().flatten() {
        extra.entry(name.to_string()).or_insert(value);
    }
    let mut text = template
        .render_with(&msgs, end.generation_prompt(), &extra)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
    if end == PromptEnd::ContinueFinal {
        let last = messages.last().and_then(final_text).unwrap_or_default();
        let at = cut_after_final(&text, &last).ok_or_else(|| {
            ApiError::invalid(
                "continue_final_message",
                "the chat template does not show the final message's text; it cannot be continued",
            )
        })?;
        text.truncate(at);
    }
    if let Some(t) = tools.filter(|t| !t.output.forced_prefix.is_empty()) {
        if end == PromptEnd::ContinueFinal {
            return Err(ApiError::invalid(
                "continue_final_message",
                "a demanded tool call starts a new answer; it cannot continue the final message",
            ));
        }
        let in_thought = matches!(
            prompt_reasoning(ready, template.source(), &text),
            Some(Reasoning::Think {
                in_thought: true,
                ..
            })
        );
        if in_thought {
            return Ok(ChatPrompt {
                text,
                opening_after_thought: Some(t.output.forced_prefix.clone()),
            });
        }
        text.push_str(&t.output.forced_prefix);
    }
    Ok(ChatPrompt {
        text,
        opening_after_thought: None,
    })
}

/// How the answer to a prompt rendered by the template `source` sets its thought apart:
/// harmony's channel, or the model's think tags (and whether `prompt` left a thought open).
fn prompt_reasoning(ready: &Ready, source: &str, prompt: &str) -> Option<Reasoning> {
    if harmony::template_harmony(source) {
        return Some(Reasoning::Harmony);
    }
    ready.think_tags.map(|tags| Reasoning::Think {
        in_thought: reasoning::prompt_opens_thought(prompt, tags),
        tags,
    })
}

/// A chat request's prompt as `start_chat` renders it with every turn kept: its tokens.
pub fn chat_prompt_tokens(ready: &Ready, req: &ChatRequest) -> Result<Vec<u32>, ApiError> {
    let tools = tool_plan(ready, &tool_request(req))?;
    let kwargs = req.template_kwargs()?;
    let prompt = chat_prompt_text(
        ready,
        &req.messages,
        tools.as_ref(),
        kwargs.as_ref(),
        prompt_end(req)?,
    )?;
    encode_prompt(ready, &prompt.text)
}

/// The request's tools and how it asks for calls.
fn tool_request(req: &ChatRequest) -> ToolRequest<'_> {
    ToolRequest {
        tools: req.tools.as_deref(),
        tool_choice: req.tool_choice.as_ref(),
        parallel_tool_calls: req.parallel_tool_calls,
    }
}

/// Where the request's prompt ends (a new assistant turn, or inside the final message).
fn prompt_end(req: &ChatRequest) -> Result<PromptEnd, ApiError> {
    PromptEnd::of(
        req.add_generation_prompt,
        req.continue_final_message,
        &req.messages,
    )
}

/// `POST /v1/chat/completions/input_tokens` (llama-server's): how many tokens a chat
/// request's prompt takes, `{"input_tokens": n}`.
pub async fn input_tokens(
    State(state): State<SharedState>,
    Json(req): Json<ChatRequest>,
) -> Result<Response, ApiError> {
    state.check_model(req.common.model.as_deref())?;
    let tokens = chat_prompt_tokens(state.ready()?, &req)?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        serde_json::json!({"input_tokens": tokens.len()}),
    )))
}

pub fn encode_prompt(ready: &Ready, text: &str) -> Result<Vec<u32>, ApiError> {
    ready
        .tokenizer
        .encode(text, false)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Fields whose meaning candor does not provide: a clear 400 instead of an answer that
/// silently ignores them.
fn refuse_unsupported(req: &ChatRequest) -> Result<(), ApiError> {
    if req.functions.is_some() || req.function_call.is_some() {
        let param = if req.functions.is_some() {
            "functions"
        } else {
            "function_call"
        };
        return Err(ApiError::invalid(
            param,
            "the legacy `functions` / `function_call` fields are not supported; send `tools` and `tool_choice`",
        ));
    }
    if let Some(other) = req.modalities.iter().flatten().find(|m| *m != "text") {
        return Err(ApiError::invalid(
            "modalities",
            format!("output modality `{other}` is not supported (text only)"),
        ));
    }
    Ok(())
}

pub async fn chat_completions(
    State(state): State<SharedState>,
    Json(req): Json<ChatRequest>,
) -> Result<Response, ApiError> {
    let started = start_chat(
        &state,
        &req,
        crate::server::request_id::answer_id("chatcmpl"),
    )
    .await?;
    if started.stream {
        Ok(respond::stream(started.meta, started.rx))
    } else {
        respond::complete(started.meta, started.rx).await
    }
}

/// A chat request running in the engine: how to answer it, and its choices' events.
pub struct StartedChat {
    pub meta: Meta,
    pub rx: UnboundedReceiver<ChoiceEvent>,
    pub stream: bool,
}

/// Check a chat request, render and encode its prompt, compile its constraint and submit it.
/// Shared by `/v1/chat/completions`, `/v1/responses` and `/v1/messages`, which differ only in
/// how they answer.
pub async fn start_chat(
    state: &SharedState,
    req: &ChatRequest,
    id: String,
) -> Result<StartedChat, ApiError> {
    state.check_model(req.common.model.as_deref())?;
    let ready = state.ready()?;
    refuse_unsupported(req)?;
    let tools = tool_plan(ready, &tool_request(req))?;
    let call_grammar = tools.as_ref().and_then(|t| t.call_grammar.clone());
    // `ignore_eos` runs past the end token, which a grammar may demand: no lazy grammar then.
    let lazy_call = tools
        .as_ref()
        .filter(|_| !req.common.ignore_eos)
        .and_then(|t| t.lazy_calls.clone());
    let format = req.response_format.clone();
    let guide = guide::guide(&req.common)?;
    let constrained =
        format.is_some() || guide.is_some() || call_grammar.is_some() || lazy_call.is_some();
    let format_param = guide
        .as_ref()
        .map_or("response_format".to_string(), |g| g.param.clone());
    let constraint = structured::compile(state, constrained, move |ready| {
        match (
            structured::answer_format(ready, format.as_ref(), guide.as_ref())?,
            call_grammar,
        ) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                &format_param,
                format!("`{format_param}` and a demanded tool call exclude each other"),
            )),
            // A shaped answer leaves no room for a call to open.
            (Some(json), None) => Ok(Some(json)),
            (None, Some(grammar)) => structured::tool_call(ready, grammar).map(Some),
            (None, None) => match lazy_call {
                Some(calls) => structured::lazy_tool_call(ready, calls),
                None => Ok(None),
            },
        }
    })
    .await?;
    let kwargs = req.template_kwargs()?;
    let end = prompt_end(req)?;
    let render = |messages: &[Message]| -> Result<(ChatPrompt, Vec<u32>), ApiError> {
        let text = chat_prompt_text(ready, messages, tools.as_ref(), kwargs.as_ref(), end)?;
        let ids = encode_prompt(ready, &text.text)?;
        Ok((text, ids))
    };
    let (rendered, prompt) = if req.truncate_oldest_turns {
        // Room for the answer asked for (at least a token) beside the prompt.
        let asked = req.common.max_completion_tokens.or(req.common.max_tokens);
        let room = asked.map_or(1, |n| n.max(1) as usize);
        let context = ready.limits.context;
        let (text, ids, dropped) =
            truncation::render_fitting(&req.messages, |n| n + room <= context, render)?;
        if dropped > 0 {
            tracing::info!(id = %id, dropped, "oldest turns dropped to fit the context");
        }
        (text, ids)
    } else {
        render(&req.messages)?
    };
    // A thinking model's thought is split from its answer; the engine follows it where a
    // budget caps it or a grammar must wait for the answer (`thinking.rs`).
    // gpt-oss's thought is on a channel of its own (`harmony`): no budget applies.
    let source = template_for(ready, tools.is_some())?.source();
    let reasoning = prompt_reasoning(ready, source, &rendered.text);
    // Where calls are read, their extractor reads the recipients too (`all\n` among them).
    let prefix = crate::server::recipient::answer_prefix(source, &rendered.text).filter(|_| {
        !tools.as_ref().is_some_and(
            |t| matches!(t.output.syntax, tools::CallSyntax::Blocks(f) if f.addresses_recipients()),
        )
    });
    // `reasoning_format: none`: the thought stays in the text (the engine still follows it).
    let split_thought = match req.reasoning_format.as_deref() {
        None | Some("auto" | "deepseek") => true,
        Some("none") => false,
        Some(other) => {
            return Err(ApiError::invalid(
                "reasoning_format",
                format!(
                    "`reasoning_format` must be auto, deepseek or none (the thought kept in \
                     the content), got `{other}`"
                ),
            ))
        }
    };
    let (budget, budget_message) = thinking::budget(&req.thinking_budget, &ready.limits.thinking)?;
    let thought = match reasoning {
        Some(Reasoning::Think { in_thought, tags }) => thinking::thought(
            ready,
            in_thought,
            tags,
            budget,
            &budget_message,
            constraint.is_some(),
            rendered.opening_after_thought.as_deref(),
        )?,
        Some(Reasoning::Harmony) | None => None,
    };
    let mut prompt = prompt;
    validate::truncate_prompt(
        &mut prompt,
        req.common.truncate_prompt_tokens,
        &ready.limits,
    )?;
    let mut p = plan(&req.common, prompt.len(), &ready.limits)?;
    if p.ignore_eos && constraint.is_some() {
        return Err(structured::ignore_eos_conflict());
    }
    // Mistral's call marker and harmony's channels are special tokens: decoding must keep
    // them to see the calls and the channels.
    let special = |text: &str| ready.tokenizer.is_special_text(text);
    let asked_for_special = p.keep_special_tokens;
    p.keep_special_tokens |= tools
        .as_ref()
        .is_some_and(|t| t.output.syntax.needs_special_tokens())
        || reasoning == Some(Reasoning::Harmony)
        // Seed-OSS's and Mistral's thought tags are special tokens: decoding keeps them to
        // see where the thought ends.
        || matches!(reasoning, Some(Reasoning::Think { tags, .. })
            if special(tags.open) || special(tags.close));
    if p.keep_special_tokens && !asked_for_special {
        // Kept for the server's reading, not the client's: the answer's wrappers (and a call
        // format's turn ends) stay out.
        let format_hidden = match tools.as_ref().map(|t| t.output.syntax) {
            Some(tools::CallSyntax::Blocks(format)) => format.hidden_tokens(),
            _ => &[],
        };
        p.hidden_special_tokens = crate::server::reasoning::ANSWER_WRAPPERS
            .iter()
            .chain(format_hidden)
            .filter_map(|t| ready.tokenizer.token_id(t))
            .filter(|&id| ready.tokenizer.is_special(id))
            .collect();
    }
    let top = top_logprobs(&ready.limits, req.logprobs, req.top_logprobs)?;
    let rx = generation::start(
        ready,
        &id,
        vec![PromptIn::plain(prompt.clone())],
        &p,
        top,
        constraint,
        thought,
    )?;
    let meta = Meta {
        kind: Kind::Chat,
        id,
        created: unix_now(),
        model: state.answering_model(req.common.model.as_deref()),
        system_fingerprint: ready.system_fingerprint.clone(),
        prompt_tokens: prompt.len(),
        n: p.n,
        choices_per_prompt: p.n,
        logprobs: top.is_some(),
        include_usage: p.include_usage,
        continuous_usage: p.continuous_usage,
        clock: Clock::start(),
        timings_per_token: req.common.timings_per_token,
        // One prompt, shared by every choice.
        token_ids: req.common.return_token_ids.then(|| {
            let shared = std::sync::Arc::new(prompt.clone());
            std::iter::repeat_n(shared, p.n).collect()
        }),
        tokens_as_ids: req.common.return_tokens_as_token_ids,
        answer: match (tools, reasoning.filter(|_| split_thought)) {
            (None, None) if prefix.is_none() => None,
            (tools, reasoning) => Some(AnswerSetup {
                tools: tools.map(|t| {
                    let mut output = t.output;
                    // The engine writes the opening into the answer: it is read from there.
                    if rendered.opening_after_thought.is_some() {
                        output.forced_prefix.clear();
                    }
                    output
                }),
                reasoning,
                prefix,
            }),
        },
    };
    Ok(StartedChat {
        meta,
        rx,
        stream: p.stream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thought sent back on an assistant turn reaches templates under both names they read
    /// (`reasoning_content`, gpt-oss's `thinking`); on another role it is a 400 naming it.
    #[test]
    fn thoughts_sent_back_reach_the_template() {
        let parse = |v: serde_json::Value| -> Vec<Message> { serde_json::from_value(v).unwrap() };
        let messages = parse(serde_json::json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "reasoning_content": "Need a call.",
             "tool_calls": [{"id": "c1", "type": "function",
                             "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "assistant", "content": "ok", "reasoning": "Short."}
        ]));
        let out = to_chat_messages(&messages).unwrap();
        assert_eq!(out[0].reasoning, None);
        assert_eq!(out[1].reasoning, Some(Thought::new("Need a call.")));
        assert_eq!(out[2].reasoning, Some(Thought::new("Short.")));
        let t = ChatTemplate::new(
            "{% for m in messages %}[{{ m.thinking }}|{{ m.reasoning_content }}]{% endfor %}",
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            t.render(&out[1..2], false).unwrap(),
            "[Need a call.|Need a call.]"
        );
        let bad =
            parse(serde_json::json!([{"role": "user", "content": "x", "reasoning_content": "y"}]));
        let e = to_chat_messages(&bad).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].reasoning_content"));
    }
}
