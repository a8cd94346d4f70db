//! Functionary v3.1's tool calls (MeetKai's Llama 3.1 fine-tune; vLLM's `llama3_json` does not
//! read them): `<function=NAME>{...}</function>`, one block per call, the arguments' JSON
//! between the name's `>` and the closing tag.
use super::format::{literal, name_first_call_grammar, name_then_args_rules, ParsedCall};
use serde_json::Value;

pub const OPEN: &str = "<function=";
pub const CLOSE: &str = "</function>";

/// The call in a block's body (`NAME>{...}`); `None` unless it is one.
pub fn parse(body: &str) -> Option<Vec<ParsedCall>> {
    let (name, arguments) = body.split_once('>')?;
    let name = name.trim();
    if name.is_empty() || name.contains(['<', '{', '\n', ' ']) {
        return None;
    }
    let arguments: Value = serde_json::from_str(arguments.trim()).ok()?;
    arguments.is_object().then(|| {
        let arguments = serde_json::to_string(&arguments).unwrap_or_default();
        vec![ParsedCall::new(name, &arguments)]
    })
}

/// What a demanded call's answer starts with: the block's opening, and the named function's
/// name and `>`.
pub fn forced_prefix(function: Option<&str>) -> String {
    let named = function.map(|f| format!("{f}>")).unwrap_or_default();
    format!("{OPEN}{named}")
}

/// The grammar after `forced_prefix(function)` (or after the opening a model writes): that
/// call's arguments, or one call to any of `functions`, then the closing tag.
pub fn call_grammar(
    functions: &[(String, Value)],
    function: Option<&str>,
) -> Result<String, String> {
    name_first_call_grammar(functions, function, &literal(CLOSE), "", || {
        name_then_args_rules(functions, &literal(">"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hold_a_name_and_its_arguments() {
        assert_eq!(
            parse("get_weather>{\"city\": \"Paris\"}"),
            Some(vec![ParsedCall::new("get_weather", "{\"city\":\"Paris\"}")])
        );
        for bad in [
            "",
            "get_weather{}",
            ">{}",
            "get_weather>[1]",
            "get_weather>{\"a\": ",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let named = forced_prefix(Some("f")) + "{\"a\": 1}";
        let body = named.strip_prefix(OPEN).unwrap();
        assert_eq!(parse(body), Some(vec![ParsedCall::new("f", "{\"a\":1}")]));
    }
}
