//! A `/v1/responses` request body and its translation into the chat request it means: input
//! items become messages, flat function tools become chat tools, `text.format` becomes
//! `response_format`, and a stored conversation continued by `previous_response_id` comes
//! before the new input. What candor cannot honour (conversation objects, stored prompts,
//! built-in tools, images) is refused with the field that asked for it.
use crate::server::error::ApiError;
use crate::server::openai::{called_function, ChatRequest, CommonParams, Content, Message};
use crate::server::validate::{no_nul, string_field};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The include entry that asks for the logprobs of the answer's text.
pub const INCLUDE_LOGPROBS: &str = "message.output_text.logprobs";

#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    pub input: Input,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<i64>,
    pub top_logprobs: Option<i64>,
    /// Function tools, flat: `{"type": "function", "name", "description", "parameters"}`.
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", ...}}`.
    pub text: Option<Value>,
    pub include: Option<Vec<String>>,
    pub metadata: Option<Map<String, Value>>,
    pub truncation: Option<String>,
    pub reasoning: Option<Value>,
    pub chat_template_kwargs: Option<Map<String, Value>>,
    /// A budget on the thought of a thinking model (vLLM's `thinking_token_budget`).
    #[serde(flatten)]
    pub thinking_budget: crate::server::thinking::BudgetAsked,
    /// Keep the response (OpenAI's default: yes) for `previous_response_id` and retrieval.
    pub store: Option<bool>,
    /// The stored response this one continues: its conversation comes before `input`.
    pub previous_response_id: Option<String>,
    /// The conversation this response continues and joins (`/v1/conversations`): an id, or
    /// `{"id": ...}`.
    pub conversation: Option<Value>,
    /// Run apart from the request: polled, cancelled, and (streamed) picked up again.
    pub background: Option<bool>,
    pub prompt: Option<Value>,
    /// `model`, sampling and `stream`, as in chat; `max_tokens` and `n` are refused here.
    #[serde(flatten)]
    pub common: CommonParams,
}

/// `input`: one user message as text, or a list of items.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "`input` must be a string or a list of input items"
)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// How errors of the chat path name the fields of a responses request.
pub const FIELD_NAMES: [(&str, &str); 3] = [
    ("max_completion_tokens", "max_output_tokens"),
    ("messages", "input"),
    ("response_format", "text.format"),
];

