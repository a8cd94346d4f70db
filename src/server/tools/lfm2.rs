//! LFM2's tool calls (Liquid AI's LFM2 and LFM2.5): a Python list of calls with keyword
//! arguments between special tokens, `<|tool_call_start|>[get_weather(city="Paris"),
//! now()]<|tool_call_end|>`, as llama.cpp's LFM2 parser reads them (JSON's `true` / `false` /
//! `null` taken beside Python's). Its templates show the tools as a JSON list after "List of
//! tools:" and print an assistant turn's content only: a call in the history is written into
//! the content in this syntax (`history_text`).
use serde_json::{Map, Value};

pub const OPEN: &str = "<|tool_call_start|>";
pub const CLOSE: &str = "<|tool_call_end|>";
/// Where LFM2's templates list the tools (LFM2.5's without the tokens: "List of tools: [").
pub const TOOL_LIST: &str = "<|tool_list_start|>";
pub const LFM25_TOOL_LIST: &str = "List of tools: [";

/// An assistant turn's calls (the `tool_calls` the template gets: arguments as objects) as
/// the model writes them, for templates that print content only.
pub fn history_text(calls: &[Value]) -> Option<String> {
    let mut written = Vec::with_capacity(calls.len());
    for call in calls {
        let function = call.get("function")?;
        let name = function.get("name")?.as_str()?;
        let empty = Map::new();
        let arguments = function
            .get("arguments")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let pairs: Vec<String> = arguments
            .iter()
            .map(|(k, v)| format!("{k}={}", python_literal(v)))
            .collect();
        written.push(format!("{name}({})", pairs.join(", ")));
    }
    Some(format!("{OPEN}[{}]{CLOSE}", written.join(", ")))
}

/// `v` as a Python literal: JSON's syntax but for `True`, `False` and `None`; strings
/// double-quoted, as LFM2 writes them (Python's `repr`, `models::py_repr`, single-quotes).
fn python_literal(v: &Value) -> String {
    match v {
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(python_literal).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), python_literal(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        scalar => scalar.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::python_calls::Layout;
    use super::*;
    use serde_json::json;

    #[test]
    fn history_calls_are_written_as_the_model_writes_them() {
        let calls = [
            json!({"id": "c1", "type": "function", "function": {"name": "set",
                   "arguments": {"on": true, "at": null, "tags": ["a", false], "n": 1.5}}}),
            json!({"function": {"name": "now", "arguments": {}}}),
        ];
        let text = history_text(&calls).unwrap();
        assert_eq!(
            text,
            "<|tool_call_start|>[set(on=True, at=None, tags=[\"a\", False], n=1.5), now()]\
             <|tool_call_end|>"
        );
        let body = text
            .strip_prefix(OPEN)
            .unwrap()
            .strip_suffix(CLOSE)
            .unwrap();
        let read = Layout::Lfm2.parse(body).unwrap();
        assert_eq!(read[0].name, "set");
        let args: Value = serde_json::from_str(&read[0].arguments).unwrap();
        assert_eq!(
            args,
            json!({"on": true, "at": null, "tags": ["a", false], "n": 1.5})
        );
        assert_eq!(history_text(&[json!({"no": "function"})]), None);
    }
}
