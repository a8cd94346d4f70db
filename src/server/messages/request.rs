//! A `/v1/messages` request body (Anthropic's Messages API) and the chat request it means:
//! `system` becomes the system turn, content blocks become text, `tool_use` blocks assistant
//! calls and `tool_result` blocks tool messages, tools with an `input_schema` chat functions.
//! Images, documents and server-side tools are refused by field.
use crate::server::error::ApiError;
use crate::server::openai::{called_function, ChatRequest, CommonParams, Message, Stop};
use crate::server::thinking::BudgetAsked;
use crate::server::validate::{no_nul, string_field};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Deserialize)]
pub struct MessagesRequest {
    pub model: Option<String>,
    pub max_tokens: i64,
    pub messages: Vec<InMessage>,
    pub system: Option<Blocks>,
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub stream: bool,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    /// `{"name", "description", "input_schema"}`.
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    /// `{"type": "enabled", "budget_tokens": N}`, `adaptive`, `between_tools` or `disabled`:
    /// the template's `enable_thinking` switch, and a budget on the thought (`thinking.rs`).
    pub thinking: Option<Value>,
    /// `{"format": {"type": "json_schema", "schema": {...}}}`: structured outputs (`effort`
    /// has no meaning here).
    pub output_config: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InMessage {
    pub role: String,
    pub content: Blocks,
}

/// Content: text, or a list of blocks.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "content must be a string or a list of content blocks"
)]
pub enum Blocks {
    Text(String),
    List(Vec<Value>),
}

/// The same request for counting its prompt (`/v1/messages/count_tokens`): no `max_tokens`.
#[derive(Debug, Clone, Deserialize)]
pub struct CountRequest {
    pub model: Option<String>,
    pub messages: Vec<InMessage>,
    pub system: Option<Blocks>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub thinking: Option<Value>,
}

impl CountRequest {
    /// As a request for one token, which renders the same prompt.
    pub fn as_request(&self) -> MessagesRequest {
        MessagesRequest {
            model: self.model.clone(),
            max_tokens: 1,
            messages: self.messages.clone(),
            system: self.system.clone(),
            stop_sequences: None,
            stream: false,
            temperature: None,
            top_p: None,
            top_k: None,
            tools: self.tools.clone(),
            tool_choice: self.tool_choice.clone(),
            thinking: self.thinking.clone(),
            output_config: None,
        }
    }
}

impl MessagesRequest {
    pub fn to_chat(&self) -> Result<ChatRequest, ApiError> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(Message::new("system", Some(text_of(system, "system")?)));
        }
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must not be empty",
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            let param = format!("messages[{i}]");
            match m.role.as_str() {
                "user" => add_user(&mut messages, &m.content, &param)?,
                "assistant" => messages.push(assistant(&m.content, &param)?),
                other => {
                    return Err(ApiError::invalid(
                        &format!("{param}.role"),
                        format!(
                        "unknown role `{other}` (user or assistant; the system prompt is `system`)"
                    ),
                    ))
                }
            }
        }
        let common = CommonParams {
            model: self.model.clone(),
            max_completion_tokens: Some(self.max_tokens),
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            stop: self.stop_sequences.clone().map(Stop::Many),
            stream: self.stream,
            ..CommonParams::default()
        };
        let (tool_choice, parallel_tool_calls) = match &self.tool_choice {
            Some(choice) => chat_tool_choice(choice)?,
            None => (None, None),
        };
        Ok(ChatRequest {
            messages,
            common,
            logprobs: false,
            top_logprobs: None,
            tools: self.tools.as_deref().map(chat_tools).transpose()?,
            tool_choice,
            parallel_tool_calls,
            response_format: self.response_format()?,
            chat_template_kwargs: self.thinking.as_ref().map(thinking_switch).transpose()?,
            reasoning_effort: self
                .output_config
                .as_ref()
                .and_then(|c| c.get("effort"))
                .and_then(Value::as_str)
                .map(str::to_string),
            thinking_budget: self.thinking_budget()?,
            reasoning_format: None,
            truncate_oldest_turns: false,
            add_generation_prompt: None,
            continue_final_message: false,
            functions: None,
            function_call: None,
            modalities: None,
        })
    }
}

impl MessagesRequest {
    fn response_format(&self) -> Result<Option<Value>, ApiError> {
        let Some(format) = self.output_config.as_ref().and_then(|c| c.get("format")) else {
            return Ok(None);
        };
        if format.is_null() {
            return Ok(None);
        }
        match (
            format.get("type").and_then(Value::as_str),
            format.get("schema"),
        ) {
            (Some("json_schema"), Some(schema)) => Ok(Some(
                json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}),
            )),
            _ => Err(ApiError::invalid(
                "output_config.format",
                "`output_config.format` must be `{\"type\": \"json_schema\", \"schema\": {...}}`",
            )),
        }
    }
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

