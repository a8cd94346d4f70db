//! How a model family writes tool calls, told from its chat template, and how to read them
//! back from generated text.
//!
//! Each template that takes `tools` also shows the model how to answer with a call; the three
//! conventions below cover the families candor loads (the names are vLLM's parser names):
//! - `hermes`: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, any number of
//!   them after optional text (Qwen2.5, Qwen3, Hermes).
//! - `mistral`: `[TOOL_CALLS]` then a JSON list of `{"name", "arguments"}` to the end.
//! - `llama3_json`: the whole answer is `{"name": ..., "parameters": {...}}`, several joined
//!   by `;` (Llama 3.1-3.3; `<|python_tag|>` before it is a special token, dropped in decoding).
use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    Hermes,
    Mistral,
    Llama3Json,
}

/// Why a template cannot be asked for tool calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsupported {
    /// The template never reads `tools`: the model would not see them.
    NoTools,
    /// It reads `tools`, but in none of the conventions above.
    UnknownFormat,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::NoTools => {
                write!(f, "this model's chat template does not take tools")
            }
            Unsupported::UnknownFormat => write!(
                f,
                "this model's chat template takes tools, but writes calls in a format candor \
                 cannot read (known: hermes <tool_call>, mistral [TOOL_CALLS], llama 3 JSON)"
            ),
        }
    }
}

/// How every call object opens, in all three formats (the name comes first).
const CALL_OBJECT_OPENING: &str = "{\"name\": ";

/// The grammars of a call under `tool_choice: "auto"` (`ToolFormat::lazy_call_grammar`).
#[derive(Debug, Clone)]
pub struct LazyCall {
    /// What follows the call's opening token (`ToolFormat::trigger_text`), to the end of
    /// its block.
    pub after_trigger: Option<String>,
    /// A whole answer that is bare call objects (`ToolFormat::bare_call_marker`).
    pub bare: Option<String>,
    /// Whether the text is free again after a triggered call.
    pub rearm: bool,
}

/// One call read from the output: the function's name and its arguments as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCall {
    pub name: String,
    pub arguments: String,
}

impl ToolFormat {
    pub fn detect(template: &str) -> Result<ToolFormat, Unsupported> {
        if template.contains("<arg_key>") {
            // GLM-4.5/4.6: `<tool_call>` blocks too, but of XML key/value pairs, not JSON.
            Err(Unsupported::UnknownFormat)
        } else if template.contains("<tool_call>") {
            Ok(ToolFormat::Hermes)
        } else if template.contains("[TOOL_CALLS]") {
            Ok(ToolFormat::Mistral)
        } else if template.contains("<|python_tag|>")
            || template.contains("\"parameters\": dictionary of argument name")
        {
            Ok(ToolFormat::Llama3Json)
        } else if template.contains("tools") {
            Err(Unsupported::UnknownFormat)
        } else {
            Err(Unsupported::NoTools)
        }
    }

