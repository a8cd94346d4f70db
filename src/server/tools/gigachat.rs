//! GigaChat 3's tool calls (Sber's GigaChat3-10B-A1.8B / 702B, DeepSeek-V3 models): one call
//! per answer, the object `{"name": ..., "arguments": {...}}` after a header and running to the
//! end of the answer.
//! - GigaChat 3.0 writes it as a turn of its own role after the assistant's (its template's
//!   `render_function_call`): `<|message_sep|>\n\nfunction call<|role_sep|>\n{...}`.
//! - GigaChat 3.1 writes it in the assistant's turn, after the text:
//!   `<|function_call|>{...}`.
//!
//! Every turn ends with `<|message_sep|>`, a special token: where the server keeps special
//! tokens to read the calls it leaves that one out of the text (`HIDDEN`), so an answer does
//! not end with it and 3.0's call header is read from `function call` on.
use super::format::ParsedCall;

/// GigaChat 3.0's call header, as decoding leaves it (`<|message_sep|>\n\n` before it
/// dropped): plain text, then the role separator token.
pub const FUNCTION_CALL_TURN: &str = "function call<|role_sep|>\n";
/// A call-only answer's opening as GigaChat 3.0's template writes it: the assistant's empty
/// turn closed, then the call's turn (a demanded call's forced opening).
pub const CALL_ONLY_OPENING: &str = "<|message_sep|>\n\nfunction call<|role_sep|>\n";
/// The role separator, the one token of 3.0's header (its lazy grammar's trigger).
pub const ROLE_SEP: &str = "<|role_sep|>";
/// GigaChat 3.1's call marker (a special token).
pub const FUNCTION_CALL: &str = "<|function_call|>";
/// The end of every turn (a special token).
pub const MESSAGE_SEP: &str = "<|message_sep|>";
/// The tokens left out of the text where the server reads the calls.
pub const HIDDEN: [&str; 1] = [MESSAGE_SEP];

/// Which GigaChat 3 writes the template's calls: 3.1's marker, else 3.0's turn of the
/// `function call` role (the role separator and turn end tell the family).
pub fn of_template(template: &str) -> Option<Version> {
    let family = template.contains(ROLE_SEP) && template.contains(MESSAGE_SEP);
    if !family {
        None
    } else if template.contains(FUNCTION_CALL) {
        Some(Version::V31)
    } else if template.contains("'function call'") {
        Some(Version::V30)
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V30,
    V31,
}

/// The call in a block's body: one call object, then nothing but the turn's end.
pub fn parse(body: &str) -> Option<Vec<ParsedCall>> {
    let body = body.trim();
    let body = body.strip_suffix(MESSAGE_SEP).unwrap_or(body);
    let call: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    let name = call.get("name")?.as_str().filter(|n| !n.is_empty())?;
    let arguments = match call.get("arguments") {
        None | Some(serde_json::Value::Null) => "{}".to_string(),
        // The template writes a string's arguments as they are: a string holding JSON.
        Some(serde_json::Value::String(text)) => {
            let parsed: serde_json::Value = serde_json::from_str(text).ok()?;
            serde_json::to_string(&parsed).ok()?
        }
        Some(object @ serde_json::Value::Object(_)) => serde_json::to_string(object).ok()?,
        Some(_) => return None,
    };
    Some(vec![ParsedCall::new(name, &arguments)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_object_to_the_end() {
        let call = ParsedCall::new("get_weather", "{\"city\":\"Paris\"}");
        for body in [
            "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
            "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}<|message_sep|>\n\n",
            "\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}",
        ] {
            assert_eq!(parse(body), Some(vec![call.clone()]), "{body:?}");
        }
        assert_eq!(
            parse("{\"name\": \"now\"}"),
            Some(vec![ParsedCall::new("now", "{}")])
        );
        for bad in [
            "",
            "{\"name\": \"\", \"arguments\": {}}",
            "{\"arguments\": {}}",
            "{\"name\": \"f\", \"arguments\": [1]}",
            "{\"name\": \"f\", \"arguments\": {}} and more",
            "{\"name\": \"f\", \"arguments\": {",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_call_only_opening_closes_the_turn_then_opens_the_call() {
        assert_eq!(
            CALL_ONLY_OPENING,
            format!("{MESSAGE_SEP}\n\n{FUNCTION_CALL_TURN}")
        );
    }

    #[test]
    fn versions_from_their_templates() {
        assert_eq!(
            of_template("{{ role + '<|role_sep|>\\n' }}{{ '<|message_sep|>\\n\\n' }}{% set r = 'function call' %}"),
            Some(Version::V30)
        );
        assert_eq!(
            of_template("{% set t = namespace(role_sep='<|role_sep|>\\n', message_sep='<|message_sep|>\\n\\n', function_call='<|function_call|>') %}"),
            Some(Version::V31)
        );
        assert_eq!(of_template("{{ '<|role_sep|>' }}{{ tools }}"), None);
    }
}