fn unsupported(kind: &str, param: &str) -> ApiError {
    ApiError::invalid(
        &format!("{param}.type"),
        format!("content block of type `{kind}` is not supported here (text, tool_use, tool_result, thinking)"),
    )
}

/// Text blocks joined (the system prompt, a tool result).
fn text_of(blocks: &Blocks, param: &str) -> Result<String, ApiError> {
    let text = match blocks {
        Blocks::Text(t) => t.clone(),
        Blocks::List(list) => {
            let mut parts = Vec::new();
            for (j, block) in list.iter().enumerate() {
                let param = format!("{param}[{j}]");
                match block_type(block) {
                    "text" => parts.push(string_field(block, "text", &param)?),
                    kind => return Err(unsupported(kind, &param)),
                }
            }
            parts.join("\n")
        }
    };
    no_nul(param, &text)?;
    Ok(text)
}

/// A user turn: its tool results first, as the tool messages that answer the calls before
/// them, then its text.
fn add_user(messages: &mut Vec<Message>, content: &Blocks, param: &str) -> Result<(), ApiError> {
    let list = match content {
        Blocks::Text(_) => {
            let text = text_of(content, &format!("{param}.content"))?;
            messages.push(Message::new("user", Some(text)));
            return Ok(());
        }
        Blocks::List(list) => list,
    };
    let mut text = String::new();
    for (j, block) in list.iter().enumerate() {
        let param = format!("{param}.content[{j}]");
        match block_type(block) {
            "text" => text.push_str(string_field(block, "text", &param)?),
            "tool_result" => {
                let call_id = string_field(block, "tool_use_id", &param)?;
                let output = match block.get("content") {
                    None => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => {
                        let blocks: Blocks = serde_json::from_value(v.clone()).map_err(|e| {
                            ApiError::invalid(&format!("{param}.content"), e.to_string())
                        })?;
                        text_of(&blocks, &format!("{param}.content"))?
                    }
                };
                no_nul(&param, &output)?;
                let mut m = Message::new("tool", Some(output));
                m.tool_call_id = Some(call_id.to_string());
                m.name = called_function(messages, call_id);
                messages.push(m);
            }
            kind => return Err(unsupported(kind, &param)),
        }
    }
    no_nul(param, &text)?;
    if !text.is_empty() {
        messages.push(Message::new("user", Some(text)));
    }
    Ok(())
}

/// An assistant turn: its text, its calls (`tool_use`) and its thought (`thinking` blocks,
/// for templates that show the thought before a call; redacted ones hold nothing readable).
fn assistant(content: &Blocks, param: &str) -> Result<Message, ApiError> {
    let list = match content {
        Blocks::Text(_) => {
            let text = text_of(content, &format!("{param}.content"))?;
            return Ok(Message::new("assistant", Some(text)));
        }
        Blocks::List(list) => list,
    };
    let mut text = String::new();
    let mut thought = String::new();
    let mut calls = Vec::new();
    for (j, block) in list.iter().enumerate() {
        let param = format!("{param}.content[{j}]");
        match block_type(block) {
            "text" => text.push_str(string_field(block, "text", &param)?),
            "tool_use" => {
                let id = string_field(block, "id", &param)?;
                let name = string_field(block, "name", &param)?;
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": id, "type": "function",
                                  "function": {"name": name, "arguments": input.to_string()}}));
            }
            "thinking" => thought.push_str(string_field(block, "thinking", &param)?),
            "redacted_thinking" => {}
            kind => return Err(unsupported(kind, &param)),
        }
    }
    no_nul(param, &text)?;
    no_nul(param, &thought)?;
    let mut m = Message::new(
        "assistant",
        (!text.is_empty() || calls.is_empty()).then_some(text),
    );
    if !calls.is_empty() {
        m.tool_calls = Some(calls);
    }
    m.reasoning_content = (!thought.is_empty()).then_some(thought);
    Ok(m)
}

/// Client tools (`name`, `description`, `input_schema`) as chat functions; Anthropic's
/// server-side tools (a versioned `type`) run nowhere here.
fn chat_tools(tools: &[Value]) -> Result<Vec<Value>, ApiError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let param = format!("tools[{i}]");
            match tool.get("type").and_then(Value::as_str) {
                None | Some("custom") => {}
                Some(kind) => {
                    return Err(ApiError::invalid(
                        &format!("{param}.type"),
                        format!("tool type `{kind}` is not supported (client tools with an `input_schema` only)"),
                    ))
                }
            }
            let name = string_field(tool, "name", &param)?;
            let mut function = Map::new();
            function.insert("name".into(), json!(name));
            if let Some(d) = tool.get("description") {
                function.insert("description".into(), d.clone());
            }
            let schema = tool.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"}));
            function.insert("parameters".into(), schema);
            Ok(json!({"type": "function", "function": function}))
        })
        .collect()
}

