//! Chat templates (Jinja, as shipped in `tokenizer_config.json` or GGUF
//! `tokenizer.chat_template`) rendered with minijinja plus the helpers HF templates rely on:
//! `raise_exception`, `strftime_now`, `tojson` (Python's `json.dumps`, see `py_json`), and
//! Python string/dict methods (pycompat).
use crate::py_json::{self, DumpOptions};
use crate::py_repr;
use minijinja::value::Kwargs;
use minijinja::{context, Environment, Error as JinjaError, ErrorKind, State, Value};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("this model has no chat template; use a plain prompt (no --chat) or a model with a template")]
    Missing,
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    #[error("chat template rejected the conversation: {0}")]
    Raised(String),
    #[error("chat template failed to render: {0}")]
    Render(String),
    #[error("unknown role `{role}` in message {index} (allowed: {allowed})")]
    BadRole {
        role: String,
        index: usize,
        allowed: String,
    },
}

/// One message as templates see it (HF's message dicts). Optional fields are left out when
/// absent, so `message.tool_calls is defined` tests in templates behave as in transformers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    /// `None` (rendered as `none`) for an assistant turn that only calls tools.
    pub content: Option<String>,
    /// Assistant tool calls: `{"id", "type": "function", "function": {"name", "arguments"}}`
    /// with `arguments` an object, as HF templates expect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// Which call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The tool's name on a `tool` message (some templates print it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An assistant turn's thought, as a client sends it back: templates read it under one of
    /// three names (Qwen3's `reasoning_content`, gpt-oss's `thinking`, which keeps the analysis
    /// before a call in the history, Solar Open's `reasoning`), so all carry it.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Thought>,
}

/// A thought under every name templates read it by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thought {
    pub reasoning_content: String,
    pub thinking: String,
    pub reasoning: String,
}

impl Thought {
    pub fn new(text: &str) -> Self {
        Thought {
            reasoning_content: text.to_string(),
            thinking: text.to_string(),
            reasoning: text.to_string(),
        }
    }
}

impl ChatMessage {
    /// A plain text message.
    pub fn text(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.into(),
            content: Some(content.into()),
            tool_calls: None,
            tool_call_id: None,
            name: None,
            reasoning: None,
        }
    }
}

/// Check that every message has one of the `allowed` roles.
pub fn validate_roles(messages: &[ChatMessage], allowed: &[&str]) -> Result<(), TemplateError> {
    for (index, m) in messages.iter().enumerate() {
        if !allowed.contains(&m.role.as_str()) {
            return Err(TemplateError::BadRole {
                role: m.role.clone(),
                index,
                allowed: allowed.join(", "),
            });
        }
    }
    Ok(())
}

pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    /// The template asks whether a message has content (`"content" in message`, then looks
    /// inside it: gpt-oss's): a message without any (an assistant turn that only calls
    /// tools) then has no `content` key, where other templates get `none` (which some test
    /// with `is none`, DeepSeek-V3's); searching `none` would be an error.
    omits_missing_content: bool,
    /// Whether the template shows a system message's text (asked once, on the first
    /// conversation with one: `system_role`).
    shows_system: std::sync::OnceLock<bool>,
    /// Whether the template refuses an assistant message of several calls (asked once, on
    /// the first conversation with one: `single_calls`).
    refuses_parallel_calls: std::sync::OnceLock<bool>,
    /// Whether the template refuses two user messages in a row (asked once, on the first
    /// conversation with a run of one role: `alternation`).
    refuses_runs: std::sync::OnceLock<bool>,
}

/// Whether a template tests a message for a `content` key (`"content" in message`, whatever
/// its loop variable is called).
fn tests_content_key(source: &str) -> bool {
    ["\"content\" in ", "'content' in "]
        .iter()
        .any(|t| source.contains(t))
}

const NAME: &str = "chat";
/// Marker error text so `raise_exception` can be told apart from other render errors.
const RAISED: &str = "raise_exception: ";

fn raise_exception(msg: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{msg}"),
    ))
}

fn strftime_now(fmt: String) -> String {
    chrono::Local::now().format(&fmt).to_string()
}

/// candor's own: the date `days` days before now, formatted as `strftime_now` formats now
/// (Mistral's system prompts name yesterday's date, which Jinja cannot compute from today's;
/// only candor's built-in templates call it).
fn strftime_ago(days: i64, fmt: String) -> String {
    (chrono::Local::now() - chrono::Duration::days(days))
        .format(&fmt)
        .to_string()
}