    /// Text that opens a call block.
    pub fn call_start(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "<tool_call>",
            ToolFormat::Mistral => "[TOOL_CALLS]",
            ToolFormat::Llama3Json => "{",
        }
    }

    /// Text that closes one call block; `None`: the block runs to the end of the output.
    pub fn call_end(self) -> Option<&'static str> {
        match self {
            ToolFormat::Hermes => Some("</tool_call>"),
            ToolFormat::Mistral | ToolFormat::Llama3Json => None,
        }
    }

    /// Whether a block may only open the output (after whitespace); otherwise it is text.
    pub fn only_at_start(self) -> bool {
        self == ToolFormat::Llama3Json
    }

    /// Whether the start text belongs to the block's JSON (llama 3's `{`).
    pub fn start_in_body(self) -> bool {
        self == ToolFormat::Llama3Json
    }

    /// How an answer opens that is a call without its block marker (hermes models, small ones
    /// especially, sometimes answer with the bare call object, pretty-printed or in a ```json
    /// fence, as llama.cpp's hermes parser also accepts); it then runs to the end.
    pub fn bare_call_start(self) -> Option<&'static str> {
        match self {
            ToolFormat::Hermes => Some(self.bare_call_marker()),
            // Llama 3's calls are read at the answer's start anyway (`only_at_start`).
            ToolFormat::Mistral | ToolFormat::Llama3Json => None,
        }
    }

    /// Whether the start marker is a special token the decoder must keep.
    pub fn needs_special_tokens(self) -> bool {
        self == ToolFormat::Mistral
    }

    /// The calls in one block's body, or `None` when it is not well-formed (then the block is
    /// returned as text, as vLLM's parsers do).
    pub fn parse_block(self, body: &str) -> Option<Vec<ParsedCall>> {
        match self {
            ToolFormat::Hermes => {
                Some(vec![call_object(&serde_json::from_str(body.trim()).ok()?)?])
            }
            ToolFormat::Mistral => match serde_json::from_str(body.trim()).ok()? {
                Value::Array(items) => items.iter().map(call_object).collect(),
                one => Some(vec![call_object(&one)?]),
            },
            ToolFormat::Llama3Json => json_sequence(body)?.iter().map(call_object).collect(),
        }
    }

    /// The calls of a bare-call answer (`bare_call_start`, its fence removed): one or more
    /// call objects one after the other; `None` if anything else is there.
    pub fn parse_bare(self, body: &str) -> Option<Vec<ParsedCall>> {
        json_sequence(body)?.iter().map(call_object).collect()
    }

    /// The key a call's arguments go under.
    fn arguments_key(self) -> &'static str {
        match self {
            ToolFormat::Llama3Json => "parameters",
            ToolFormat::Hermes | ToolFormat::Mistral => "arguments",
        }
    }

    /// What closes a call after its arguments object.
    fn call_tail(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "}\n</tool_call>",
            ToolFormat::Mistral => "}]",
            ToolFormat::Llama3Json => "}",
        }
    }

    /// The lark grammar of what follows `forced_prefix(function)`: the rest of one call, to
    /// `function` or to any of `functions` (name, parameters schema), its arguments following
    /// the function's schema. With it a demanded call always parses and names a known function.
    pub fn call_grammar(
        self,
        functions: &[(String, Value)],
        function: Option<&str>,
    ) -> Result<String, String> {
        let tail = literal(self.call_tail());
        match function {
            Some(name) => arguments_grammar(functions, name, &format!(" {tail}")),
            // The prefix has opened the call object and its "name" key.
            None => Ok(format!(
                "start: call {tail}\n{}",
                self.call_rules(functions, "")?
            )),
        }
    }

    /// For `tool_choice: "auto"`: the lark grammars of a call the model opens, for lazy
    /// grammars: after a token that opens a call (`trigger_text`), and of an answer that
    /// opens as bare call objects (hermes models that leave the marker out, llama 3's plain
    /// JSON calls). With them a call the model starts always parses, as with llama.cpp's lazy
    /// tool grammars; the text around calls stays free.
    pub fn lazy_call_grammar(
        self,
        functions: &[(String, Value)],
        parallel: bool,
    ) -> Result<LazyCall, String> {
        let rules = self.call_rules(functions, CALL_OBJECT_OPENING)?;
        let tail = literal(self.call_tail());
        // Call objects one after the other (llama 3 joins them with `;`), the whole answer;
        // one only under `parallel_tool_calls: false`.
        let objects = |separator: &str| {
            let more = if parallel {
                format!(" (WS? {separator} one)*")
            } else {
                String::new()
            };
            format!(
                "start: WS? one{more}\none: call \"}}\"\n\
                 WS: /[ \\t\\n]{{1,4}}/\n{rules}"
            )
        };
        let list_more = if parallel { " (\",\" \" \"? one)*" } else { "" };
        let (after_trigger, bare) = match self {
            ToolFormat::Hermes => (
                format!("start: \"\\n\" call {tail}\n{rules}"),
                Some(objects("")),
            ),
            // Mistral's calls are one list, running to the end of the answer.
            ToolFormat::Mistral => (
                format!("start: \"[\" one{list_more} \"]\"\none: call \"}}\"\n{rules}"),
                None,
            ),
            // Llama 3 calls open the answer, after `<|python_tag|>` or not.
            ToolFormat::Llama3Json => (objects("\";\" WS?"), Some(objects("\";\" WS?"))),
        };
        Ok(LazyCall {
            after_trigger: Some(after_trigger),
            bare,
            // After a hermes call the text is free again (and may hold more calls), unless
            // one call is all the request takes: then only the end may follow.
            rearm: parallel && self.call_end().is_some(),
        })
    }

    /// The token text that opens a call anywhere in the answer, for a lazy grammar's trigger.
    pub fn trigger_text(self) -> &'static str {
        match self {
            // Llama 3's block start (`{`) is text; the tag before its calls is a token.
            ToolFormat::Llama3Json => "<|python_tag|>",
            ToolFormat::Hermes | ToolFormat::Mistral => self.call_start(),
        }
    }

    /// The text (after whitespace) that commits an answer to its bare-call grammar: the call
    /// object's opening up to its first key, `{"name"`.
    pub fn bare_call_marker(self) -> &'static str {
        CALL_OBJECT_OPENING.trim_end_matches([':', ' '])
    }

    /// Lark rule `call`: `opening`, then one function's name and arguments (its schema's JSON),
    /// for any of `functions`; the call object's closing brace is left to the caller.
    fn call_rules(self, functions: &[(String, Value)], opening: &str) -> Result<String, String> {
        let names: Vec<String> = (0..functions.len()).map(|i| format!("call_{i}")).collect();
        let mut lark = format!("call: {}\n", names.join(" | "));
        for (i, (name, params)) in functions.iter().enumerate() {
            let head = format!("{opening}{}", self.name_then_arguments(name));
            lark.push_str(&format!(
                "call_{i}: {} args_{i}\nargs_{i}: %json {}\n",
                literal(&head),
                schema_text(params)?
            ));
        }
        Ok(lark)
    }

    /// Text the answer is made to begin with, when the request demands a call
    /// (`tool_choice: "required"` or a named function): the model then continues a call.
    pub fn forced_prefix(self, function: Option<&str>) -> String {
        let opening = match self {
            ToolFormat::Hermes => "<tool_call>\n",
            ToolFormat::Mistral => "[TOOL_CALLS][",
            ToolFormat::Llama3Json => "",
        };
        let named = function.map(|f| self.name_then_arguments(f));
        format!(
            "{opening}{CALL_OBJECT_OPENING}{}",
            named.unwrap_or_default()
        )
    }

    /// A call's text from its name to its arguments: `"f", "arguments": `.
    fn name_then_arguments(self, name: &str) -> String {
        let name = serde_json::to_string(name).unwrap_or_default();
        format!("{name}, \"{}\": ", self.arguments_key())
    }
}