impl ResponsesRequest {
    /// The id of the conversation this response joins, if any.
    pub fn conversation_id(&self) -> Result<Option<String>, ApiError> {
        match &self.conversation {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(id)) => Ok(Some(id.clone())),
            Some(c) => match c.get("id").and_then(Value::as_str) {
                Some(id) => Ok(Some(id.to_string())),
                None => Err(ApiError::invalid(
                    "conversation",
                    "`conversation` must be a conversation id or `{\"id\": ...}`",
                )),
            },
        }
    }

    /// This request's input as items (text as one user message), as a continuation sees it.
    pub fn input_items(&self) -> Vec<Value> {
        match &self.input {
            Input::Text(text) => vec![json!({"type": "message", "role": "user", "content": text})],
            Input::Items(items) => items.clone(),
        }
    }

    /// The chat request this request means, after the items of the conversation it continues.
    pub fn to_chat(&self, history: &[Value]) -> Result<ChatRequest, ApiError> {
        self.refuse_unsupported()?;
        let mut common = self.common.clone();
        common.max_completion_tokens = self.max_output_tokens;
        let logprobs = self.include.iter().flatten().any(|i| i == INCLUDE_LOGPROBS);
        Ok(ChatRequest {
            messages: self.messages(history)?,
            common,
            logprobs,
            top_logprobs: self.top_logprobs.filter(|_| logprobs),
            tools: self.tools.as_deref().map(chat_tools).transpose()?,
            tool_choice: self
                .tool_choice
                .as_ref()
                .map(chat_tool_choice)
                .transpose()?,
            parallel_tool_calls: self.parallel_tool_calls,
            response_format: self.response_format()?,
            chat_template_kwargs: self.chat_template_kwargs.clone(),
            reasoning_effort: self
                .reasoning
                .as_ref()
                .and_then(|r| r.get("effort"))
                .and_then(Value::as_str)
                .map(str::to_string),
            thinking_budget: self.thinking_budget.clone(),
            reasoning_format: None,
            truncate_oldest_turns: self.truncation.as_deref() == Some("auto"),
            add_generation_prompt: None,
            continue_final_message: false,
            functions: None,
            function_call: None,
            modalities: None,
        })
    }

    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        if self.conversation.is_some() && self.previous_response_id.is_some() {
            return Err(ApiError::invalid(
                "conversation",
                "`conversation` and `previous_response_id` cannot be used together: each names the conversation continued",
            ));
        }
        if self.prompt.is_some() {
            return Err(ApiError::invalid(
                "prompt",
                "stored prompt templates are not supported; send `instructions` and `input`",
            ));
        }
        if let Some(t) = self
            .truncation
            .as_deref()
            .filter(|t| !["auto", "disabled"].contains(t))
        {
            return Err(ApiError::invalid(
                "truncation",
                format!("`truncation` must be `auto` or `disabled`, got `{t}`"),
            ));
        }
        const LENGTH: &str = "responses take `max_output_tokens` and answer once";
        const NO_PLACE: &str = "a response has no place for what it asks";
        let chat_only = [
            ("max_tokens", self.common.max_tokens.is_some(), LENGTH),
            (
                "max_completion_tokens",
                self.common.max_completion_tokens.is_some(),
                LENGTH,
            ),
            ("n", self.common.n.is_some_and(|n| n != 1), LENGTH),
            // vLLM's answer fields: refused rather than computed for nothing (prompt scores
            // would also keep the prompt from the prefix cache).
            (
                "prompt_logprobs",
                self.common.prompt_logprobs.is_some(),
                NO_PLACE,
            ),
            ("return_token_ids", self.common.return_token_ids, NO_PLACE),
        ];
        if let Some((field, _, why)) = chat_only.iter().find(|(_, sent, _)| *sent) {
            return Err(ApiError::invalid(
                field,
                format!("`{field}` is a chat completions field; {why}"),
            ));
        }
        Ok(())
    }

    /// Instructions first (a continuation's own: earlier ones are not carried over, as in
    /// OpenAI's API), then the conversation so far, then the input.
    fn messages(&self, history: &[Value]) -> Result<Vec<Message>, ApiError> {
        let mut messages = Vec::new();
        if let Some(instructions) = &self.instructions {
            messages.push(Message::new("system", Some(instructions.clone())));
        }
        for item in history {
            add_item(&mut messages, item, "previous_response_id")?;
        }
        match &self.input {
            Input::Text(text) => messages.push(Message::new("user", Some(text.clone()))),
            Input::Items(items) => {
                if items.is_empty() {
                    return Err(ApiError::invalid("input", "`input` must not be empty"));
                }
                for (i, item) in items.iter().enumerate() {
                    add_item(&mut messages, item, &format!("input[{i}]"))?;
                }
            }
        }
        Ok(messages)
    }

    fn response_format(&self) -> Result<Option<Value>, ApiError> {
        let Some(format) = self.text.as_ref().and_then(|t| t.get("format")) else {
            return Ok(None);
        };
        match format.get("type").and_then(Value::as_str) {
            Some("text") => Ok(None),
            Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
            Some("json_schema") => {
                let mut schema = format.clone();
                if let Some(o) = schema.as_object_mut() {
                    o.remove("type");
                }
                Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
            }
            _ => Err(ApiError::invalid(
                "text.format.type",
                "`text.format.type` must be `text`, `json_object` or `json_schema`",
            )),
        }
    }
}

/// One input item onto the messages: a message, a call the assistant made (joined to the
/// assistant turn before it, as chat templates want a turn's calls together), a call's output,
/// or an earlier thought (the thought of the assistant turn it opens: templates that keep the
/// thought before a call show it, gpt-oss's; the others leave past thoughts out).
pub fn add_item(messages: &mut Vec<Message>, item: &Value, param: &str) -> Result<(), ApiError> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let role = string_field(item, "role", param)?;
            let content = item_text(item.get("content"), &format!("{param}.content"))?;
            match messages.last_mut() {
                // The answer after a thought: the same turn.
                Some(m) if role == "assistant" && opened_by_thought(m) => {
                    m.content = Some(Content::Text(content))
                }
                _ => messages.push(Message::new(role, Some(content))),
            }
        }
        "function_call" => {
            let call_id = string_field(item, "call_id", param)?;
            let name = string_field(item, "name", param)?;
            let arguments = string_field(item, "arguments", param)?;
            let call = json!({"id": call_id, "type": "function",
                              "function": {"name": name, "arguments": arguments}});
            match messages.last_mut() {
                Some(m) if m.role == "assistant" => m.tool_calls.get_or_insert_default().push(call),
                _ => {
                    let mut m = Message::new("assistant", None);
                    m.tool_calls = Some(vec![call]);
                    messages.push(m);
                }
            }
        }
        "function_call_output" => {
            let call_id = string_field(item, "call_id", param)?;
            let output = item_text(item.get("output"), &format!("{param}.output"))?;
            let mut m = Message::new("tool", Some(output));
            m.tool_call_id = Some(call_id.to_string());
            m.name = called_function(messages, call_id);
            messages.push(m);
        }
        "reasoning" => {
            let text = thought_text(item, param)?;
            if !text.is_empty() {
                let mut m = Message::new("assistant", None);
                m.reasoning_content = Some(text);
                messages.push(m);
            }
        }
        "item_reference" => {
            return Err(ApiError::invalid(
                param,
                "candor keeps no items to refer to: send the item itself",
            ))
        }
        other => {
            return Err(ApiError::invalid(
                &format!("{param}.type"),
                format!("input item of type `{other}` is not supported (message, function_call, function_call_output, reasoning)"),
            ))
        }
    }
    Ok(())
}

