//! Apertus' tool calls (Swiss AI's Apertus 8B and 70B; vLLM's `apertus` parser):
//! `<|tools_prefix|>[{"NAME": {...}}, ...]<|tools_suffix|>`, a JSON list whose objects have one
//! key each, the function's name, holding its arguments. Both markers are special tokens of
//! Apertus' vocabulary; the template joins the objects with `, `.
use super::format::{
    args_rule, call_alternatives, literal, marker, name_first_call_grammar, ParsedCall,
};
use serde_json::Value;

pub const OPEN: &str = "<|tools_prefix|>";
pub const CLOSE: &str = "<|tools_suffix|>";

/// The calls in a block's body (`[{"NAME": {...}}, ...]`); `None` unless it is such a list,
/// each object one plausible name over an arguments object (or that object's JSON text).
pub fn parse(body: &str) -> Option<Vec<ParsedCall>> {
    let Value::Array(items) = serde_json::from_str(body.trim()).ok()? else {
        return None;
    };
    let calls = items
        .iter()
        .map(|item| {
            let object = item.as_object().filter(|o| o.len() == 1)?;
            let (name, arguments) = object.iter().next()?;
            if name.is_empty() || name.contains(['<', '>', '\n', ' ']) {
                return None;
            }
            let arguments = match arguments {
                Value::Object(_) => serde_json::to_string(arguments).ok()?,
                // A history whose arguments were text comes back as that text's JSON.
                Value::String(text) => match serde_json::from_str(text).ok()? {
                    object @ Value::Object(_) => serde_json::to_string(&object).ok()?,
                    _ => return None,
                },
                _ => return None,
            };
            Some(ParsedCall::new(name, &arguments))
        })
        .collect::<Option<Vec<_>>>()?;
    (!calls.is_empty()).then_some(calls)
}

/// A call object's opening up to its arguments: `{"NAME": `.
fn object_opening(name: &str) -> String {
    format!("{{{}: ", serde_json::to_string(name).unwrap_or_default())
}

/// What a demanded call's answer starts with: the marker, the list's bracket, and the named
/// function's key (else the object's brace).
pub fn forced_prefix(function: Option<&str>) -> String {
    let opening = function.map(object_opening).unwrap_or_else(|| "{".into());
    format!("{OPEN}[{opening}")
}

/// The grammar after `forced_prefix(function)`: that call's arguments, or one call to any of
/// `functions`, then the list's end and the closing marker.
pub fn call_grammar(
    functions: &[(String, Value)],
    function: Option<&str>,
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    let end = format!("{} {}", literal("}]"), marker(CLOSE, special));
    name_first_call_grammar(functions, function, &end, "", || {
        call_rules(functions, false)
    })
}

/// The grammar after the `<|tools_prefix|>` a model writes under auto: the list of its calls
/// (one only unless `parallel`), then the closing marker.
pub fn lazy_grammar(
    functions: &[(String, Value)],
    parallel: bool,
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    let more = if parallel { " (\",\" WS? call)*" } else { "" };
    Ok(format!(
        "start: \"[\" WS? call{more} WS? \"]\" {}\n{}{}",
        marker(CLOSE, special),
        super::format::WS_RULE,
        call_rules(functions, true)?
    ))
}

/// Rules `call` (one function's object: its key and arguments, with its braces where
/// `braced`, else from the key to the arguments) and `args_i`.
fn call_rules(functions: &[(String, Value)], braced: bool) -> Result<String, String> {
    call_alternatives(functions, |i, name, params| {
        let opening = if braced {
            object_opening(name)
        } else {
            object_opening(name)[1..].to_string()
        };
        let close = if braced { " \"}\"" } else { "" };
        Ok(format!(
            "call_{i}: {} args_{i}{close}\n{}",
            literal(&opening),
            args_rule(i, params)?
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ParsedCall {
        ParsedCall::new(name, arguments)
    }

    #[test]
    fn lists_of_one_key_objects_are_calls() {
        assert_eq!(
            parse("[{\"get_weather\": {\"city\": \"Paris\"}}, {\"now\": {}}]"),
            Some(vec![
                call("get_weather", "{\"city\":\"Paris\"}"),
                call("now", "{}")
            ])
        );
        assert_eq!(
            parse(" [{\"f\": \"{\\\"a\\\": 1}\"}] "),
            Some(vec![call("f", "{\"a\":1}")])
        );
        for bad in [
            "",
            "[]",
            "{\"f\": {}}",
            "[{\"f\": {}, \"g\": {}}]",
            "[{\"f\": [1]}]",
            "[{\"f\": \"text\"}]",
            "[{\"get weather\": {}}]",
            "[{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
            "[{\"f\": {\"a\": ",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn forced_prefixes_continue_into_calls() {
        let named = forced_prefix(Some("f")) + "{\"a\": 1}}]";
        let open = forced_prefix(None) + "\"f\": {\"a\": 1}}]";
        for text in [named, open] {
            let body = text.strip_prefix(OPEN).unwrap();
            assert_eq!(parse(body), Some(vec![call("f", "{\"a\":1}")]), "{text}");
        }
    }

    /// The grammars name the closing marker as the token it is, and hold the objects' keys
    /// to the functions offered.
    #[test]
    fn grammars_close_with_the_marker_token() {
        let functions = [("f".to_string(), serde_json::json!({"type": "object"}))];
        let special = |t: &str| t == CLOSE;
        let lazy = lazy_grammar(&functions, true, &special).unwrap();
        assert!(lazy
            .starts_with("start: \"[\" WS? call (\",\" WS? call)* WS? \"]\" <|tools_suffix|>\n"));
        assert!(
            lazy.contains("call_0: \"{\\\"f\\\": \" args_0 \"}\"\n"),
            "{lazy}"
        );
        let open = call_grammar(&functions, None, &special).unwrap();
        assert!(
            open.starts_with("start: call \"}]\" <|tools_suffix|>\n"),
            "{open}"
        );
        assert!(open.contains("call_0: \"\\\"f\\\": \" args_0\n"), "{open}");
        let named = call_grammar(&functions, Some("f"), &|_| false).unwrap();
        assert!(
            named.starts_with("start: args_0 \"}]\" \"<|tools_suffix|>\"\n"),
            "{named}"
        );
        assert!(call_grammar(&functions, Some("g"), &special).is_err());
    }
}
