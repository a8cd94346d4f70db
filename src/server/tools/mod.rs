//! OpenAI tool calling for chat completions: the request's `tools` go to the chat template
//! (which shows them to the model in its own words), and calls in the model's answer come back
//! as `message.tool_calls` (streamed as `delta.tool_calls`, one delta per complete call) with
//! `finish_reason: "tool_calls"`.
//!
//! `tool_choice`: `"auto"` (default) lets the model choose, and a call it opens (its opening
//! token, an answer starting as a bare call object, a harmony message to a function) follows
//! a lazy grammar from there (`format::ToolFormat::lazy_call_grammar`, `LazyCalls`); a call
//! written otherwise and malformed comes back as text. `"none"` neither shows the tools nor
//! reads calls. `"required"` and a named function start the answer with the opening of a call
//! in the model's format and constrain the rest to a grammar (`format::ToolFormat::call_grammar`,
//! harmony's own): one call to a function offered, with arguments following its schema.
mod apertus;
mod deepseek;
pub mod extract;
pub mod format;
mod functionary;
mod functionary_v32;
mod gemma4;
mod gigachat;
mod kimi;
mod lfm2;
mod minimax_m3;
mod mistral_args;
pub mod mistral_ids;
mod py_literal;
mod python_calls;
mod solar;
mod tag_grammar;
pub mod tagged;

use super::error::ApiError;
use candor_models::chat_template::ChatMessage;
use format::{ParsedCall, ToolFormat};
use serde_json::{json, Value};
use std::sync::Arc;

/// How a model writes its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallSyntax {
    /// In blocks of its answer, in one of the formats of `format`.
    Blocks(ToolFormat),
    /// As harmony messages to `functions.NAME` (gpt-oss), read by `harmony`.
    Harmony,
}

impl CallSyntax {
    /// Whether the calls' markers are special tokens the decoder must keep.
    pub fn needs_special_tokens(self) -> bool {
        match self {
            CallSyntax::Blocks(f) => f.needs_special_tokens(),
            CallSyntax::Harmony => true,
        }
    }
}

/// What the response side needs to turn generated text into tool calls.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    pub syntax: CallSyntax,
    /// Put in front of the generated text before reading it (it ends the prompt).
    pub forced_prefix: String,
    /// `parallel_tool_calls: false`: only the first call is returned.
    pub parallel: bool,
    /// The offered functions' names and parameter schemas (they type the tag formats' values).
    pub functions: Arc<[(String, Value)]>,
}

impl ToolOutput {
    /// An extractor of call blocks that has read the forced prefix; None for harmony, whose
    /// calls the reasoning splitter reads.
    pub fn extractor(&self) -> Option<extract::ToolCallExtractor> {
        let CallSyntax::Blocks(format) = self.syntax else {
            return None;
        };
        let mut x = extract::ToolCallExtractor::new(format, self.functions.clone());
        // The prefix opens a call block, so nothing comes out of it yet.
        let early = x.push(&self.forced_prefix);
        debug_assert!(early.is_empty(), "{early:?}");
        Some(x)
    }
}

/// A request's tool setup: what the template gets, what the response reads.
#[derive(Debug, Clone)]
pub struct ToolPlan {
    /// The request's `tools`, for the template.
    pub tools: Value,
    pub output: ToolOutput,
    /// With a demanded call: the lark grammar the rest of the call follows.
    pub call_grammar: Option<String>,
    /// With `tool_choice: "auto"`: the grammars a call follows once the model opens one.
    pub lazy_calls: Option<LazyCalls>,
}

/// The grammars of calls a model opens by itself (`tool_choice: "auto"`).
#[derive(Debug, Clone)]
pub enum LazyCalls {
    /// Call blocks of a format (`format::ToolFormat::lazy_call_grammar`).
    Blocks(ToolFormat, format::LazyCall),
    /// Harmony messages (gpt-oss): per function, the recipient its messages name
    /// (`functions.NAME`) and the lark grammar of their body, its arguments.
    Harmony(Vec<(String, String)>),
}