/// `tojson(value, indent=None, separators=None, sort_keys=False, ensure_ascii=False)` with
/// `json.dumps` output (HF's filter), `indent` also accepted positionally (Jinja's filter).
fn tojson(value: Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, JinjaError> {
    let bad = |what: &str| JinjaError::new(ErrorKind::InvalidOperation, format!("tojson: {what}"));
    let indent = match indent.or(kwargs.get::<Option<Value>>("indent")?) {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_str(), i64::try_from(v.clone())) {
            (Some(s), _) => Some(s.to_string()),
            (None, Ok(n)) if (0..=64).contains(&n) => Some(" ".repeat(n as usize)),
            _ => return Err(bad("`indent` must be a string or a number in [0, 64]")),
        },
    };
    let mut options = DumpOptions {
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        ..DumpOptions::default()
    }
    .with_indent(indent);
    if let Some(seps) = kwargs.get::<Option<Vec<String>>>("separators")? {
        let [item, key] = <[String; 2]>::try_from(seps)
            .map_err(|_| bad("`separators` must be (item_separator, key_separator)"))?;
        options.item_separator = item;
        options.key_separator = key;
    }
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value).map_err(|e| bad(&e.to_string()))?;
    Ok(Value::from_safe_string(py_json::dumps(&json, &options)))
}

/// `indent(width=4, first=False, blank=False)` as Jinja2 computes it: minijinja's drops a
/// trailing newline Jinja2 keeps (`'{\n'|indent(4, first=true)` is `"    {\n"`: Command R+'s
/// template lays its calls out so), and Jinja2 takes a string `width` as the indentation.
fn python_indent(
    s: Value,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: Kwargs,
) -> Result<Value, JinjaError> {
    let width = width.or(kwargs.get::<Option<Value>>("width")?);
    let first = first
        .or(kwargs.get::<Option<bool>>("first")?)
        .unwrap_or(false);
    let blank = blank
        .or(kwargs.get::<Option<bool>>("blank")?)
        .unwrap_or(false);
    kwargs.assert_all_used()?;
    let indention = match width {
        None => " ".repeat(4),
        Some(w) => match (w.as_str(), i64::try_from(w.clone())) {
            (Some(text), _) => text.to_string(),
            (None, Ok(n)) if (0..=256).contains(&n) => " ".repeat(n as usize),
            _ => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    "indent: `width` must be a string or a number in [0, 256]",
                ))
            }
        },
    };
    // Jinja2 appends a newline, then joins `str.splitlines()` of the result: a trailing
    // newline of the input survives, not indented unless `blank`.
    let text = format!(
        "{}\n",
        s.as_str().map_or_else(|| s.to_string(), str::to_string)
    );
    let lines = python_splitlines(&text);
    let mut rv = match blank {
        true => lines.join(&format!("\n{indention}")),
        false => {
            let mut rest = lines.iter();
            let mut rv = rest.next().copied().unwrap_or_default().to_string();
            for line in rest {
                rv.push('\n');
                if !line.is_empty() {
                    rv.push_str(&indention);
                }
                rv.push_str(line);
            }
            rv
        }
    };
    if first {
        rv.insert_str(0, &indention);
    }
    Ok(Value::from(rv))
}

/// Python's `str.splitlines()` over the line breaks templates meet (`\n`, `\r\n`, `\r`).
fn python_splitlines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(at) => {
                lines.push(&rest[..at]);
                let skip = match rest[at..].starts_with("\r\n") {
                    true => 2,
                    false => 1,
                };
                rest = &rest[at + skip..];
            }
            None => {
                lines.push(rest);
                rest = "";
            }
        }
    }
    lines
}

/// `value | string` as Jinja2 gives it: Python's `str` (a list as `['a', 'b']`).
fn python_string(state: &State, value: Value) -> Result<Value, JinjaError> {
    if value.is_undefined() {
        // Strict where minijinja's own filter is (lenient templates get "").
        return minijinja::filters::string(state, &value);
    }
    Ok(match value.as_str() {
        Some(_) => value,
        None => Value::from(py_repr::str_of(&value)),
    })
}

/// Jinja2's `iterable` test: `None` is not (minijinja iterates it as empty), undefined is.
fn python_iterable(value: Value) -> bool {
    !value.is_none() && value.try_iter().is_ok()
}

/// `| length` (and `| count`) as Jinja2 gives it: an undefined value has length 0 (Apriel's
/// template asks `tools is not none and tools | length > 0` when no tools were given).
fn python_length(value: Value) -> Result<usize, JinjaError> {
    if value.is_undefined() {
        return Ok(0);
    }
    minijinja::filters::length(&value)
}

