//! Chat templates for checkouts that keep their tokenizer as `tekken.json` alone: Mistral
//! leaves prompt formatting to `mistral_common`, which encodes a request by rules per tokenizer
//! version, and ships no template. These write the same tokens for the text parts of a
//! request (checked against `mistral_common` in tests/tekken_checkout.rs), one body and the
//! parts that change between versions:
//!
//! - v7 (Mistral Small 3 / 3.1, Devstral 2505): calls as one JSON list after `[TOOL_CALLS]`,
//!   results as `[TOOL_RESULTS]id[TOOL_CONTENT]text[/TOOL_RESULTS]`, tools before the last
//!   instruction;
//! - v11 (Mistral Small 3.2, Magistral 2506/2507, Devstral 2507): `[TOOL_CALLS]name[CALL_ID]id
//!   [ARGS]{...}` per call;
//! - v13 and v15 (Magistral 2509, Ministral 3, Devstral 2): calls without ids, results
//!   without them, tools before the first instruction, thoughts in `[THINK]...[/THINK]`
//!   where the vocabulary has those tokens. v15's model settings (`[MODEL_SETTINGS]`, written
//!   only when a request sets a reasoning effort) are not written.
//!
//! Built per version rather than one template branching on it: which tool-call format a
//! template speaks is read from its text (`[ARGS]` or not), so a template holds one version's
//! markers only. Older versions (v3's JSON-parsed tool results) get none: candor then asks for
//! `--chat-template`.
const BODY: &str = include_str!("mistral_instruct/body.jinja");

/// v7's calls: one JSON list of `{"name", "arguments", "id"}` after `[TOOL_CALLS]`.
const CALLS_AS_LIST: &str = r#"{%- macro tool_calls(calls) %}
    {{- '[TOOL_CALLS]' }}
    {%- for call in calls %}
        {{- '[' if loop.first else ', ' }}
        {{- '{"name": ' ~ (call.function.name | tojson) ~ ', "arguments": ' ~ (call.function.arguments | tojson) }}
        {%- if call.id and call.id != 'null' %}
            {{- ', "id": ' ~ (call.id | tojson) }}
        {%- endif %}
        {{- '}' }}
    {%- endfor %}
    {{- ']' }}
{%- endmacro %}
"#;

/// v11's calls: `[TOOL_CALLS]name[CALL_ID]id[ARGS]{...}` each.
const CALLS_WITH_IDS: &str = r#"{%- macro tool_calls(calls) %}
    {%- for call in calls %}
        {{- '[TOOL_CALLS]' ~ call.function.name }}
        {%- if call.id and call.id != 'null' %}
            {{- '[CALL_ID]' ~ call.id }}
        {%- endif %}
        {{- '[ARGS]' ~ (call.function.arguments | tojson) }}
    {%- endfor %}
{%- endmacro %}
"#;

/// v13's calls: `[TOOL_CALLS]name[ARGS]{...}` each.
const CALLS: &str = r#"{%- macro tool_calls(calls) %}
    {%- for call in calls %}
        {{- '[TOOL_CALLS]' ~ call.function.name ~ '[ARGS]' ~ (call.function.arguments | tojson) }}
    {%- endfor %}
{%- endmacro %}
"#;

/// v7's and v11's results: the call's id, then the text.
const RESULTS_WITH_IDS: &str = r#"{%- macro tool_result(message) %}
    {{- '[TOOL_RESULTS]' ~ message.tool_call_id ~ '[TOOL_CONTENT]' ~ message.content ~ '[/TOOL_RESULTS]' }}
{%- endmacro %}
"#;

/// v13's results: the text alone.
const RESULTS: &str = r#"{%- macro tool_result(message) %}
    {{- '[TOOL_RESULTS]' ~ message.content ~ '[/TOOL_RESULTS]' }}
{%- endmacro %}
"#;

/// A thought sent back in an assistant turn, where the version writes them.
const THOUGHTS: &str = r#"{%- macro thought(text) %}
    {{- '[THINK]' ~ text ~ '[/THINK]' }}
{%- endmacro %}
"#;

/// Versions without thoughts drop them (mistral_common refuses them).
const NO_THOUGHTS: &str = r#"{%- macro thought(text) %}{%- endmacro %}
"#;

/// The template of Tekken version `version`, thoughts written where the vocabulary has
/// `[THINK]` and `[/THINK]` (`thinks`); `None` for versions it does not know.
pub fn template(version: u32, thinks: bool) -> Option<String> {
    let (calls, results, tools_before_first) = match version {
        7 => (CALLS_AS_LIST, RESULTS_WITH_IDS, false),
        11 => (CALLS_WITH_IDS, RESULTS_WITH_IDS, false),
        13 | 15 => (CALLS, RESULTS, true),
        _ => return None,
    };
    let thoughts = match version >= 13 && thinks {
        true => THOUGHTS,
        false => NO_THOUGHTS,
    };
    Some(format!(
        "{{%- set tools_before_first = {tools_before_first} %}}\n{calls}{results}{thoughts}{BODY}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each version's template holds its own call markers only: the tool-call format is read
    /// from them.
    #[test]
    fn each_version_speaks_one_call_format() {
        let v7 = template(7, true).unwrap();
        assert!(v7.contains("[TOOL_CALLS]") && !v7.contains("[ARGS]") && !v7.contains("[THINK]"));
        let v11 = template(11, false).unwrap();
        assert!(v11.contains("[ARGS]") && v11.contains("[CALL_ID]"));
        let v13 = template(13, true).unwrap();
        assert!(v13.contains("[ARGS]") && !v13.contains("[CALL_ID]") && v13.contains("[THINK]"));
        assert!(!template(13, false).unwrap().contains("[THINK]"));
        assert_eq!(template(3, false), None);
    }
}