static FUNCTION_NAME_HELP: &str = "letters, digits, `_` and `-`, at most 64";

fn valid_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The `function` object of a tool definition or a tool call at `param`.
fn function_object<'a>(item: &'a Value, param: &str) -> Result<&'a Value, ApiError> {
    item.get("function")
        .filter(|f| f.is_object())
        .ok_or_else(|| ApiError::invalid(&format!("{param}.function"), "missing `function` object"))
}

/// Names and parameter schemas of the functions in `tools`, after checking each definition.
fn functions(tools: &[Value]) -> Result<Vec<(String, Value)>, ApiError> {
    let mut names: Vec<(String, Value)> = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let param = format!("tools[{i}]");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::invalid(
                &format!("{param}.type"),
                "only tools of type `function` are supported",
            ));
        }
        let function = function_object(tool, &param)?;
        let name = function.get("name").and_then(Value::as_str).unwrap_or("");
        if !valid_function_name(name) {
            return Err(ApiError::invalid(
                &format!("{param}.function.name"),
                format!("function name `{name}` is invalid ({FUNCTION_NAME_HELP})"),
            ));
        }
        if names.iter().any(|(n, _)| n == name) {
            return Err(ApiError::invalid(
                &format!("{param}.function.name"),
                format!("function `{name}` is defined twice"),
            ));
        }
        let parameters = match function.get("parameters") {
            None => serde_json::json!({"type": "object"}),
            Some(p) if p.is_object() => p.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    &format!("{param}.function.parameters"),
                    "`parameters` must be a JSON Schema object",
                ))
            }
        };
        names.push((name.to_string(), parameters));
    }
    Ok(names)
}

/// The fields of a chat request that concern tools.
pub struct ToolRequest<'a> {
    pub tools: Option<&'a [Value]>,
    pub tool_choice: Option<&'a Value>,
    pub parallel_tool_calls: Option<bool>,
}

/// Check the tool fields against each other and the template; `None`: no tools this time.
/// `parser` is the operator's choice of call format (`--tool-call-parser`), else the
/// template's is detected. `special` says which texts are one special token of the model's
/// vocabulary (a grammar names those as tokens).
pub fn plan(
    req: &ToolRequest,
    template_source: &str,
    parser: Option<ToolFormat>,
    special: &dyn Fn(&str) -> bool,
) -> Result<Option<ToolPlan>, ApiError> {
    let tools = req.tools.unwrap_or_default();
    let choice = req.tool_choice;
    if tools.is_empty() {
        return match choice {
            None => Ok(None),
            Some(c) if c.as_str() == Some("none") => Ok(None),
            Some(_) => Err(ApiError::invalid(
                "tool_choice",
                "`tool_choice` needs a non-empty `tools` list",
            )),
        };
    }
    let functions = functions(tools)?;
    let forced: Option<Option<&str>> = match choice {
        None => None,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => None,
            "none" => return Ok(None),
            "required" => Some(None),
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!(
                        "`tool_choice` must be none, auto, required or a function, got `{other}`"
                    ),
                ))
            }
        },
        Some(v) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "tool_choice",
                        "a named `tool_choice` is {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    )
                })?;
            if !functions.iter().any(|(n, _)| n == name) {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("`tool_choice` names `{name}`, which is not in `tools`"),
                ));
            }
            Some(Some(name))
        }
    };
    let parallel = req.parallel_tool_calls.unwrap_or(true);
    if super::harmony::template_harmony(template_source) {
        return harmony_plan(tools, &functions, forced, parallel, special).map(Some);
    }
    let format = match parser {
        Some(format) => format,
        None => ToolFormat::detect(template_source)
            .map_err(|e| ApiError::invalid("tools", e.to_string()))?,
    };
    let invalid = |e: String| ApiError::invalid("tools", e);
    let (call_grammar, lazy_calls) = match forced {
        Some(f) => (
            Some(
                format
                    .call_grammar(&functions, f, special)
                    .map_err(invalid)?,
            ),
            None,
        ),
        None => {
            let lazy = format
                .lazy_call_grammar(&functions, parallel, special)
                .map_err(invalid)?;
            (None, Some(LazyCalls::Blocks(format, lazy)))
        }
    };
    Ok(Some(ToolPlan {
        tools: Value::Array(tools.to_vec()),
        output: ToolOutput {
            syntax: CallSyntax::Blocks(format),
            forced_prefix: forced.map(|f| format.forced_prefix(f)).unwrap_or_default(),
            parallel,
            functions: functions.into(),
        },
        call_grammar,
        lazy_calls,
    }))
}

