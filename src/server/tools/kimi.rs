//! Kimi K2's tool calls (vLLM's `kimi_k2` parser): one section of calls, each its id, then
//! the arguments' JSON, all between special tokens:
//! `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:0<|tool_call_argument_begin|>
//! {"city": "Paris"}<|tool_call_end|>...<|tool_calls_section_end|>`. The id's index counts the
//! calls of the conversation; the name is what lies between `functions.` and the last `:`.
use super::format::{
    args_rule, call_alternatives, literal, marker, section_calls, ParsedCall, SectionGrammar,
};
use serde_json::Value;

pub const SECTION_BEGIN: &str = "<|tool_calls_section_begin|>";
pub const SECTION_END: &str = "<|tool_calls_section_end|>";
const CALL_BEGIN: &str = "<|tool_call_begin|>";
const ARGUMENTS_BEGIN: &str = "<|tool_call_argument_begin|>";
const CALL_END: &str = "<|tool_call_end|>";
const ID_PREFIX: &str = "functions.";

/// The calls in a section's body (between its markers); `None` unless it is only calls.
pub fn parse(body: &str) -> Option<Vec<ParsedCall>> {
    section_calls(
        body,
        (CALL_BEGIN, ARGUMENTS_BEGIN, CALL_END),
        |id, arguments| Some((function_name(id.trim()), arguments)),
    )
}

/// `functions.NAME:3` -> `NAME` (the prefix and the index are each optional).
fn function_name(id: &str) -> &str {
    let id = id.strip_prefix(ID_PREFIX).unwrap_or(id);
    match id.rsplit_once(':') {
        Some((name, index)) if index.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => id,
    }
}

/// What a demanded call's answer starts with: the section and a call opened, up to the
/// function's name, or through the arguments' marker when `function` is named.
pub fn forced_prefix(function: Option<&str>) -> String {
    let named = function
        .map(|f| format!("{f}:0{ARGUMENTS_BEGIN}"))
        .unwrap_or_default();
    format!("{SECTION_BEGIN}{CALL_BEGIN}{ID_PREFIX}{named}")
}

/// After `forced_prefix(function)`: the rest of that call, then the section's end. `special`
/// says which markers are one special token of the vocabulary (Kimi's are), named as tokens.
pub fn call_grammar(
    functions: &[(String, Value)],
    function: Option<&str>,
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    section(special).after_prefix(functions, function, || call_rules(functions, special))
}

/// After the section's opening token (a lazy grammar's trigger): its calls (one only unless
/// `parallel`), then its end.
pub fn section_grammar(
    functions: &[(String, Value)],
    parallel: bool,
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    Ok(section(special).section(parallel, &call_rules(functions, special)?))
}

/// The section's markers as lark items: a call's head (its marker and the id's prefix), its
/// end, the section's end.
fn section(special: &dyn Fn(&str) -> bool) -> SectionGrammar {
    SectionGrammar {
        call_head: format!("{} {}", marker(CALL_BEGIN, special), literal(ID_PREFIX)),
        call_end: marker(CALL_END, special),
        section_end: marker(SECTION_END, special),
    }
}

/// Rules `call` (a function's name, the id's index, the arguments) and `args_i`.
fn call_rules(
    functions: &[(String, Value)],
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    let lark = call_alternatives(functions, |i, name, params| {
        Ok(format!(
            "call_{i}: {} INDEX {} args_{i}\n{}",
            literal(&format!("{name}:")),
            marker(ARGUMENTS_BEGIN, special),
            args_rule(i, params)?
        ))
    })?;
    Ok(format!("{lark}INDEX: /[0-9]{{1,4}}/\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ParsedCall {
        ParsedCall::new(name, arguments)
    }

    #[test]
    fn sections_of_calls_parse() {
        let body = "<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>\
                    {\"city\": \"Paris\"}<|tool_call_end|>\n<|tool_call_begin|>functions.get_time:1\
                    <|tool_call_argument_begin|>{}<|tool_call_end|>";
        assert_eq!(
            parse(body),
            Some(vec![
                call("get_weather", "{\"city\":\"Paris\"}"),
                call("get_time", "{}")
            ])
        );
        // Stopped after the arguments; an id without prefix or index; a name with a colon.
        assert_eq!(
            parse("<|tool_call_begin|>f<|tool_call_argument_begin|>{\"a\": 1}"),
            Some(vec![call("f", "{\"a\":1}")])
        );
        assert_eq!(
            parse("<|tool_call_begin|>functions.ns:f:12<|tool_call_argument_begin|>{}"),
            Some(vec![call("ns:f", "{}")])
        );
        for bad in [
            "",
            "text",
            "<|tool_call_begin|>functions.f:0{}<|tool_call_end|>",
            "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{\"a\": <|tool_call_end|>",
            "<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>[1]<|tool_call_end|>",
            "<|tool_call_begin|>:0<|tool_call_argument_begin|>{}<|tool_call_end|>",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn forced_prefixes_continue_into_calls() {
        let named = forced_prefix(Some("get_weather")) + "{\"city\": \"Oslo\"}<|tool_call_end|>";
        let open = forced_prefix(None)
            + "get_weather:0<|tool_call_argument_begin|>{\"city\": \"Oslo\"}<|tool_call_end|>";
        for text in [named, open] {
            let body = text.strip_prefix(SECTION_BEGIN).unwrap();
            assert_eq!(
                parse(body),
                Some(vec![call("get_weather", "{\"city\":\"Oslo\"}")]),
                "{text}"
            );
        }
    }
}