/// A message's content or a call's output: text, or a list of text parts joined.
/// Whether `m` is an assistant turn a thought opened and nothing else has joined yet.
fn opened_by_thought(m: &Message) -> bool {
    m.role == "assistant"
        && m.reasoning_content.is_some()
        && m.content.is_none()
        && m.tool_calls.is_none()
}

/// A reasoning item's text: its `reasoning_text` parts (what candor returns), else its
/// summary's `summary_text` parts, one per line.
fn thought_text(item: &Value, param: &str) -> Result<String, ApiError> {
    let texts = |key: &str, kind: &str| -> Vec<&str> {
        item.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some(kind))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect()
    };
    let content = texts("content", "reasoning_text");
    let text = match content.is_empty() {
        false => content.concat(),
        true => texts("summary", "summary_text").join("\n"),
    };
    no_nul(param, &text)?;
    Ok(text)
}

fn item_text(content: Option<&Value>, param: &str) -> Result<String, ApiError> {
    let text = match content {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                let key = match kind {
                    "input_text" | "output_text" | "text" => "text",
                    "refusal" => "refusal",
                    _ => {
                        return Err(ApiError::invalid(
                            &format!("{param}[{j}].type"),
                            format!("content part of type `{kind}` is not supported (text only)"),
                        ))
                    }
                };
                text.push_str(string_field(part, key, &format!("{param}[{j}]"))?);
            }
            text
        }
        _ => {
            return Err(ApiError::invalid(
                param,
                "must be a string or a list of text parts",
            ))
        }
    };
    no_nul(param, &text)?;
    Ok(text)
}

/// Flat function tools as chat tools (`{"type": "function", "function": {...}}`), the keys
/// in the order sent: the template prints them.
fn chat_tools(tools: &[Value]) -> Result<Vec<Value>, ApiError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let param = format!("tools[{i}]");
            match tool.get("type").and_then(Value::as_str) {
                Some("function") => {}
                other => {
                    return Err(ApiError::invalid(
                        &format!("{param}.type"),
                        format!(
                            "tool type `{}` is not supported (function tools only)",
                            other.unwrap_or("")
                        ),
                    ))
                }
            }
            let mut function = tool.as_object().cloned().unwrap_or_default();
            function.remove("type");
            Ok(json!({"type": "function", "function": function}))
        })
        .collect()
}