/// The plan of a harmony model (gpt-oss): its template shows the tools, its calls are
/// messages read by `harmony`. Under auto a message to a function has its body (the
/// arguments) held to its schema from its header's end. A named `tool_choice` ends the prompt
/// with the header of a message to that function and holds the answer to its arguments (the
/// message's body, which `<|call|>`, an end token, closes); `required` ends it with the
/// header up to the function's name and holds the answer to a function's name, the header's
/// end and its arguments.
fn harmony_plan(
    tools: &[Value],
    functions: &[(String, Value)],
    forced: Option<Option<&str>>,
    parallel: bool,
    special: &dyn Fn(&str) -> bool,
) -> Result<ToolPlan, ApiError> {
    let invalid = |e: String| ApiError::invalid("tools", e);
    // Under auto, a message the model addresses to a function holds its body to the arguments.
    let lazy_calls = match forced {
        None => Some(LazyCalls::Harmony(
            functions
                .iter()
                .map(|(name, _)| {
                    let grammar = format::arguments_grammar(functions, name, "")?;
                    Ok((format!("functions.{name}"), grammar))
                })
                .collect::<Result<_, String>>()
                .map_err(invalid)?,
        )),
        Some(_) => None,
    };
    let (forced_prefix, call_grammar) = match forced {
        None => (String::new(), None),
        Some(None) => (
            super::harmony::any_call_opening(),
            Some(super::harmony::any_call_grammar(functions, special).map_err(invalid)?),
        ),
        Some(Some(name)) => (
            super::harmony::call_header(name),
            Some(format::arguments_grammar(functions, name, "").map_err(invalid)?),
        ),
    };
    Ok(ToolPlan {
        tools: Value::Array(tools.to_vec()),
        output: ToolOutput {
            syntax: CallSyntax::Harmony,
            forced_prefix,
            parallel,
            functions: functions.into(),
        },
        call_grammar,
        lazy_calls,
    })
}

/// A call as OpenAI returns it; `index` is set in stream deltas.
pub fn call_json(call: &ParsedCall, index: Option<usize>) -> Value {
    let mut v = json!({
        "id": super::state::new_item_id("call"),
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    });
    if let Some(i) = index {
        v["index"] = json!(i);
    }
    v
}

/// Earlier assistant turns' calls written into their content, in `format`'s syntax, where
/// the template (`source`) prints an assistant turn's content and never its `tool_calls`
/// (LFM2's): the model then sees the calls it made. Other templates write the calls
/// themselves.
pub fn calls_into_content(msgs: &mut [ChatMessage], format: ToolFormat, source: &str) {
    if source.contains("tool_calls") {
        return;
    }
    for m in msgs {
        let Some(text) = m.tool_calls.as_deref().and_then(|c| format.history_text(c)) else {
            continue;
        };
        m.content = Some(m.content.take().unwrap_or_default() + &text);
    }
}