/// The lark grammar of function `name`'s arguments (its schema's JSON), then `tail` (lark
/// items after `args`): what follows a prefix that has named the function.
pub fn arguments_grammar(
    functions: &[(String, Value)],
    name: &str,
    tail: &str,
) -> Result<String, String> {
    let (_, params) = functions
        .iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| format!("no function `{name}`"))?;
    Ok(format!(
        "start: args{tail}\nargs: %json {}\n",
        schema_text(params)?
    ))
}

/// `text` as a lark string literal (JSON string syntax).
pub(crate) fn literal(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// A parameters schema for `%json`, whitespace bounded as in response formats.
pub(crate) fn schema_text(params: &Value) -> Result<String, String> {
    let bounded = crate::engine::grammar::bounded_whitespace(params.clone())?;
    serde_json::to_string(&bounded).map_err(|e| e.to_string())
}

/// `{"name": "f", "arguments": {...}}` (or `"parameters"`) as a call; arguments given as a
/// JSON string are taken as they are.
fn call_object(v: &Value) -> Option<ParsedCall> {
    let name = v.get("name")?.as_str()?.to_string();
    if name.is_empty() {
        return None;
    }
    let arguments = match v.get("arguments").or_else(|| v.get("parameters")) {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(args @ Value::Object(_)) => serde_json::to_string(args).ok()?,
        Some(_) => return None,
    };
    Some(ParsedCall { name, arguments })
}

/// JSON values one after another, separated by whitespace or `;`; `None` unless the whole
/// text is such a sequence.
fn json_sequence(text: &str) -> Option<Vec<Value>> {
    let mut values = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        values.push(stream.next()?.ok()?);
        rest = rest[stream.byte_offset()..].trim_start();
        if let Some(after) = rest.strip_prefix(';') {
            rest = after.trim_start();
        }
    }
    (!values.is_empty()).then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ParsedCall {
        ParsedCall {
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn formats_are_told_from_templates() {
        let qwen = include_str!("../../../tests/fixtures/chat_tools/qwen2.5-0.5b.json");
        assert_eq!(ToolFormat::detect(qwen), Ok(ToolFormat::Hermes));
        // GLM-4.6's `<tool_call>` holds XML argument pairs, Seed-OSS's and Granite's calls
        // other tags: refused, not read as Hermes JSON.
        let families: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/fixtures/chat_templates/families.json"
        ))
        .unwrap();
        for family in families["families"].as_array().unwrap() {
            let template = family["chat_template"].as_str().unwrap();
            assert_eq!(
                ToolFormat::detect(template),
                Err(Unsupported::UnknownFormat),
                "{}",
                family["name"]
            );
        }
        assert_eq!(
            ToolFormat::detect("{{ '[AVAILABLE_TOOLS]' }}{{ '[TOOL_CALLS]' }}"),
            Ok(ToolFormat::Mistral)
        );
        assert_eq!(
            ToolFormat::detect("{% if tools %}{{ '<|python_tag|>' }}{% endif %}"),
            Ok(ToolFormat::Llama3Json)
        );
        assert_eq!(
            ToolFormat::detect("{% if tools %}{{ tools | tojson }}{% endif %}"),
            Err(Unsupported::UnknownFormat)
        );
        assert_eq!(
            ToolFormat::detect("{% for m in messages %}{{ m.content }}{% endfor %}"),
            Err(Unsupported::NoTools)
        );
    }

    #[test]
    fn blocks_parse_per_format() {
        let hermes = ToolFormat::Hermes;
        assert_eq!(
            hermes.parse_block(
                "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"n\": 2}}\n"
            ),
            Some(vec![call("get_weather", "{\"city\":\"Paris\",\"n\":2}")])
        );
        assert_eq!(
            hermes.parse_block("{\"name\": \"now\"}"),
            Some(vec![call("now", "{}")])
        );
        assert_eq!(
            hermes.parse_block("{\"name\": \"f\", \"arguments\": {"),
            None
        );
        assert_eq!(hermes.parse_block("{\"arguments\": {}}"), None);
        assert_eq!(hermes.parse_block("[1, 2]"), None);
        assert_eq!(
            ToolFormat::Mistral.parse_block(
                " [{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": \"{}\"}]"
            ),
            Some(vec![call("a", "{\"x\":1}"), call("b", "{}")])
        );
        assert_eq!(
            ToolFormat::Llama3Json.parse_block(
                "{\"name\": \"a\", \"parameters\": {\"q\": \"x;y\"}}; {\"name\": \"b\", \"parameters\": {}}"
            ),
            Some(vec![call("a", "{\"q\":\"x;y\"}"), call("b", "{}")])
        );
        assert_eq!(
            ToolFormat::Llama3Json.parse_block("{\"name\": \"a\"} and then text"),
            None
        );
    }

    #[test]
    fn forced_prefixes_continue_into_parsable_calls() {
        for format in [
            ToolFormat::Hermes,
            ToolFormat::Mistral,
            ToolFormat::Llama3Json,
        ] {
            let named = format.forced_prefix(Some("get_weather"));
            let open = format.forced_prefix(None);
            let (named_tail, open_tail) = match format {
                ToolFormat::Hermes => (
                    "{\"city\": \"Oslo\"}}",
                    "\"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}",
                ),
                ToolFormat::Mistral => (
                    "{\"city\": \"Oslo\"}}]",
                    "\"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]",
                ),
                ToolFormat::Llama3Json => (
                    "{\"city\": \"Oslo\"}}",
                    "\"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
                ),
            };
            for text in [named + named_tail, open + open_tail] {
                let body = text.strip_prefix(format.call_start()).unwrap();
                let body = if format.start_in_body() {
                    text.as_str()
                } else {
                    body
                };
                assert_eq!(
                    format.parse_block(body),
                    Some(vec![call("get_weather", "{\"city\":\"Oslo\"}")]),
                    "{format:?}: {text}"
                );
            }
        }
    }
}
