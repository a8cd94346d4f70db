//! Mistral's tool calls since its v11 tokenizer (Mistral Small 3.2, Devstral, Magistral,
//! Ministral 3; vLLM's `mistral` parser reads both kinds): `[TOOL_CALLS]NAME[ARGS]{...}` per
//! call, the name as text and the arguments' JSON after `[ARGS]` (both markers special tokens),
//! one `[TOOL_CALLS]` before each call or one before them all. The calls run to the end of the
//! answer. The v11 tokenizer's histories give calls ids (`NAME[CALL_ID]ID[ARGS]{...}`), which
//! a model may write back: the id is read past (the answer's calls get ids of their own).
use super::format::{marker, name_first_call_grammar, name_then_args_rules, ParsedCall, WS_RULE};
use serde_json::Value;

pub const TOOL_CALLS: &str = "[TOOL_CALLS]";
pub const ARGS: &str = "[ARGS]";
const CALL_ID: &str = "[CALL_ID]";

/// The calls after the first `[TOOL_CALLS]`; `None` unless the text is only calls.
pub fn parse(body: &str) -> Option<Vec<ParsedCall>> {
    let mut calls = Vec::new();
    for segment in body.split(TOOL_CALLS) {
        let mut rest = segment.trim_start();
        while !rest.is_empty() {
            let (name, after) = rest.split_once(ARGS)?;
            let name = match name.split_once(CALL_ID) {
                Some((name, id)) if !id.trim().contains(char::is_whitespace) => name.trim(),
                Some(_) => return None,
                None => name.trim(),
            };
            if name.is_empty() || name.contains(['{', '[', '<', '\n', ' ']) {
                return None;
            }
            let mut stream = serde_json::Deserializer::from_str(after).into_iter::<Value>();
            let arguments = stream.next()?.ok()?;
            if !arguments.is_object() {
                return None;
            }
            calls.push(ParsedCall {
                name: name.to_string(),
                arguments: serde_json::to_string(&arguments).ok()?,
            });
            rest = after[stream.byte_offset()..].trim_start();
        }
    }
    (!calls.is_empty()).then_some(calls)
}

/// What a demanded call's answer starts with: the marker, and the named function's name and
/// `[ARGS]`.
pub fn forced_prefix(function: Option<&str>) -> String {
    let named = function.map(|f| format!("{f}{ARGS}")).unwrap_or_default();
    format!("{TOOL_CALLS}{named}")
}

/// The grammar after `forced_prefix(function)`: that call's arguments, or one call to any of
/// `functions`. `special` as for the other formats (`[ARGS]` is a token of Mistral's
/// vocabularies).
pub fn call_grammar(
    functions: &[(String, Value)],
    function: Option<&str>,
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    name_first_call_grammar(functions, function, "", "", || {
        call_rules(functions, special)
    })
}

/// The grammar after the `[TOOL_CALLS]` a model writes under auto: its calls (one only unless
/// `parallel`), each after its own marker or not, to the end of the answer.
pub fn lazy_grammar(
    functions: &[(String, Value)],
    parallel: bool,
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    let more = if parallel {
        format!(" (WS? {}? call)*", marker(TOOL_CALLS, special))
    } else {
        String::new()
    };
    Ok(format!(
        "start: call{more}\n{WS_RULE}{}",
        call_rules(functions, special)?
    ))
}

/// Rules `call` (a function's name, `[ARGS]`, its arguments) and `args_i`.
fn call_rules(
    functions: &[(String, Value)],
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    name_then_args_rules(functions, &marker(ARGS, special))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ParsedCall {
        ParsedCall::new(name, arguments)
    }

    #[test]
    fn calls_with_one_marker_each_or_one_for_all() {
        let weather = call("get_weather", "{\"city\":\"Paris\"}");
        let time = call("get_time", "{}");
        for body in [
            "get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{}",
            "get_weather[ARGS]{\"city\": \"Paris\"}get_time[ARGS]{}",
            "get_weather[CALL_ID]abc123XYZ[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{}",
            " get_weather[ARGS]{\"city\": \"Paris\"}\n[TOOL_CALLS] get_time[ARGS] {} ",
        ] {
            assert_eq!(
                parse(body),
                Some(vec![weather.clone(), time.clone()]),
                "{body:?}"
            );
        }
        for bad in [
            "",
            "get_weather{\"city\": \"Paris\"}",
            "get_weather[ARGS]{\"city\": ",
            "get_weather[ARGS][1]",
            "[{\"name\": \"f\", \"arguments\": {}}]",
            "get weather[ARGS]{}",
            "get_weather[ARGS]{} and text",
            "get_weather[CALL_ID]an id[ARGS]{}",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn forced_prefixes_continue_into_calls() {
        let named = forced_prefix(Some("f")) + "{\"a\": 1}";
        let open = forced_prefix(None) + "f[ARGS]{\"a\": 1}";
        for text in [named, open] {
            let body = text.strip_prefix(TOOL_CALLS).unwrap();
            assert_eq!(parse(body), Some(vec![call("f", "{\"a\":1}")]), "{text}");
        }
    }
}