/// An assistant message's `tool_calls` as templates expect them: `arguments` as an object
/// (clients send the JSON text OpenAI returned).
pub fn template_tool_calls(calls: &[Value], param: &str) -> Result<Vec<Value>, ApiError> {
    calls
        .iter()
        .enumerate()
        .map(|(j, call)| {
            let param = format!("{param}.tool_calls[{j}]");
            let function = function_object(call, &param)?;
            if function.get("name").and_then(Value::as_str).is_none() {
                return Err(ApiError::invalid(
                    &format!("{param}.function.name"),
                    "missing function name",
                ));
            }
            let mut call = call.clone();
            if let Some(Value::String(text)) = function.get("arguments") {
                let parsed: Value = serde_json::from_str(text).map_err(|e| {
                    ApiError::invalid(
                        &format!("{param}.function.arguments"),
                        format!("`arguments` is not valid JSON: {e}"),
                    )
                })?;
                call["function"]["arguments"] = parsed;
            }
            Ok(call)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERMES: &str = "{% if tools %}<tools>{% endif %}<tool_call>";

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}})
    }

    fn plan_of(tools: &[Value], choice: Option<Value>) -> Result<Option<ToolPlan>, ApiError> {
        let req = ToolRequest {
            tools: Some(tools),
            tool_choice: choice.as_ref(),
            parallel_tool_calls: None,
        };
        plan(&req, HERMES, None, &|_| false)
    }

    #[test]
    fn tool_choice_modes() {
        let auto = plan_of(&[weather()], None).unwrap().unwrap();
        assert_eq!(auto.output.forced_prefix, "");
        assert!(auto.call_grammar.is_none());
        assert!(plan_of(&[weather()], Some(json!("none")))
            .unwrap()
            .is_none());
        let required = plan_of(&[weather()], Some(json!("required")))
            .unwrap()
            .unwrap();
        assert_eq!(required.output.forced_prefix, "<tool_call>\n{\"name\": ");
        let grammar = required.call_grammar.unwrap();
        assert!(
            grammar.contains("\"\\\"get_weather\\\", \\\"arguments\\\": \""),
            "{grammar}"
        );
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        let named = plan_of(&[weather()], Some(named)).unwrap().unwrap();
        assert!(named
            .output
            .forced_prefix
            .contains("\"get_weather\", \"arguments\": "));
        // The prefix opens a call: nothing is released until the model closes it, and a call
        // cut off right there comes back as text.
        let prefix = named.output.forced_prefix.clone();
        assert_eq!(
            named.output.extractor().map(|mut x| x.finish()),
            Some(vec![extract::Piece::Content(prefix)])
        );
    }

    /// A harmony template (gpt-oss): tools go to it, calls are read from harmony messages (no
    /// extractor, no grammar under auto); a named function forces its message's header and
    /// holds the arguments to a grammar; `required` forces the header up to the name and lets
    /// a grammar choose among the functions, naming the vocabulary's special markers as
    /// tokens.
    #[test]
    fn harmony_templates_take_tools_auto_and_named() {
        let template = "{{ tools }}<|start|>assistant<|channel|>final<|message|>";
        let tools = [weather()];
        let req = |choice: Option<Value>| {
            let r = ToolRequest {
                tools: Some(&tools),
                tool_choice: choice.as_ref(),
                parallel_tool_calls: None,
            };
            plan(&r, template, None, &|t| t.starts_with("<|"))
        };
        let auto = req(None).unwrap().unwrap();
        assert_eq!(auto.output.syntax, CallSyntax::Harmony);
        assert!(auto.output.extractor().is_none());
        assert!(auto.call_grammar.is_none());
        let Some(LazyCalls::Harmony(lazy)) = &auto.lazy_calls else {
            panic!("no lazy grammar for harmony calls");
        };
        assert_eq!(lazy[0].0, "functions.get_weather");
        assert!(lazy[0].1.starts_with("start: args\nargs: %json"));
        let two = [
            weather(),
            json!({"type": "function", "function": {"name": "get_time"}}),
        ];
        let r = ToolRequest {
            tools: Some(&two),
            tool_choice: Some(&json!("required")),
            parallel_tool_calls: None,
        };
        let required = plan(&r, template, None, &|t| t == "<|message|>")
            .unwrap()
            .unwrap();
        assert!(required
            .output
            .forced_prefix
            .ends_with("<|channel|>commentary to=functions."));
        let grammar = required.call_grammar.unwrap();
        assert!(grammar.starts_with("start: call_0 | call_1\n"), "{grammar}");
        // `<|message|>` is a special token of this vocabulary, `<|constrain|>` text.
        assert!(
            grammar.contains(
                "call_1: \"get_time\" \" \" \"<|constrain|>\" \"json\" <|message|> args_1"
            ),
            "{grammar}"
        );
        // A named function: the prompt ends with the header of a message to it, and the
        // answer is held to its arguments.
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        let named = req(Some(named)).unwrap().unwrap();
        assert!(named
            .output
            .forced_prefix
            .contains("to=functions.get_weather"));
        assert!(named
            .call_grammar
            .unwrap()
            .starts_with("start: args\nargs: %json"));
    }

    /// `--tool-call-parser` overrides what the template says: GLM's tags on a Hermes template
    /// (and a template that shows no known format at all).
    #[test]
    fn a_named_parser_replaces_the_detected_format() {
        for template in [HERMES, "{% if tools %}{{ tools }}{% endif %}"] {
            let req = ToolRequest {
                tools: Some(&[weather()]),
                tool_choice: Some(&json!("required")),
                parallel_tool_calls: None,
            };
            let plan = plan(&req, template, Some(ToolFormat::Glm45), &|_| false)
                .unwrap()
                .unwrap();
            assert_eq!(plan.output.syntax, CallSyntax::Blocks(ToolFormat::Glm45));
            assert_eq!(plan.output.forced_prefix, "<tool_call>");
        }
    }

    #[test]
    fn bad_tool_fields_are_400s_naming_the_field() {
        let cases = [
            (vec![json!({"type": "retrieval"})], None, "tools[0].type"),
            (vec![json!({"type": "function"})], None, "tools[0].function"),
            (
                vec![json!({"type": "function", "function": {"name": "has space"}})],
                None,
                "tools[0].function.name",
            ),
            (vec![weather(), weather()], None, "tools[1].function.name"),
            (
                vec![json!({"type": "function", "function": {"name": "f", "parameters": "x"}})],
                None,
                "tools[0].function.parameters",
            ),
            (vec![weather()], Some(json!("sometimes")), "tool_choice"),
            (
                vec![weather()],
                Some(json!({"type": "function", "function": {"name": "other"}})),
                "tool_choice",
            ),
            (vec![], Some(json!("required")), "tool_choice"),
        ];
        for (tools, choice, param) in cases {
            let err = plan_of(&tools, choice).unwrap_err();
            assert_eq!(err.status, 400);
            assert_eq!(err.param.as_deref(), Some(param), "{}", err.message);
        }
        let req = ToolRequest {
            tools: Some(&[weather()]),
            tool_choice: None,
            parallel_tool_calls: None,
        };
        let err = plan(&req, "{{ messages }}", None, &|_| false).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("tools"));
        assert!(
            err.message.contains("does not take tools"),
            "{}",
            err.message
        );
    }

    #[test]
    fn history_arguments_become_objects() {
        let calls = [
            json!({"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"b\": 1, \"a\": 2}"}}),
        ];
        let out = template_tool_calls(&calls, "messages[1]").unwrap();
        assert_eq!(
            serde_json::to_string(&out[0]["function"]["arguments"]).unwrap(),
            "{\"b\":1,\"a\":2}"
        );
        let bad = [json!({"function": {"name": "f", "arguments": "{oops"}})];
        let err = template_tool_calls(&bad, "messages[1]").unwrap_err();
        assert_eq!(
            err.param.as_deref(),
            Some("messages[1].tool_calls[0].function.arguments")
        );
    }
}