/// The source with transformers' `{% generation %}` / `{% endgeneration %}` (its extension
/// marking the assistant's tokens for training masks; it renders its body unchanged) as an
/// always-true `if`, their whitespace control kept: minijinja has no such statement.
fn without_generation_blocks(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let Some(len) = tag.find("%}").map(|end| end + 2) else {
            break;
        };
        let inner = &tag[2..len - 2];
        let left = if inner.starts_with('-') { "-" } else { "" };
        let right = if inner.ends_with('-') { "-" } else { "" };
        match inner.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace()) {
            "generation" => out.push_str(&format!("{{%{left} if true {right}%}}")),
            "endgeneration" => out.push_str(&format!("{{%{left} endif {right}%}}")),
            _ => out.push_str(&tag[..len]),
        }
        rest = &tag[len..];
    }
    out.push_str(rest);
    out
}

impl ChatTemplate {
    /// The same template rendering as on `date` (at midnight): `strftime_now` tells that day
    /// instead of today's (renderings compared with goldens made on another day).
    pub fn at_date(mut self, date: chrono::NaiveDate) -> Self {
        let at = date.and_time(chrono::NaiveTime::MIN);
        self.env.add_function("strftime_now", move |fmt: String| {
            at.format(&fmt).to_string()
        });
        self.env
            .add_function("strftime_ago", move |days: i64, fmt: String| {
                (at - chrono::Duration::days(days)).format(&fmt).to_string()
            });
        self
    }

    pub fn new(
        source: &str,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        // HF renders with trim_blocks and lstrip_blocks.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_function("strftime_ago", strftime_ago);
        env.add_filter("tojson", tojson);
        env.add_filter("indent", python_indent);
        // Printed values and `| string` as Jinja2 prints them (Python's `str`).
        env.add_filter("string", python_string);
        env.add_test("iterable", python_iterable);
        env.add_filter("length", python_length);
        env.add_filter("count", python_length);
        env.set_formatter(|out, state, value| {
            if py_repr::is_container(value) {
                out.write_str(&py_repr::str_of(value))
                    .map_err(|e| JinjaError::new(ErrorKind::WriteFailure, e.to_string()))
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        env.add_template_owned(NAME, without_generation_blocks(source))
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token: bos_token.unwrap_or_default().to_string(),
            eos_token: eos_token.unwrap_or_default().to_string(),
            omits_missing_content: tests_content_key(source),
            shows_system: std::sync::OnceLock::new(),
            refuses_parallel_calls: std::sync::OnceLock::new(),
            refuses_runs: std::sync::OnceLock::new(),
        })
    }

    /// The Jinja source (tells how the model writes tool calls).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A template, or `Missing` when the model has none.
    pub fn from_optional(
        source: Option<&str>,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<Self, TemplateError> {
        match source {
            Some(s) if !s.trim().is_empty() => Self::new(s, bos_token, eos_token),
            _ => Err(TemplateError::Missing),
        }
    }

    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.render_with(messages, add_generation_prompt, &serde_json::Map::new())
    }

    /// Render with extra template variables, as `apply_chat_template(tools=..., **kwargs)`
    /// passes them: `tools` (OpenAI function definitions; absent, `tools` stays undefined, as
    /// in transformers) and template switches such as Qwen3's `enable_thinking`. `messages`,
    /// `add_generation_prompt`, `bos_token` and `eos_token` are not taken from `extra`.
    ///
    /// A template that does not show system messages gets their texts in the user messages
    /// after them (`system_role`); one that refuses several calls in one message gets them one
    /// a message (`single_calls`); one that demands alternating turns gets each run of user or
    /// assistant messages as one (`alternation`).
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let mut adapted = std::borrow::Cow::Borrowed(messages);
        if adapted.iter().any(|m| m.role == "system") && !self.shows_system() {
            adapted = crate::system_role::folded_into_user_turns(&adapted).into();
        }
        let runs = adapted
            .windows(2)
            .any(|w| w[0].role == w[1].role && matches!(w[0].role.as_str(), "user" | "assistant"));
        if runs && self.refuses_runs() {
            adapted = crate::alternation::merged_runs(&adapted).into();
        }
        let parallel = |m: &ChatMessage| m.tool_calls.as_ref().is_some_and(|c| c.len() > 1);
        if adapted.iter().any(parallel) && self.refuses_parallel_calls() {
            adapted = crate::single_calls::one_call_per_message(&adapted).into();
        }
        self.render_as_given(&adapted, add_generation_prompt, extra)
    }

    /// Whether the template fails on two user messages in a row and renders them as one.
    fn refuses_runs(&self) -> bool {
        *self.refuses_runs.get_or_init(|| {
            let run = [
                ChatMessage::text("user", "Hello"),
                ChatMessage::text("user", "Are you there?"),
            ];
            self.fails_but_adapted(&run, crate::alternation::merged_runs)
        })
    }

    /// Whether `probe` fails to render as given, and renders once `adapt`ed.
    fn fails_but_adapted(
        &self,
        probe: &[ChatMessage],
        adapt: fn(&[ChatMessage]) -> Vec<ChatMessage>,
    ) -> bool {
        let none = serde_json::Map::new();
        self.render_as_given(probe, true, &none).is_err()
            && self.render_as_given(&adapt(probe), true, &none).is_ok()
    }

