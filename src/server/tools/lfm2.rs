//! LFM2's tool calls (Liquid AI's LFM2 and LFM2.5): a Python list of calls with keyword
//! arguments between special tokens, `<|tool_call_start|>[get_weather(city="Paris"),
//! now()]<|tool_call_end|>`, as llama.cpp's LFM2 parser reads them (JSON's `true` / `false` /
//! `null` taken beside Python's). Its templates show the tools as a JSON list after "List of
//! tools:" and print an assistant turn's content only: a call in the history is written into
//! the content in this syntax (`history_text`).
use super::format::{
    call_alternatives, literal, marker, schema_properties, schema_text, ParsedCall,
};
use super::py_literal;
use super::tagged::with_definitions;
use serde_json::{Map, Value};

pub const OPEN: &str = "<|tool_call_start|>";
pub const CLOSE: &str = "<|tool_call_end|>";
/// Where LFM2's templates list the tools (LFM2.5's without the tokens: "List of tools: [").
pub const TOOL_LIST: &str = "<|tool_list_start|>";
pub const LFM25_TOOL_LIST: &str = "List of tools: [";

/// The calls of a block's body (`[f(a=1), g()]`); `None` unless it is such a list.
pub fn parse(body: &str) -> Option<Vec<ParsedCall>> {
    py_literal::parse_calls(body.trim())?
        .into_iter()
        .map(|(name, arguments)| {
            let arguments = serde_json::to_string(&Value::Object(arguments)).ok()?;
            Some(ParsedCall::new(&name, &arguments))
        })
        .collect()
}

/// What a demanded call's answer starts with: the block's opening and the list's, and the
/// named function's name and `(`.
pub fn forced_prefix(function: Option<&str>) -> String {
    let named = function.map(|f| format!("{f}(")).unwrap_or_default();
    format!("{OPEN}[{named}")
}

/// The grammar after `forced_prefix(function)`: that call's arguments, or one call to any of
/// `functions`, then the list's and the block's close.
pub fn call_grammar(
    functions: &[(String, Value)],
    function: Option<&str>,
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    let end = format!("{} {}", literal("]"), marker(CLOSE, special));
    match function {
        Some(name) => {
            let i = super::format::function_index(functions, name)?;
            let args = argument_rules(i, &functions[i].1)?;
            Ok(format!("start: args_{i} {} {end}\n{args}", literal(")")))
        }
        None => Ok(format!("start: call {end}\n{}", call_rules(functions)?)),
    }
}

/// The grammar after a call block's opening token under `tool_choice: "auto"`: the list of
/// calls (one where the request takes one) and the close.
pub fn block_grammar(
    functions: &[(String, Value)],
    parallel: bool,
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    let more = match parallel {
        true => " (\",\" WS? call)*",
        false => "",
    };
    Ok(format!(
        "start: \"[\" call{more} \"]\" {}\nWS: /[ \\t\\n]{{1,4}}/\n{}",
        marker(CLOSE, special),
        call_rules(functions)?
    ))
}

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

/// Rule `call`: one of `functions` by name, `(`, its arguments, `)`.
fn call_rules(functions: &[(String, Value)]) -> Result<String, String> {
    call_alternatives(functions, |i, name, params| {
        Ok(format!(
            "call_{i}: {} args_{i} {}\n{}",
            literal(&format!("{name}(")),
            literal(")"),
            argument_rules(i, params)?
        ))
    })
}

/// Rule `args_i`: the keyword arguments of a function of parameters `params`, in the schema's
/// order, the required ones always, each value JSON of its property's schema (JSON is Python
/// but for three words, which `py_literal::parse_calls` takes), comma-separated.
///
/// With optional arguments a comma goes only between arguments present: `first_i_j` is the
/// list from property j on with none written before it, `rest_i_j` the same after one was.
fn argument_rules(i: usize, params: &Value) -> Result<String, String> {
    let properties = schema_properties(params);
    let n = properties.len();
    let mut rules = format!("args_{i}: first_{i}_0\nfirst_{i}_{n}: \"\"\nrest_{i}_{n}: \"\"\n");
    for (j, (key, schema, required)) in properties.into_iter().enumerate() {
        let arg = format!("arg_{i}_{j}");
        let (first, rest) = match required {
            true => (
                format!("{arg} rest_{i}_{}", j + 1),
                format!("\",\" \" \" {arg} rest_{i}_{}", j + 1),
            ),
            false => (
                format!("{arg} rest_{i}_{} | first_{i}_{}", j + 1, j + 1),
                format!("(\",\" \" \" {arg})? rest_{i}_{}", j + 1),
            ),
        };
        rules.push_str(&format!(
            "first_{i}_{j}: {first}\nrest_{i}_{j}: {rest}\n{arg}: {} json_{i}_{j}\n\
             json_{i}_{j}: %json {}\n",
            literal(&format!("{key}=")),
            schema_text(&with_definitions(schema, params))?
        ));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_lists_read_back_as_calls() {
        assert_eq!(
            parse(" [get_weather(city=\"Paris\", days=2), now()] "),
            Some(vec![
                ParsedCall::new("get_weather", "{\"city\":\"Paris\",\"days\":2}"),
                ParsedCall::new("now", "{}"),
            ])
        );
        for bad in ["", "[]", "get_weather(city=\"Paris\")", "[f(\"Paris\")]"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let named = forced_prefix(Some("f")) + "a=1)]";
        let body = named.strip_prefix(OPEN).unwrap();
        assert_eq!(parse(body), Some(vec![ParsedCall::new("f", "{\"a\":1}")]));
    }

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
        let read = parse(body).unwrap();
        assert_eq!(read[0].name, "set");
        let args: Value = serde_json::from_str(&read[0].arguments).unwrap();
        assert_eq!(
            args,
            json!({"on": true, "at": null, "tags": ["a", false], "n": 1.5})
        );
        assert_eq!(history_text(&[json!({"no": "function"})]), None);
    }

    #[test]
    fn arguments_keep_the_schema_order_with_commas_between_those_present() {
        let params = json!({"type": "object", "properties": {
            "a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}},
            "required": ["b"]});
        let rules = argument_rules(0, &params).unwrap();
        assert!(
            rules.contains("first_0_0: arg_0_0 rest_0_1 | first_0_1\n"),
            "{rules}"
        );
        assert!(rules.contains("first_0_1: arg_0_1 rest_0_2\n"), "{rules}");
        assert!(
            rules.contains("rest_0_2: (\",\" \" \" arg_0_2)? rest_0_3\n"),
            "{rules}"
        );
        assert!(rules.contains("arg_0_1: \"b=\" json_0_1\n"), "{rules}");
    }
}
