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
//!   where the vocabulary has those tokens; v15's model settings after the tools where the
//!   file has a settings builder: `[MODEL_SETTINGS]{"reasoning_effort": ...}[/MODEL_SETTINGS]`,
//!   the request's effort or the builder's default, an effort the builder does not list an
//!   error. (A JSON schema the builder may also take from `response_format` is not written:
//!   the sampler holds the answer to it.)
//!
//! The checkout's `SYSTEM_PROMPT.txt` (Devstral's, Magistral's, Mistral Small's), which their
//! model cards load and pass as the system message, is the default system prompt where a
//! conversation starts without one, as Mistral's own templates for transformers-format
//! checkouts embed it: its `{name}` the model's, `{today}` and `{yesterday}` the dates at each
//! rendering (Python's `str.format` placeholders, as the model cards fill them).
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

/// v15's settings: the effort asked (`reasoning_effort`) or the default, among those listed.
const SETTINGS: &str = r#"{%- macro settings() %}
    {%- set effort = reasoning_effort if reasoning_effort is defined and reasoning_effort is not none else default_effort %}
    {%- if effort not in efforts %}
        {{- raise_exception('reasoning_effort ' ~ effort ~ " is not one of this model's: " ~ efforts | join(', ')) }}
    {%- endif %}
    {{- '[MODEL_SETTINGS]{"reasoning_effort": ' ~ (effort | tojson) ~ '}[/MODEL_SETTINGS]' }}
{%- endmacro %}
"#;

const NO_SETTINGS: &str = r#"{%- macro settings() %}{%- endmacro %}
"#;

/// What a checkout says of its prompts beside the version.
#[derive(Default)]
pub struct Prompting<'a> {
    /// The vocabulary has `[THINK]` and `[/THINK]`.
    pub thinks: bool,
    /// `SYSTEM_PROMPT.txt`'s text and the model's name for its `{name}`.
    pub system_prompt: Option<(&'a str, &'a str)>,
    /// The reasoning efforts a v15 file's settings builder takes, and its default.
    pub efforts: Option<(Vec<String>, String)>,
}

/// The template of Tekken version `version`; `None` for versions it does not know.
pub fn template(version: u32, prompting: &Prompting) -> Option<String> {
    let (calls, results, tools_before_first) = match version {
        7 => (CALLS_AS_LIST, RESULTS_WITH_IDS, false),
        11 => (CALLS_WITH_IDS, RESULTS_WITH_IDS, false),
        13 | 15 => (CALLS, RESULTS, true),
        _ => return None,
    };
    let thoughts = match version >= 13 && prompting.thinks {
        true => THOUGHTS,
        false => NO_THOUGHTS,
    };
    let settings = match (&prompting.efforts, version >= 15) {
        (Some((efforts, default)), true) => format!(
            "{{%- set efforts = {} %}}\n{{%- set default_effort = {} %}}\n{SETTINGS}",
            jinja_list(efforts),
            jinja_string(default)
        ),
        _ => NO_SETTINGS.to_string(),
    };
    let default_system = match prompting.system_prompt {
        Some((text, name)) => system_prompt_expression(text, name),
        None => "none".to_string(),
    };
    Some(format!(
        "{{%- set tools_before_first = {tools_before_first} %}}\n\
         {{%- set default_system = {default_system} %}}\n{calls}{results}{thoughts}{settings}{BODY}"
    ))
}

/// A Jinja expression of `text` with its `str.format` placeholders filled: `{name}` with
/// `name`, `{today}` and `{yesterday}` with the dates at rendering, `{{` and `}}` as single
/// braces; another `{...}` is kept as written.
fn system_prompt_expression(text: &str, name: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(['{', '}']) {
        literal.push_str(&rest[..at]);
        rest = &rest[at..];
        let filled = [
            ("{{", None),
            ("}}", None),
            ("{today}", Some("strftime_now('%Y-%m-%d')")),
            ("{yesterday}", Some("strftime_ago(1, '%Y-%m-%d')")),
        ]
        .into_iter()
        .find(|(placeholder, _)| rest.starts_with(placeholder));
        match filled {
            Some((brace, None)) => literal.push_str(&brace[..1]),
            Some((_, Some(date))) => {
                parts.push(jinja_string(&std::mem::take(&mut literal)));
                parts.push(date.to_string());
            }
            None if rest.starts_with("{name}") => literal.push_str(name),
            None => {
                literal.push_str(&rest[..1]);
                rest = &rest[1..];
                continue;
            }
        }
        let used = filled.map_or("{name}".len(), |(placeholder, _)| placeholder.len());
        rest = &rest[used..];
    }
    literal.push_str(rest);
    parts.push(jinja_string(&literal));
    parts.join(" ~ ")
}

/// `items` as a Jinja list of string literals.
fn jinja_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| jinja_string(s)).collect();
    format!("[{}]", items.join(", "))
}

/// `text` as a Jinja expression of single-quoted string literals: every brace a literal of
/// its own, so that no `{{`, `}}`, `{%`, `%}`, `{#` or `#}` of the text is read as the
/// template's own delimiter (the lexer finds those inside string literals too).
fn jinja_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '{' | '}' => {
                out.push_str("' ~ '");
                out.push(c);
                out.push_str("' ~ '");
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each version's template holds its own call markers only: the tool-call format is read
    /// from them.
    const THINKS: Prompting = Prompting {
        thinks: true,
        system_prompt: None,
        efforts: None,
    };

    #[test]
    fn each_version_speaks_one_call_format() {
        let plain = Prompting::default();
        let template = |version, prompting: &Prompting| super::template(version, prompting);
        let v7 = template(7, &THINKS).unwrap();
        assert!(v7.contains("[TOOL_CALLS]") && !v7.contains("[ARGS]") && !v7.contains("[THINK]"));
        let v11 = template(11, &plain).unwrap();
        assert!(v11.contains("[ARGS]") && v11.contains("[CALL_ID]"));
        let v13 = template(13, &THINKS).unwrap();
        assert!(v13.contains("[ARGS]") && !v13.contains("[CALL_ID]") && v13.contains("[THINK]"));
        assert!(!template(13, &plain).unwrap().contains("[THINK]"));
        assert_eq!(template(3, &plain), None);
    }

    /// The system prompt's placeholders become the name and the dates at rendering; quotes,
    /// backslashes and line breaks stay text.
    #[test]
    fn system_prompts_fill_their_placeholders() {
        let text =
            "You are {name}.\nToday is {today}; yesterday {yesterday}.\n{{x}} {other} 'q' \\ %} }}} {# {%";
        let expression = system_prompt_expression(text, "Magistral");
        let source = format!("{{{{ {expression} }}}}");
        let template = crate::chat_template::ChatTemplate::new(&source, None, None)
            .unwrap()
            .at_date(chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        assert_eq!(
            template.render(&[], false).unwrap(),
            "You are Magistral.\nToday is 2026-03-01; yesterday 2026-02-28.\n{x} {other} 'q' \\ %} }} {# {%"
        );
    }
}