    /// Whether the template fails on an assistant message of two calls that it renders one
    /// at a time (Llama 3.1's raises for them).
    fn refuses_parallel_calls(&self) -> bool {
        *self.refuses_parallel_calls.get_or_init(|| {
            // Ids of nine letters and digits, which Mistral's templates demand.
            let call = |id: &str, name: &str| {
                serde_json::json!({"id": id, "type": "function",
                                   "function": {"name": name, "arguments": {}}})
            };
            let result = |id: &str| {
                let mut m = ChatMessage::text("tool", "done");
                m.tool_call_id = Some(id.into());
                m
            };
            let mut both = ChatMessage::text("assistant", "");
            both.content = None;
            both.tool_calls = Some(vec![
                call("probeCal1", "first"),
                call("probeCal2", "second"),
            ]);
            let together = [
                ChatMessage::text("user", "Hello"),
                both,
                result("probeCal1"),
                result("probeCal2"),
            ];
            self.fails_but_adapted(&together, crate::single_calls::one_call_per_message)
        })
    }

    /// Whether a system message's text appears in what the template renders of it and a
    /// user's question (not where it refuses the role, or drops it).
    fn shows_system(&self) -> bool {
        *self.shows_system.get_or_init(|| {
            const NEEDLE: &str = "candor-system-probe-7c1e";
            let probe = [
                ChatMessage::text("system", NEEDLE),
                ChatMessage::text("user", "Hello"),
            ];
            self.render_as_given(&probe, true, &serde_json::Map::new())
                .is_ok_and(|text| text.contains(NEEDLE))
        })
    }

    fn render_as_given(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        // transformers always passes `tools` and `documents`, `None` where the request has
        // none: a template that asks `tools is not none` (vLLM's xLAM one) or `is defined`
        // sees them so here too.
        let mut extra = extra.clone();
        for standard in ["tools", "documents"] {
            extra.entry(standard).or_insert(serde_json::Value::Null);
        }
        let extra = Value::from_serialize(&extra);
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| TemplateError::Render(describe(&e)))?;
        let render = |messages: Value| {
            tmpl.render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
                ..extra.clone()
            })
        };
        let value = |messages: &[ChatMessage]| match self.omits_missing_content {
            false => Value::from_serialize(messages),
            true => Value::from_serialize(without_missing_content(messages)),
        };
        // Calls' arguments go to templates as objects, as transformers gives them; templates
        // written for OpenAI's JSON text (functionary v3.2's adds them to a string) fail on
        // an object, and get the text instead, as llama.cpp gives it to them. An assistant
        // turn that only calls tools has no content (OpenAI's `null`), which many templates
        // search or add to text and fail on (Qwen3's, QwQ's, Phi-3.5's, Granite 3.3's fail so
        // under transformers too): they get an empty text instead, as llama.cpp gives them.
        // The copies are made only when the messages as given fail (a request's hot path).
        let rendered = render(value(messages)).or_else(|e| {
            let empty = with_empty_content(messages);
            let empty_and_text = empty.as_deref().and_then(with_text_arguments);
            [with_text_arguments(messages), empty, empty_and_text]
                .iter()
                .flatten()
                .find_map(|retry| render(value(retry)).ok())
                .ok_or(e)
        });
        rendered.map_err(|e| {
            let text = describe(&e);
            match text.find(RAISED) {
                Some(i) => {
                    let msg = text[i + RAISED.len()..].lines().next().unwrap_or("");
                    // Drop minijinja's location suffix: the message is the template author's.
                    let msg = msg.rsplit_once(" (in ").map_or(msg, |(m, _)| m);
                    TemplateError::Raised(msg.trim().to_string())
                }
                None => TemplateError::Render(text),
            }
        })
    }
}

/// `messages` with their calls' object arguments as JSON text (Python's `json.dumps`, as
/// OpenAI's clients send it); `None` where no call has object arguments.
fn with_text_arguments(messages: &[ChatMessage]) -> Option<Vec<ChatMessage>> {
    let mut changed = false;
    let mut messages = messages.to_vec();
    let calls = messages
        .iter_mut()
        .flat_map(|m| m.tool_calls.iter_mut().flatten());
    for call in calls {
        if let Some(arguments) = call.pointer_mut("/function/arguments") {
            if arguments.is_object() {
                let text = crate::py_json::dumps(arguments, &Default::default());
                *arguments = serde_json::Value::String(text);
                changed = true;
            }
        }
    }
    changed.then_some(messages)
}