/// `auto` / `any` / `tool` / `none`, and `disable_parallel_tool_use`.
fn chat_tool_choice(choice: &Value) -> Result<(Option<Value>, Option<bool>), ApiError> {
    let chat = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = string_field(choice, "name", "tool_choice")?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(ApiError::invalid(
                "tool_choice.type",
                "`tool_choice.type` must be `auto`, `any`, `tool` or `none`",
            ))
        }
    };
    let parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .map(|disabled| !disabled);
    Ok((Some(chat), parallel))
}

impl MessagesRequest {
    /// `thinking.budget_tokens`: the most tokens the thought may spend.
    fn thinking_budget(&self) -> Result<BudgetAsked, ApiError> {
        let Some(budget) = self.thinking.as_ref().and_then(|t| t.get("budget_tokens")) else {
            return Ok(BudgetAsked::default());
        };
        match budget.as_i64() {
            Some(n) if n >= 0 => Ok(BudgetAsked::tokens(n)),
            _ => Err(ApiError::invalid(
                "thinking.budget_tokens",
                format!("`thinking.budget_tokens` must be a number of tokens >= 0, not {budget}"),
            )),
        }
    }
}

fn thinking_switch(thinking: &Value) -> Result<Map<String, Value>, ApiError> {
    let enabled = match thinking.get("type").and_then(Value::as_str) {
        Some("enabled" | "adaptive" | "between_tools") => true,
        Some("disabled") => false,
        _ => {
            return Err(ApiError::invalid(
                "thinking.type",
                "`thinking.type` must be `enabled`, `adaptive`, `between_tools` or `disabled`",
            ))
        }
    };
    let mut kwargs = Map::new();
    kwargs.insert("enable_thinking".into(), json!(enabled));
    Ok(kwargs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::openai::Content;

    fn request(body: Value) -> MessagesRequest {
        serde_json::from_value(body).expect("a messages request")
    }

    fn text(m: &Message) -> Option<&str> {
        match &m.content {
            Some(Content::Text(t)) => Some(t),
            _ => None,
        }
    }

    #[test]
    fn a_conversation_with_a_call_becomes_chat_messages() {
        let chat = request(json!({
            "max_tokens": 64,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "I should call.", "signature": "s"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                    {"type": "text", "text": "Thanks!"}]},
            ],
            "stop_sequences": ["\n\n"],
            "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "thinking": {"type": "disabled"},
            "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        }))
        .to_chat()
        .unwrap();
        let roles: Vec<&str> = chat.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(text(&chat.messages[2]), Some("Let me check."));
        assert_eq!(
            chat.messages[2].reasoning_content.as_deref(),
            Some("I should call.")
        );
        let call = &chat.messages[2].tool_calls.as_ref().unwrap()[0];
        assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(text(&chat.messages[3]), Some("sunny"));
        assert_eq!(chat.messages[3].name.as_deref(), Some("get_weather"));
        assert_eq!(chat.common.max_completion_tokens, Some(64));
        assert!(matches!(&chat.common.stop, Some(Stop::Many(s)) if s == &["\n\n"]));
        assert_eq!(
            chat.tools.unwrap()[0],
            json!({"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object"}}})
        );
        assert_eq!(chat.tool_choice, Some(json!("required")));
        assert_eq!(chat.parallel_tool_calls, Some(false));
        assert_eq!(
            chat.chat_template_kwargs.unwrap()["enable_thinking"],
            json!(false)
        );
        assert_eq!(
            chat.response_format.unwrap()["json_schema"]["schema"],
            json!({"type": "object"})
        );
    }

    #[test]
    fn what_cannot_run_here_is_refused_by_string_field() {
        for (body, param) in [
            (json!({"max_tokens": 5, "messages": []}), "messages"),
            (
                json!({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "messages[0].role",
            ),
            (
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}),
                "messages[0].content[0].tool_use_id",
            ),
            (
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "sometimes"}}),
                "tool_choice.type",
            ),
            (
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "maybe"}}),
                "thinking.type",
            ),
            (
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "output_config": {"format": {"type": "xml"}}}),
                "output_config.format",
            ),
            (
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": "a\u{0}"}]}),
                "messages[0].content",
            ),
        ] {
            let e = request(body.clone()).to_chat().unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
        }
    }
}