/// `{"type": "function", "name": ...}` as chat's `{"type": "function", "function": {"name"}}`;
/// the `auto` / `none` / `required` strings are the same in both.
fn chat_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(_) => Ok(choice.clone()),
        Value::Object(o) if o.get("type") == Some(&json!("function")) => {
            let name = string_field(choice, "name", "tool_choice")?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(ApiError::invalid(
            "tool_choice",
            "`tool_choice` must be `auto`, `none`, `required` or `{\"type\": \"function\", \"name\": ...}`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::openai::Content;

    fn request(body: Value) -> ResponsesRequest {
        serde_json::from_value(body).expect("a responses request")
    }

    fn roles_and_texts(chat: &ChatRequest) -> Vec<(String, Option<String>)> {
        chat.messages
            .iter()
            .map(|m| {
                let text = match &m.content {
                    Some(Content::Text(t)) => Some(t.clone()),
                    _ => None,
                };
                (m.role.clone(), text)
            })
            .collect()
    }

    #[test]
    fn text_input_and_instructions_are_a_system_and_a_user_message() {
        let chat =
            request(json!({"input": "Hi", "instructions": "Be brief.", "max_output_tokens": 9}))
                .to_chat(&[])
                .unwrap();
        assert_eq!(
            roles_and_texts(&chat),
            vec![
                ("system".to_string(), Some("Be brief.".to_string())),
                ("user".to_string(), Some("Hi".to_string()))
            ]
        );
        assert_eq!(chat.common.max_completion_tokens, Some(9));
        assert!(!chat.logprobs);
    }

    #[test]
    fn calls_join_the_assistant_turn_and_outputs_answer_them_by_name() {
        let chat = request(json!({"input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather "}, {"type": "input_text", "text": "in Paris?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c2", "output": "noon"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Sunny.", "annotations": []}]},
        ]}))
        .to_chat(&[])
        .unwrap();
        let roles: Vec<&str> = chat.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
        assert_eq!(
            roles_and_texts(&chat)[0].1.as_deref(),
            Some("Weather in Paris?")
        );
        let calls = chat.messages[1].tool_calls.as_ref().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert!(chat.messages[1].content.is_none());
        assert_eq!(chat.messages[2].tool_call_id.as_deref(), Some("c2"));
        assert_eq!(chat.messages[2].name.as_deref(), Some("get_time"));
    }

    /// A thought item opens the assistant turn whose calls or answer follow it, as that
    /// turn's thought (gpt-oss's template shows the thought before a call).
    #[test]
    fn thoughts_open_the_assistant_turn_that_follows() {
        let chat = request(json!({"input": [
            {"role": "user", "content": "Weather?"},
            {"type": "reasoning", "id": "rs_1", "summary": [],
             "content": [{"type": "reasoning_text", "text": "Need the weather."}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sun"},
            {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "Answer."}]},
            {"type": "message", "role": "assistant", "content": "Sunny."},
        ]}))
        .to_chat(&[])
        .unwrap();
        let roles: Vec<&str> = chat.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
        let thought = |i: usize| chat.messages[i].reasoning_content.as_deref();
        assert_eq!(thought(1), Some("Need the weather."));
        assert!(chat.messages[1].tool_calls.is_some());
        assert_eq!(thought(3), Some("Answer."));
        assert_eq!(roles_and_texts(&chat)[3].1.as_deref(), Some("Sunny."));
    }

    #[test]
    fn a_continuation_puts_its_instructions_first_and_the_history_before_its_input() {
        let history = [
            json!({"type": "message", "role": "user", "content": "Hi"}),
            json!({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}]}),
        ];
        let chat = request(json!({"input": "Bye", "instructions": "Be kind."}))
            .to_chat(&history)
            .unwrap();
        let texts: Vec<(String, Option<String>)> = roles_and_texts(&chat);
        let want = [
            ("system", "Be kind."),
            ("user", "Hi"),
            ("assistant", "Hello!"),
            ("user", "Bye"),
        ]
        .map(|(r, t)| (r.to_string(), Some(t.to_string())));
        assert_eq!(texts, want);
        assert_eq!(
            request(json!({"input": "Bye"})).input_items(),
            [json!({"type": "message", "role": "user", "content": "Bye"})]
        );
    }

    #[test]
    fn tools_choice_format_and_logprobs_take_their_chat_shapes() {
        let chat = request(json!({
            "input": "x",
            "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}, "strict": true}},
            "include": [INCLUDE_LOGPROBS],
            "top_logprobs": 3,
        }))
        .to_chat(&[])
        .unwrap();
        assert_eq!(
            chat.tools.unwrap()[0],
            json!({"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}})
        );
        assert_eq!(
            chat.tool_choice.unwrap(),
            json!({"type": "function", "function": {"name": "f"}})
        );
        assert_eq!(
            chat.response_format.unwrap(),
            json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": true}})
        );
        assert!(chat.logprobs);
        assert_eq!(chat.top_logprobs, Some(3));
        // Without the include entry, top_logprobs asks for nothing.
        let chat = request(json!({"input": "x", "top_logprobs": 3}))
            .to_chat(&[])
            .unwrap();
        assert!(!chat.logprobs && chat.top_logprobs.is_none());
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_field() {
        for (body, param) in [
            (
                json!({"input": "x", "conversation": "conv_1", "previous_response_id": "resp_1"}),
                "conversation",
            ),
            (
                json!({"input": "x", "truncation": "sometimes"}),
                "truncation",
            ),
            (json!({"input": "x", "max_tokens": 5}), "max_tokens"),
            (json!({"input": "x", "n": 2}), "n"),
            (
                json!({"input": "x", "prompt_logprobs": 1}),
                "prompt_logprobs",
            ),
            (
                json!({"input": "x", "return_token_ids": true}),
                "return_token_ids",
            ),
            (json!({"input": []}), "input"),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"input": [{"type": "web_search_call"}]}),
                "input[0].type",
            ),
            (
                json!({"input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0]",
            ),
            (
                json!({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
                "input[0].call_id",
            ),
            (
                json!({"input": [{"role": "user", "content": "a\u{0}b"}]}),
                "input[0].content",
            ),
            (
                json!({"input": "x", "tools": [{"type": "web_search"}]}),
                "tools[0].type",
            ),
            (
                json!({"input": "x", "tool_choice": {"type": "allowed_tools"}}),
                "tool_choice",
            ),
            (
                json!({"input": "x", "text": {"format": {"type": "yaml"}}}),
                "text.format.type",
            ),
        ] {
            let e = request(body.clone()).to_chat(&[]).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
            assert_eq!(e.status, 400);
        }
    }
}