/// `messages` with an empty text for every missing content; `None` where none is missing.
fn with_empty_content(messages: &[ChatMessage]) -> Option<Vec<ChatMessage>> {
    if messages.iter().all(|m| m.content.is_some()) {
        return None;
    }
    let mut messages = messages.to_vec();
    for m in &mut messages {
        m.content.get_or_insert_with(String::new);
    }
    Some(messages)
}

/// `messages` as JSON objects, the `content` key left out where there is none.
fn without_missing_content(messages: &[ChatMessage]) -> Vec<serde_json::Value> {
    messages
        .iter()
        .map(|m| {
            let mut v = serde_json::to_value(m).unwrap_or_default();
            if let Some(fields) = v.as_object_mut() {
                if fields.get("content").is_some_and(|c| c.is_null()) {
                    fields.remove("content");
                }
            }
            v
        })
        .collect()
}

/// The error with its causes and line, on one line.
fn describe(e: &JinjaError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage::text(role, content)
    }

    /// `indent` as Jinja2 3.1 renders each case (outputs taken from it): a trailing newline
    /// kept, blank lines indented only with `blank`, a string width, keyword arguments.
    #[test]
    fn indent_is_jinja2s() {
        for (template, want) in [
            ("{{ '{\\n'|indent(4, first=true) }}", "    {\n"),
            ("{{ 'a\\nb\\n\\nc'|indent(2) }}", "a\n  b\n\n  c"),
            (
                "{{ 'a\\nb\\n\\nc\\n'|indent(2, blank=true) }}",
                "a\n  b\n  \n  c\n  ",
            ),
            ("{{ 'a\\r\\nb'|indent('> ') }}", "a\n> b"),
            ("{{ 'x'|indent }}", "x"),
            ("{{ 'a\\nb'|indent(width=3, first=true) }}", "   a\n   b"),
        ] {
            let t = ChatTemplate::new(template, None, None).unwrap();
            assert_eq!(t.render(&[], false).unwrap(), want, "{template}");
        }
    }

    #[test]
    fn qwen_gguf_template_matches_transformers() {
        let golden: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/tokenizer/qwen2.5-0.5b.json"
        ))
        .unwrap();
        let t = ChatTemplate::new(
            golden["chat_template"].as_str().unwrap(),
            None,
            Some("<|endoftext|>"),
        )
        .unwrap();
        for case in golden["chat"].as_array().unwrap() {
            let messages: Vec<ChatMessage> =
                serde_json::from_value(case["messages"].clone()).unwrap();
            let text = t
                .render(&messages, case["add_generation_prompt"].as_bool().unwrap())
                .unwrap();
            assert_eq!(text, case["text"].as_str().unwrap(), "{}", case["id"]);
        }
    }

    /// Seed-OSS's, GLM-4.5/4.6's and Granite 3.3's own templates (`tests/fixtures/
    /// chat_templates`, rendered by transformers: `scripts/make-chat-template-golden.py`).
    #[test]
    fn family_templates_match_transformers() {
        let golden: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/chat_templates/families.json"
        ))
        .unwrap();
        for family in golden["families"].as_array().unwrap() {
            let name = family["name"].as_str().unwrap();
            let t = ChatTemplate::new(family["chat_template"].as_str().unwrap(), None, None)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            for case in family["cases"].as_array().unwrap() {
                let messages: Vec<ChatMessage> =
                    serde_json::from_value(case["messages"].clone()).unwrap();
                let text = t
                    .render(&messages, true)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    text,
                    case["text"].as_str().unwrap(),
                    "{name} {}",
                    case["id"]
                );
            }
        }
    }

    /// Conversations with tools, calls and tool results (`tests/fixtures/chat_tools`, rendered
    /// by transformers: `scripts/make-tool-template-golden.py`): Qwen2.5's template and the
    /// tag-format families' (Qwen3-Coder, Nemotron 3, Seed-OSS, GLM-4.6 / 4.7), Granite 3.3's
    /// and Kimi K2's.
    #[test]
    fn templates_with_tools_match_transformers() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/chat_tools");
        // Command R+'s `json_to_python_type(json_spec.items)`: Jinja2 looks an attribute up
        // before a key, so `.items` of a schema is the dict's method and an array parameter
        // prints as `List[Union[]]`; candor reads the key (`List[str]`), as the template's
        // author meant.
        let known = [(
            "CohereForAI-c4ai-command-r-plus-tool_use.json",
            "typed_arguments",
        )];
        let mut files = 0;
        let mut wrong = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let golden: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let name = path.display();
            let t = ChatTemplate::new(golden["chat_template"].as_str().unwrap(), None, None)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            for case in golden["cases"].as_array().unwrap() {
                let messages: Vec<ChatMessage> =
                    serde_json::from_value(case["messages"].clone()).unwrap();
                let mut extra = serde_json::Map::new();
                extra.insert("tools".into(), case["tools"].clone());
                let text = t
                    .render_with(&messages, true, &extra)
                    .unwrap_or_else(|e| panic!("{name} {}: {e}", case["id"]));
                let file = path.file_name().unwrap().to_string_lossy();
                let expected_to_differ =
                    known.iter().any(|(f, id)| *f == file && case["id"] == *id);
                let same = text == case["text"].as_str().unwrap();
                if same == expected_to_differ {
                    wrong.push(format!("{name} {}:\n{text}\n{}", case["id"], case["text"]));
                }
            }
            files += 1;
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
        assert!(files >= 8, "{files} goldens in {dir}");
    }

    /// The template corpus (`tests/fixtures/chat_templates/corpus.json`).
    fn corpus() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/chat_templates/corpus.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The corpus template `name`'s source.
    fn corpus_source(name: &str) -> String {
        let corpus = corpus();
        let templates = corpus["templates"].as_array().unwrap();
        let t = templates.iter().find(|t| t["name"] == name).unwrap();
        t["chat_template"].as_str().unwrap().to_string()
    }

    /// Every template llama.cpp keeps (`tests/fixtures/chat_templates/corpus.json`, rendered by
    /// transformers: `scripts/make-template-corpus-golden.py`), with plain and tool
    /// conversations: candor's rendering is transformers', but for the cases listed here.
    #[test]
    fn template_corpus_matches_transformers() {
        // Functionary v3.1 adds plain strings to `"..."|safe`: Jinja2's Markup then
        // HTML-escapes the tools' text and JSON (`&lt;with&gt;`, `&#34;name&#34;`), which
        // minijinja's safe strings do not do, and which no model was trained to read.
        let known = [(
            "meetkai-functionary-medium-v3.1",
            [
                "tools_first_turn",
                "assistant_text_and_call",
                "typed_arguments",
            ],
        )];
        let golden = corpus();
        let conversations = &golden["conversations"];
        let (bos, eos) = (golden["bos_token"].as_str(), golden["eos_token"].as_str());
        // Llama 3.2's, gpt-oss's and Solar Open's templates print the day they render on.
        let rendered_on: chrono::NaiveDate =
            golden["rendered_on"].as_str().unwrap().parse().unwrap();
        let mut wrong = Vec::new();
        let mut checked = 0;
        for template in golden["templates"].as_array().unwrap() {
            let name = template["name"].as_str().unwrap();
            let t = match ChatTemplate::new(template["chat_template"].as_str().unwrap(), bos, eos) {
                Ok(t) => t.at_date(rendered_on),
                Err(e) => {
                    wrong.push(format!("{name}: {e}"));
                    continue;
                }
            };
            for (case, want) in template["texts"].as_object().unwrap() {
                let expected_to_differ = known
                    .iter()
                    .any(|(n, cases)| *n == name && cases.contains(&case.as_str()));
                let conversation = &conversations[case];
                let messages: Vec<ChatMessage> =
                    serde_json::from_value(conversation["messages"].clone()).unwrap();
                let mut extra = serde_json::Map::new();
                if !conversation["tools"].is_null() {
                    extra.insert("tools".into(), conversation["tools"].clone());
                }
                let same = match t.render_with(&messages, true, &extra) {
                    Ok(text) => text == want.as_str().unwrap(),
                    Err(e) => {
                        wrong.push(format!("{name} {case}: {e}"));
                        continue;
                    }
                };
                if same == expected_to_differ {
                    wrong.push(format!("{name} {case}: same as transformers: {same}"));
                }
                checked += 1;
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(checked > 380, "{checked} renderings");
    }

    /// Templates without a system role (one refusing it as Gemma 2's does, one dropping it)
    /// get the system text at the start of the user's message; one with the role keeps it.
    #[test]
    fn system_texts_reach_templates_without_the_role() {
        let refusing = "{% for m in messages %}{% if m.role == 'system' %}\
             {{ raise_exception('System role not supported') }}{% endif %}\
             <{{ m.role }}>{{ m.content }}{% endfor %}";
        let dropping = "{% for m in messages %}{% if m.role != 'system' %}\
             <{{ m.role }}>{{ m.content }}{% endif %}{% endfor %}";
        let messages = [msg("system", "Be brief."), msg("user", "Hi")];
        for source in [refusing, dropping] {
            let t = ChatTemplate::new(source, None, None).unwrap();
            assert_eq!(t.render(&messages, true).unwrap(), "<user>Be brief.\nHi");
        }
        let showing = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
        let t = ChatTemplate::new(showing, None, None).unwrap();
        assert_eq!(
            t.render(&messages, true).unwrap(),
            "<system>Be brief.<user>Hi"
        );
    }

    /// An assistant turn of calls alone comes with `null` content from OpenAI's clients, on
    /// which these templates fail (under transformers too): they render it as an empty text.
    #[test]
    fn calls_without_content_reach_templates_that_need_a_text() {
        let corpus = corpus();
        let mut calls = msg("assistant", "");
        calls.content = None;
        calls.tool_calls = Some(vec![
            serde_json::json!({"id": "abc123XYZ", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}),
        ]);
        let mut result = msg("tool", "rain");
        result.tool_call_id = Some("abc123XYZ".into());
        let messages = [msg("user", "Weather?"), calls, result];
        // Whether the template writes tool results (Phi-3.5's has no tool role).
        let names = [
            ("Qwen-Qwen3-0.6B", true),
            ("Qwen-QwQ-32B", true),
            ("microsoft-Phi-3.5-mini-instruct", false),
            ("ibm-granite-granite-3.3-2B-Instruct", true),
            ("deepseek-ai-DeepSeek-R1-Distill-Llama-8B", true),
        ];
        for template in corpus["templates"].as_array().unwrap() {
            let name = template["name"].as_str().unwrap();
            let Some(&(_, shows_results)) = names.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            let t =
                ChatTemplate::new(template["chat_template"].as_str().unwrap(), None, None).unwrap();
            let rendered = t
                .render(&messages, true)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            // (Granite 3.3's writes no calls of the history.)
            assert_eq!(
                rendered.contains("rain"),
                shows_results,
                "{name}: {rendered}"
            );
        }
    }

    /// Gemma 2's template demands alternating turns: two user messages in a row become one;
    /// a template without that demand gets them as sent.
    #[test]
    fn runs_of_user_messages_reach_templates_that_demand_alternation() {
        let gemma = ChatTemplate::new(&corpus_source("google-gemma-2-2b-it"), None, None).unwrap();
        let messages = [
            msg("system", "Be brief."),
            msg("user", "First?"),
            msg("user", "Second?"),
        ];
        assert_eq!(
            gemma.render(&messages, true).unwrap(),
            "<start_of_turn>user\nBe brief.\nFirst?\n\nSecond?<end_of_turn>\n<start_of_turn>model\n"
        );
        let showing = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
        let t = ChatTemplate::new(showing, None, None).unwrap();
        assert_eq!(
            t.render(&messages[1..], true).unwrap(),
            "<user>First?<user>Second?"
        );
    }

    /// Llama 3.1's template refuses two calls in one assistant message: they are rendered one
    /// a message, each followed by its result; a template taking both is given them as sent.
    #[test]
    fn parallel_calls_reach_templates_that_take_one_at_a_time() {
        let source = corpus_source;
        let call = |id: &str, name: &str| {
            serde_json::json!({"id": id, "type": "function",
                               "function": {"name": name, "arguments": {"city": "Oslo"}}})
        };
        let mut calls = msg("assistant", "");
        calls.tool_calls = Some(vec![call("c1", "weather"), call("c2", "time")]);
        let mut first = msg("tool", "rain");
        first.tool_call_id = Some("c1".into());
        let mut second = msg("tool", "noon");
        second.tool_call_id = Some("c2".into());
        let messages = [
            msg("user", "Weather and time in Oslo?"),
            calls,
            first,
            second,
        ];
        let llama = ChatTemplate::new(
            &source("meta-llama-Llama-3.1-8B-Instruct"),
            Some("<|begin_of_text|>"),
            Some("<|eot_id|>"),
        )
        .unwrap();
        let text = llama.render(&messages, true).unwrap();
        let order = ["\"weather\"", "rain", "\"time\"", "noon"].map(|s| text.find(s).unwrap());
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        let qwen = ChatTemplate::new(&source("Qwen-Qwen3-0.6B"), None, None).unwrap();
        let text = qwen.render(&messages, true).unwrap();
        // Both calls in one turn, then both results.
        assert!(
            text.find("\"time\"").unwrap() < text.find("rain").unwrap(),
            "{text}"
        );
    }

    #[test]
    fn extra_variables_reach_the_template_but_not_the_standard_ones() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{{ m.content }}{% endfor %}\
             {% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}",
            None,
            None,
        )
        .unwrap();
        let mut extra = serde_json::Map::new();
        extra.insert("enable_thinking".into(), false.into());
        extra.insert(
            "messages".into(),
            serde_json::json!([{"content": "injected"}]),
        );
        let out = t.render_with(&[msg("user", "hi")], true, &extra).unwrap();
        assert_eq!(out, "hi<think></think>");
        assert_eq!(t.render(&[msg("user", "hi")], true).unwrap(), "hi");
    }

    #[test]
    fn helpers_work_and_raise_surfaces() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('roles must be user/assistant') }}{% endif %}\
             {{ m.content.strip() }}{% if m.content.strip().startswith('x') %}!{% endif %}|{{ m | tojson }}{% endfor %}{{ strftime_now('%Y') | length }}",
            None,
            None,
        )
        .unwrap();
        let out = t.render(&[msg("user", "  xy  ")], false).unwrap();
        assert!(out.starts_with("xy!|{"), "{out}");
        assert!(out.ends_with('4'), "{out}");
        match t.render(&[msg("tool", "s")], false) {
            Err(TemplateError::Raised(m)) => assert_eq!(m, "roles must be user/assistant"),
            other => panic!("expected Raised, got {other:?}"),
        }
    }

    #[test]
    fn gemma_style_template_alternation() {
        let src = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\
            {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}\
            {% set role = 'model' if message['role'] == 'assistant' else message['role'] %}\
            {{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}\
            {% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";
        let t = ChatTemplate::new(src, Some("<bos>"), None).unwrap();
        let out = t.render(&[msg("user", " hi ")], true).unwrap();
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
        );
        assert!(matches!(
            t.render(&[msg("assistant", "x")], true),
            Err(TemplateError::Raised(_))
        ));
    }

    #[test]
    fn generation_blocks_render_their_body() {
        let source =
            "{% for m in messages %}{%- generation -%} [{{ m.content }}] {%- endgeneration %}|\
                      {% endfor %}{{ x | length }}";
        assert_eq!(
            without_generation_blocks(source),
            "{% for m in messages %}{%- if true -%} [{{ m.content }}] {%- endif %}|\
             {% endfor %}{{ x | length }}"
        );
        let t = ChatTemplate::new(source, None, None).unwrap();
        assert_eq!(
            t.render(&[msg("user", "a"), msg("user", "b")], false)
                .unwrap(),
            "[a]|[b]|0"
        );
    }

    #[test]
    fn errors_not_panics() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", None, None),
            Err(TemplateError::Syntax(_))
        ));
        assert!(matches!(
            ChatTemplate::from_optional(None, None, None),
            Err(TemplateError::Missing)
        ));
        assert!(validate_roles(&[msg("robot", "x")], &["user", "assistant", "system"]).is_err());
    }

    /// Calls' arguments reach templates as objects; a template that adds them to text (made
    /// for OpenAI's JSON text: functionary v3.2's) gets them as `json.dumps` writes them, and
    /// a template that fails otherwise still fails with its own error.
    #[test]
    fn arguments_are_text_where_a_template_adds_them_to_text() {
        let mut call = msg("assistant", "");
        call.content = None;
        call.tool_calls = Some(vec![serde_json::json!(
            {"function": {"name": "f", "arguments": {"city": "Paris", "n": [1, 2]}}}
        )]);
        let render = |source: &str| {
            ChatTemplate::new(source, None, None)
                .unwrap()
                .render(std::slice::from_ref(&call), false)
        };
        let added = "{% for c in messages[0].tool_calls %}{{ '>>>' + c.function.name + '\n' + c.function.arguments }}{% endfor %}";
        assert_eq!(
            render(added).unwrap(),
            ">>>f\n{\"city\": \"Paris\", \"n\": [1, 2]}"
        );
        let keyed = "{{ messages[0].tool_calls[0].function.arguments.city }}";
        assert_eq!(render(keyed).unwrap(), "Paris");
        let broken = "{{ messages[0].tool_calls[0].function.arguments + 1 }}";
        let err = render(broken).unwrap_err().to_string();
        assert!(err.contains("map"), "{err}");
    }

    /// An assistant turn that only calls tools: `content` is `none` where a template tests
    /// for it so (DeepSeek-V3's), and absent where a template asks whether the key is there
    /// before searching it (gpt-oss's: `"content" in message`, then `... in message.content`).
    #[test]
    fn a_missing_content_is_none_or_absent_as_the_template_asks() {
        let mut call = msg("assistant", "");
        call.content = None;
        call.tool_calls = Some(vec![serde_json::json!({"function": {"name": "f"}})]);
        let by_none = ChatTemplate::new(
            "{% for m in messages %}{% if m.content is none %}call{% endif %}{% endfor %}",
            None,
            None,
        )
        .unwrap();
        assert_eq!(by_none.render(&[call.clone()], false).unwrap(), "call");
        let by_key = ChatTemplate::new(
            "{% for m in messages %}{% if 'content' in m %}\
             {% if '<|channel|>' in m.content %}raw{% endif %}{% else %}call{% endif %}\
             {% endfor %}",
            None,
            None,
        )
        .unwrap();
        assert_eq!(by_key.render(&[call], false).unwrap(), "call");
        assert_eq!(
            by_key.render(&[msg("user", "<|channel|>")], false).unwrap(),
            "raw"
        );
    }
}
