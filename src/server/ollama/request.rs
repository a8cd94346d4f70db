//! Ollama's request bodies and their translation into the requests the rest of the server
//! reads: `options` into sampling fields, `format` into a response format, `think` into the
//! template's switch, messages with object-valued call arguments into chat messages.
use crate::server::error::ApiError;
use crate::server::openai::{ChatRequest, CommonParams, Dialect, LlamaSamplers, Message, Stop};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// `options`: the sampling fields of a Modelfile's parameters. Others (`num_ctx`, `num_gpu`,
/// `num_thread`...) are accepted and ignored, as Ollama ignores what a runner does not use.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Options {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub typical_p: Option<f64>,
    /// Tokens to generate; -1 (none): as many as the server's default, -2: fill the context.
    pub num_predict: Option<i64>,
    pub stop: Option<Vec<String>>,
    pub seed: Option<i64>,
    pub repeat_penalty: Option<f64>,
    /// The penalties count the last this many tokens (64 by default; -1: the whole context).
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub mirostat: Option<i64>,
    pub mirostat_tau: Option<f64>,
    pub mirostat_eta: Option<f64>,
}

/// The fields `/api/chat` and `/api/generate` share.
#[derive(Debug, Clone, Deserialize)]
pub struct Shared {
    pub model: Option<String>,
    /// `"json"`, or a JSON schema.
    pub format: Option<Value>,
    /// Read apart (`Shared::options`): inside a flattened struct serde cannot say which
    /// field of it was wrong.
    pub options: Option<Value>,
    /// Ollama streams unless told not to.
    pub stream: Option<bool>,
    /// `true` / `false`: the template's thinking switch; `"low"`... : the reasoning effort.
    pub think: Option<Value>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    /// How long the model stays loaded: candor keeps its one model while it runs, so only
    /// a request that asks nothing reads it (0: Ollama's unload request).
    pub keep_alive: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChatBody {
    #[serde(default)]
    pub messages: Vec<OllamaMessage>,
    pub tools: Option<Vec<Value>>,
    #[serde(flatten)]
    pub shared: Shared,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OllamaMessage {
    pub role: String,
    #[serde(default)]
    pub content: String,
    pub images: Option<Vec<Value>>,
    /// `[{"function": {"name", "arguments": {...}}}]`: arguments as an object.
    pub tool_calls: Option<Vec<Value>>,
    /// On a `tool` message: the function whose result it is.
    pub tool_name: Option<String>,
    /// On an assistant message: its thought, as Ollama returns it.
    pub thinking: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GenerateBody {
    #[serde(default)]
    pub prompt: String,
    pub suffix: Option<String>,
    pub system: Option<String>,
    pub template: Option<String>,
    pub context: Option<Vec<i64>>,
    /// The prompt as it is, without the chat template.
    #[serde(default)]
    pub raw: bool,
    pub images: Option<Vec<Value>>,
    #[serde(flatten)]
    pub shared: Shared,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "`input` must be a string or a list of strings")]
pub enum EmbedInput {
    Text(String),
    Texts(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbedBody {
    pub model: Option<String>,
    pub input: EmbedInput,
    /// Cut inputs longer than the context to fit (Ollama's default) instead of refusing them.
    pub truncate: Option<bool>,
    pub dimensions: Option<i64>,
}

/// The older `/api/embeddings`: one `prompt`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingsBody {
    pub model: Option<String>,
    pub prompt: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShowBody {
    pub model: Option<String>,
    /// The field's older name.
    pub name: Option<String>,
}

/// What `think` asks of the chat template: its variables, and a reasoning effort.
pub type Thinking = (Option<Map<String, Value>>, Option<String>);

/// A model name as Ollama clients send it: the served name, maybe with the `:latest` tag.
pub fn model_name(sent: Option<&str>) -> Option<&str> {
    sent.map(|m| m.strip_suffix(":latest").unwrap_or(m))
}

impl Shared {
    pub fn streaming(&self) -> bool {
        self.stream != Some(false)
    }

    /// What a request that asks nothing (no messages, no prompt) is in Ollama: a load, or with
    /// `keep_alive: 0` an unload; Ollama's answer names it as `done_reason`.
    pub fn load_request(&self) -> &'static str {
        let zero = match &self.keep_alive {
            Some(Value::Number(n)) => n.as_f64() == Some(0.0),
            Some(Value::String(s)) => s.trim_end_matches(|c: char| c.is_alphabetic()) == "0",
            _ => false,
        };
        match zero {
            true => "unload",
            false => "load",
        }
    }

    /// The sampling fields, under OpenAI's names.
    pub fn common(&self) -> Result<CommonParams, ApiError> {
        let o = self.options()?;
        let max_tokens = match o.num_predict {
            None | Some(-1) | Some(-2) => None,
            Some(n) if n > 0 => Some(n),
            Some(n) => {
                return Err(ApiError::invalid(
                    "options.num_predict",
                    format!("`num_predict` must be positive, -1 or -2, got {n}"),
                ))
            }
        };
        Ok(CommonParams {
            model: model_name(self.model.as_deref()).map(str::to_string),
            max_tokens,
            temperature: o.temperature,
            top_p: o.top_p,
            top_k: o.top_k,
            min_p: o.min_p,
            samplers: LlamaSamplers {
                typical_p: o.typical_p,
                repeat_last_n: o.repeat_last_n,
                mirostat: o.mirostat,
                mirostat_tau: o.mirostat_tau,
                mirostat_eta: o.mirostat_eta,
                ..Default::default()
            },
            dialect: Dialect::Ollama,
            repetition_penalty: o.repeat_penalty,
            presence_penalty: o.presence_penalty,
            frequency_penalty: o.frequency_penalty,
            seed: o.seed,
            stop: o.stop.map(Stop::Many),
            stream: self.streaming(),
            ..CommonParams::default()
        })
    }

    fn options(&self) -> Result<Options, ApiError> {
        let Some(options) = self.options.clone().filter(|o| !o.is_null()) else {
            return Ok(Options::default());
        };
        serde_path_to_error::deserialize(options).map_err(|e| {
            let param = match e.path().to_string().as_str() {
                "" | "." => "options".to_string(),
                path => format!("options.{path}"),
            };
            ApiError::invalid(&param, format!("`{param}`: {}", e.into_inner()))
        })
    }

    /// `format` as OpenAI's `response_format`.
    pub fn response_format(&self) -> Result<Option<Value>, ApiError> {
        match &self.format {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) if s == "json" => Ok(Some(json!({"type": "json_object"}))),
            Some(schema @ Value::Object(_)) => Ok(Some(json!({
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema},
            }))),
            Some(other) => Err(ApiError::invalid(
                "format",
                format!("`format` must be \"json\" or a JSON schema, not {other}"),
            )),
        }
    }

    /// `think`: the template's `enable_thinking` (a bool) or the reasoning effort (a level).
    pub fn thinking(&self) -> Result<Thinking, ApiError> {
        match &self.think {
            None | Some(Value::Null) => Ok((None, None)),
            Some(Value::Bool(on)) => {
                let mut kwargs = Map::new();
                kwargs.insert("enable_thinking".into(), json!(on));
                Ok((Some(kwargs), None))
            }
            Some(Value::String(level)) => Ok((None, Some(level.clone()))),
            Some(other) => Err(ApiError::invalid(
                "think",
                format!("`think` must be true, false or a level such as \"high\", not {other}"),
            )),
        }
    }

    /// `top_logprobs` when `logprobs` asks for them.
    pub fn logprobs(&self) -> (bool, Option<i64>) {
        let on = self.logprobs == Some(true);
        (on, on.then_some(self.top_logprobs.unwrap_or(0)))
    }

    /// A chat request of `messages` with this request's settings.
    pub fn chat(
        &self,
        messages: Vec<Message>,
        tools: Option<Vec<Value>>,
    ) -> Result<ChatRequest, ApiError> {
        let (chat_template_kwargs, reasoning_effort) = self.thinking()?;
        let (logprobs, top_logprobs) = self.logprobs();
        Ok(ChatRequest {
            messages,
            common: self.common()?,
            logprobs,
            top_logprobs,
            tools,
            tool_choice: None,
            parallel_tool_calls: None,
            response_format: self.response_format()?,
            chat_template_kwargs,
            reasoning_effort,
            thinking_budget: Default::default(),
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

fn no_images(images: &Option<Vec<Value>>, param: &str) -> Result<(), ApiError> {
    match images {
        Some(list) if !list.is_empty() => Err(ApiError::invalid(
            param,
            "images are not supported: the served model reads text",
        )),
        _ => Ok(()),
    }
}

impl ChatBody {
    pub fn to_chat(&self) -> Result<ChatRequest, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "messages",
                "`messages` must not be empty",
            ));
        }
        let mut messages: Vec<Message> = Vec::with_capacity(self.messages.len());
        // Calls made and not yet answered: (id, function name).
        let mut open_calls: Vec<(String, String)> = Vec::new();
        for (i, m) in self.messages.iter().enumerate() {
            let param = format!("messages[{i}]");
            no_images(&m.images, &format!("{param}.images"))?;
            let mut message = Message::new(&m.role, Some(m.content.clone()));
            if m.role == "assistant" {
                message.reasoning_content = m.thinking.clone().filter(|t| !t.is_empty());
            }
            match m.role.as_str() {
                "system" | "user" => {}
                "assistant" => {
                    if let Some(calls) = &m.tool_calls {
                        let calls = openai_calls(calls, i, &param)?;
                        open_calls = calls
                            .iter()
                            .map(|c| {
                                let id = c["id"].as_str().unwrap_or_default().to_string();
                                let name = c["function"]["name"].as_str().unwrap_or_default();
                                (id, name.to_string())
                            })
                            .collect();
                        message.tool_calls = Some(calls);
                        if m.content.is_empty() {
                            message.content = None;
                        }
                    }
                }
                "tool" => {
                    // The result answers the call of its function made first and not yet
                    // answered (or the first open call when it names none).
                    let at = open_calls
                        .iter()
                        .position(|(_, name)| Some(name) == m.tool_name.as_ref())
                        .or((!open_calls.is_empty()).then_some(0));
                    if let Some(at) = at {
                        let (id, name) = open_calls.remove(at);
                        message.tool_call_id = Some(id);
                        message.name = Some(name);
                    }
                    if let Some(name) = &m.tool_name {
                        message.name = Some(name.clone());
                    }
                }
                other => {
                    return Err(ApiError::invalid(
                        &format!("{param}.role"),
                        format!("unknown role `{other}` (system, user, assistant or tool)"),
                    ))
                }
            }
            messages.push(message);
        }
        self.shared.chat(messages, self.tools.clone())
    }
}

/// Ollama's calls (`{"function": {"name", "arguments": {...}}}`) as OpenAI's, with ids.
fn openai_calls(calls: &[Value], turn: usize, param: &str) -> Result<Vec<Value>, ApiError> {
    calls
        .iter()
        .enumerate()
        .map(|(k, call)| {
            let function = &call["function"];
            let name = function["name"].as_str().ok_or_else(|| {
                ApiError::invalid(
                    &format!("{param}.tool_calls[{k}].function.name"),
                    "a call needs its function's name",
                )
            })?;
            let arguments = match &function["arguments"] {
                Value::Null => "{}".to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok(json!({
                "id": format!("call_{turn}_{k}"),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }))
        })
        .collect()
}

impl GenerateBody {
    /// Refuse what candor cannot honour: images, a template of the request's own, the
    /// `context` of an earlier answer (deprecated by Ollama; candor returns none).
    pub fn check(&self) -> Result<(), ApiError> {
        no_images(&self.images, "images")?;
        if self.template.as_deref().is_some_and(|t| !t.is_empty()) {
            return Err(ApiError::invalid(
                "template",
                "a request's own `template` is not supported: send `raw: true` with the prompt formatted, or use /api/chat",
            ));
        }
        if self.context.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(ApiError::invalid(
                "context",
                "`context` is not supported: continue a conversation with /api/chat",
            ));
        }
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) && self.system.is_some() {
            return Err(ApiError::invalid(
                "suffix",
                "`suffix` fills code between two texts; it takes no `system`",
            ));
        }
        Ok(())
    }

