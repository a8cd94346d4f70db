//! Functionary v3.2's tool calls (MeetKai's functionary-small / medium-v3.2, on Llama 3.1;
//! llama.cpp's "Functionary v3.2" format, which vLLM has no parser for). An answer is a run of
//! messages, each opened by `>>>` and its recipient's name on a line of its own: `all` for the
//! user (then text) or a function (then its arguments' JSON), as in
//! `>>>all\nLet me look.>>>get_weather\n{"city": "Paris"}`. The template ends the prompt with
//! the first `>>>`, so an answer opens with its first recipient. A message to a function ends
//! at the next `>>>` after its arguments, or with the answer.
use super::format::{literal, name_first_call_grammar, name_then_args_rules, ParsedCall};
use super::valid_function_name;
/// The protocol's markers and its template's test, shared with the reader of tool-less answers.
pub use crate::server::recipient::{of_template, MESSAGE, TO_USER, USER};
use serde_json::Value;

/// What the start of a message (`line`, the text after its `>>>` so far) says of its
/// recipient.
#[derive(Debug, PartialEq, Eq)]
pub enum Recipient<'a> {
    /// `all`: the rest of the message, after the newline, is text.
    User,
    /// A function: the message (its name line included) is a call.
    Function(&'a str),
    /// Not a recipient's line (text that happens to follow a `>>>`).
    Not,
    /// It may still become one: wait for more.
    Undecided,
}

pub fn recipient(line: &str) -> Recipient<'_> {
    match line.split_once('\n') {
        Some((USER, _)) => Recipient::User,
        Some((name, _)) if valid_function_name(name) => Recipient::Function(name),
        Some(_) => Recipient::Not,
        // A name may still come: as long as a function name may be, in its characters.
        None if valid_function_name(line) || line.is_empty() => Recipient::Undecided,
        None => Recipient::Not,
    }
}

/// The code interpreter functionary's models were trained with: a message to it may be the
/// Python source itself rather than arguments' JSON.
const PYTHON: &str = "python";

/// The call in a message to a function (`NAME\n{...}`); `None` unless it is one. A message to
/// `python` that is no JSON object is its code, `{"code": ...}`, as llama.cpp reads it.
pub fn parse(body: &str) -> Option<Vec<ParsedCall>> {
    let (name, arguments) = body.split_once('\n')?;
    if name == USER || !valid_function_name(name) {
        return None;
    }
    let text = arguments.trim();
    let arguments: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        // Raw code: what opens as an object must be one (a `>>>` inside its strings does not
        // end the message early).
        _ if name == PYTHON && !text.is_empty() && !text.starts_with('{') => {
            serde_json::json!({ "code": text })
        }
        _ => return None,
    };
    let arguments = serde_json::to_string(&arguments).unwrap_or_default();
    Some(vec![ParsedCall::new(name, &arguments)])
}

/// Where a message to a function that `body` begins ends: the first `>>>` after a whole call
/// (a `>>>` inside the arguments, in a string, does not end it); `None` while there is none.
pub fn message_end(body: &str) -> Option<usize> {
    body.match_indices(MESSAGE)
        .map(|(at, _)| at)
        .find(|&at| parse(&body[..at]).is_some())
}

/// What a demanded call's answer starts with (the prompt wrote its `>>>`): the named
/// function's name line, or nothing.
pub fn forced_prefix(function: Option<&str>) -> String {
    function.map(|f| format!("{f}\n")).unwrap_or_default()
}

/// The grammar after `forced_prefix(function)`: that call's arguments, or one call to any of
/// `functions` (a name line, then its arguments).
pub fn call_grammar(
    functions: &[(String, Value)],
    function: Option<&str>,
) -> Result<String, String> {
    name_first_call_grammar(functions, function, "", "", || {
        name_then_args_rules(functions, &literal("\n"))
    })
}

/// The grammar of a message's start under `tool_choice: "auto"`, after a `>>>` and at the
/// answer's start (the prompt's `>>>` opened it): a call to one of `functions`, the user's
/// recipient line (then the text is free), or a first character no recipient starts with (a
/// `>>>` in text, as in a Python prompt: free again at once).
pub fn message_grammar(functions: &[(String, Value)]) -> Result<String, String> {
    Ok(format!(
        "start: call | {} | NOT_A_RECIPIENT\nNOT_A_RECIPIENT: /[^A-Za-z0-9_\\-]/\n{}",
        literal(TO_USER),
        name_then_args_rules(functions, &literal("\n"))?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_to_functions_are_calls() {
        assert_eq!(
            parse("get_weather\n{\"city\": \"Paris\"}\n"),
            Some(vec![ParsedCall::new("get_weather", "{\"city\":\"Paris\"}")])
        );
        for bad in [
            "",
            "get_weather",
            "all\n{}",
            "get weather\n{}",
            "get_weather\n[1]",
            "get_weather\n{\"a\": ",
            "\n{}",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        // The code interpreter's raw Python, and its JSON form; a `python` message opening as
        // an object must be one.
        assert_eq!(
            parse("python\nprint(2 ** 10)\n"),
            Some(vec![ParsedCall::new(
                "python",
                "{\"code\":\"print(2 ** 10)\"}"
            )])
        );
        assert_eq!(
            parse("python\n{\"code\": \"1 + 1\"}"),
            Some(vec![ParsedCall::new("python", "{\"code\":\"1 + 1\"}")])
        );
        assert_eq!(parse("python\n{\"code\": \"x"), None);
        assert_eq!(parse("python\n"), None);
        assert_eq!(parse("get_weather\nprint(1)"), None);
        let named = forced_prefix(Some("f")) + "{\"a\": 1}";
        assert_eq!(parse(&named), Some(vec![ParsedCall::new("f", "{\"a\":1}")]));
        assert_eq!(forced_prefix(None), "");
    }

    #[test]
    fn recipients_are_told_from_their_line() {
        assert_eq!(recipient("all\nHi"), Recipient::User);
        assert_eq!(
            recipient("get_weather\n{"),
            Recipient::Function("get_weather")
        );
        assert_eq!(recipient("allot\n"), Recipient::Function("allot"));
        for undecided in ["", "al", "all", "get_wea", "a-b"] {
            assert_eq!(recipient(undecided), Recipient::Undecided, "{undecided:?}");
        }
        for not in [" print(1)", "a b", "\nx", "x y\n", "é", &"a".repeat(65)] {
            assert_eq!(recipient(not), Recipient::Not, "{not:?}");
        }
    }

    #[test]
    fn a_message_ends_at_the_first_marker_after_its_call() {
        let body = "f\n{\"code\": \">>> 1\"}>>>g\n{}";
        assert_eq!(message_end(body), Some(body.find("}>>>").unwrap() + 1));
        assert_eq!(message_end("f\n{\"a\": 1"), None);
        assert_eq!(message_end("f\n{\"a\": \">>>"), None);
    }

    #[test]
    fn grammars_name_the_functions() {
        let functions = [("f".to_string(), serde_json::json!({"type": "object"}))];
        let message = message_grammar(&functions).unwrap();
        assert!(
            message.starts_with("start: call | \"all\\n\" | NOT_A_RECIPIENT\n"),
            "{message}"
        );
        assert!(
            message.contains("call_0: \"f\" \"\\n\" args_0\n"),
            "{message}"
        );
        let named = call_grammar(&functions, Some("f")).unwrap();
        assert!(named.starts_with("start: args_0 \n"), "{named}");
        let any = call_grammar(&functions, None).unwrap();
        assert!(any.starts_with("start: call \n"), "{any}");
    }
}
