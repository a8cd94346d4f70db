//! Solar Open's tool calls (Upstage's Solar-Open-100B): a turn of calls opens with
//! `<|tool_calls|>` and closes with `<|calls|>`; each call is its id (ten lowercase letters or
//! digits the model makes up), the function's name and the arguments' JSON between special
//! tokens: `<|tool_call:begin|>a1b2c3d4e5<|tool_call:name|>get_weather<|tool_call:args|>
//! {"city": "Paris"}<|tool_call:end|>`. The calls' ids are candor's own in the answer, as for
//! every format (the template writes them back into the history).
use super::format::{
    args_rule, call_alternatives, literal, marker, section_calls, ParsedCall, SectionGrammar,
};
use serde_json::Value;

pub const SECTION_BEGIN: &str = "<|tool_calls|>";
pub const SECTION_END: &str = "<|calls|>";
const CALL_BEGIN: &str = "<|tool_call:begin|>";
const NAME: &str = "<|tool_call:name|>";
const ARGUMENTS: &str = "<|tool_call:args|>";
const CALL_END: &str = "<|tool_call:end|>";
/// The id a demanded call gets (the template asks for ten lowercase letters or digits).
const FORCED_ID: &str = "call000001";

/// The calls in a section's body (between its markers); `None` unless it is only calls.
pub fn parse(body: &str) -> Option<Vec<ParsedCall>> {
    section_calls(
        body,
        (CALL_BEGIN, ARGUMENTS, CALL_END),
        |head, arguments| {
            let (_id, name) = head.split_once(NAME)?;
            Some((name.trim(), arguments))
        },
    )
}

/// What a demanded call's answer starts with: the section and a call opened, up to the
/// function's name, or through the arguments' marker when `function` is named.
pub fn forced_prefix(function: Option<&str>) -> String {
    let named = function
        .map(|f| format!("{f}{ARGUMENTS}"))
        .unwrap_or_default();
    format!("{SECTION_BEGIN}{CALL_BEGIN}{FORCED_ID}{NAME}{named}")
}

/// After `forced_prefix(function)`: the rest of that call, then the section's end. `special`
/// says which markers are one special token of the vocabulary, named as tokens.
pub fn call_grammar(
    functions: &[(String, Value)],
    function: Option<&str>,
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    section(special).after_prefix(functions, function, || call_rules(functions, special))
}

/// After the section's opening token (a lazy grammar's trigger): its calls (one only unless
/// `parallel`), each with an id of the template's kind, then its end.
pub fn section_grammar(
    functions: &[(String, Value)],
    parallel: bool,
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    let rules = format!("{}ID: /[a-z0-9]{{10}}/\n", call_rules(functions, special)?);
    Ok(section(special).section(parallel, &rules))
}

/// The section's markers as lark items: a call's head (its marker, an id, the name's marker),
/// its end, the section's end.
fn section(special: &dyn Fn(&str) -> bool) -> SectionGrammar {
    SectionGrammar {
        call_head: format!(
            "{} ID {}",
            marker(CALL_BEGIN, special),
            marker(NAME, special)
        ),
        call_end: marker(CALL_END, special),
        section_end: marker(SECTION_END, special),
    }
}

/// Rules `call` (a function's name, the arguments' marker, the arguments) and `args_i`.
fn call_rules(
    functions: &[(String, Value)],
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    call_alternatives(functions, |i, name, params| {
        Ok(format!(
            "call_{i}: {} {} args_{i}\n{}",
            literal(name),
            marker(ARGUMENTS, special),
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
    fn sections_of_calls_parse() {
        let body = "<|tool_call:begin|>a1b2c3d4e5<|tool_call:name|>get_weather\
                    <|tool_call:args|>{\"city\": \"Paris\"}<|tool_call:end|>\
                    <|tool_call:begin|>call_3<|tool_call:name|>get_time<|tool_call:args|>{}\
                    <|tool_call:end|>";
        assert_eq!(
            parse(body),
            Some(vec![
                call("get_weather", "{\"city\":\"Paris\"}"),
                call("get_time", "{}")
            ])
        );
        // Stopped after the arguments.
        assert_eq!(
            parse("<|tool_call:begin|>x<|tool_call:name|>f<|tool_call:args|>{\"a\": 1}"),
            Some(vec![call("f", "{\"a\":1}")])
        );
        for bad in [
            "",
            "text",
            "<|tool_call:begin|>x<|tool_call:args|>{}<|tool_call:end|>",
            "<|tool_call:begin|>x<|tool_call:name|>f{}<|tool_call:end|>",
            "<|tool_call:begin|>x<|tool_call:name|>f<|tool_call:args|>[1]<|tool_call:end|>",
            "<|tool_call:begin|>x<|tool_call:name|><|tool_call:args|>{}<|tool_call:end|>",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