    /// The chat request a templated (not raw) generation means: the system and the prompt.
    pub fn to_chat(&self) -> Result<ChatRequest, ApiError> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(Message::new("system", Some(system.clone())));
        }
        messages.push(Message::new("user", Some(self.prompt.clone())));
        self.shared.chat(messages, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Result<ChatRequest, ApiError> {
        serde_json::from_value::<ChatBody>(body).unwrap().to_chat()
    }

    #[test]
    fn options_format_and_think_take_their_chat_names() {
        let c = chat(json!({
            "model": "m:latest", "messages": [{"role": "user", "content": "hi"}],
            "format": {"type": "object"}, "think": false,
            "options": {"temperature": 0.2, "num_predict": 7, "repeat_penalty": 1.1,
                        "stop": ["\n"], "num_ctx": 4096, "mirostat": 0},
        }))
        .unwrap();
        assert_eq!(c.common.model.as_deref(), Some("m"));
        assert_eq!(c.common.max_tokens, Some(7));
        assert_eq!(c.common.repetition_penalty, Some(1.1));
        assert!(c.common.stream, "Ollama streams by default");
        assert_eq!(c.response_format.unwrap()["type"], "json_schema");
        assert_eq!(
            c.chat_template_kwargs.unwrap()["enable_thinking"],
            json!(false)
        );
        let c = chat(
            json!({"messages": [{"role": "user", "content": "hi"}], "format": "json",
                            "stream": false, "think": "high", "options": {"num_predict": -1}}),
        )
        .unwrap();
        assert_eq!(c.response_format.unwrap()["type"], "json_object");
        assert_eq!(c.reasoning_effort.as_deref(), Some("high"));
        assert_eq!(c.common.max_tokens, None);
        assert!(!c.common.stream);
    }

    #[test]
    fn calls_with_object_arguments_and_their_results_pair_up() {
        let c = chat(json!({"messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "", "thinking": "Two calls.", "tool_calls": [
                {"function": {"name": "get_time", "arguments": {}}},
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
            {"role": "tool", "content": "noon"},
        ]}))
        .unwrap();
        let calls = c.messages[1].tool_calls.as_ref().unwrap();
        assert_eq!(calls[1]["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert!(c.messages[1].content.is_none());
        assert_eq!(
            c.messages[1].reasoning_content.as_deref(),
            Some("Two calls.")
        );
        assert_eq!(c.messages[2].tool_call_id.as_deref(), Some("call_1_1"));
        assert_eq!(c.messages[2].name.as_deref(), Some("get_weather"));
        assert_eq!(c.messages[3].tool_call_id.as_deref(), Some("call_1_0"));
        assert_eq!(c.messages[3].name.as_deref(), Some("get_time"));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_field() {
        let refused = |body: Value, param: &str| {
            let e = chat(body).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
        };
        refused(json!({"messages": []}), "messages");
        refused(
            json!({"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}),
            "messages[0].images",
        );
        refused(
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        );
        refused(
            json!({"messages": [{"role": "user", "content": "x"}], "format": 3}),
            "format",
        );
        refused(
            json!({"messages": [{"role": "user", "content": "x"}], "options": {"num_predict": 0}}),
            "options.num_predict",
        );
        refused(
            json!({"messages": [{"role": "user", "content": "x"}], "options": {"top_k": "many"}}),
            "options.top_k",
        );
        let generate = |body: Value| serde_json::from_value::<GenerateBody>(body).unwrap();
        assert!(
            generate(json!({"prompt": "x", "template": "{{ .Prompt }}"}))
                .check()
                .is_err()
        );
        assert!(generate(json!({"prompt": "x", "context": [1, 2]}))
            .check()
            .is_err());
        assert!(generate(json!({"prompt": "x", "context": []}))
            .check()
            .is_ok());
        assert_eq!(model_name(Some("qwen:latest")), Some("qwen"));
        let load = |keep: Value| {
            serde_json::from_value::<GenerateBody>(json!({"keep_alive": keep}))
                .unwrap()
                .shared
                .load_request()
        };
        assert_eq!(load(json!(0)), "unload");
        assert_eq!(load(json!("0s")), "unload");
        assert_eq!(load(json!("5m")), "load");
        assert_eq!(load(Value::Null), "load");
    }
}
