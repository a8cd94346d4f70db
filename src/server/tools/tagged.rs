//! Tool calls written as tags instead of JSON: a call is its function's name and key/value
//! pairs, each value the plain text of a string argument or the JSON of any other. Two styles:
//! - `Style::Function` (Qwen3-Coder, Qwen3.5, Nemotron 3, Step 3.5, Seed-OSS):
//!   `<function=NAME>` then `<parameter=KEY>VALUE</parameter>` pairs, then `</function>`;
//!   Qwen's templates pad each value with a newline on either side, Seed-OSS's do not.
//! - `Style::ArgPairs` (GLM-4.5 to 4.7 and the templates after them): `NAME` then
//!   `<arg_key>KEY</arg_key><arg_value>VALUE</arg_value>` pairs, with newlines between or not.
//! - `Style::Invoke` (MiniMax-M2 / M2.1): `<invoke name="NAME">` then
//!   `<parameter name="KEY">VALUE</parameter>` pairs, then `</invoke>`, several per block.
//! - `Style::FunctionParam` (MiniCPM5): `<function name="NAME">` then
//!   `<param name="KEY">VALUE</param>` pairs, then `</function>`; the call is the block (no
//!   tag around it), and a value holding `<`, `&` or a newline comes as `<![CDATA[...]]>`.
//! - `Style::Hy3` (Tencent Hy3): `<tool_call:opensource>NAME<tool_sep:opensource>` then
//!   GLM's key / value pairs in `:opensource`-suffixed tags, then `</tool_call:opensource>`,
//!   several per block (every tag one special token of its vocabulary).
//! - `Style::Dsml` (DeepSeek V3.2, V4): MiniMax's invocations with DeepSeek's `<｜DSML｜`
//!   before each tag, and `string="true"` / `"false"` on each parameter: its value is the
//!   text, or JSON.
//!
//! The text does not say a value's type: the function's schema does, as vLLM's qwen3_coder,
//! seed_oss and glm45 parsers read them (a string parameter's text is taken as it is, anything
//! else as JSON when it parses as a value of the declared type). The grammars that hold a call
//! to its schema follow the same split: free text (or the schema's enum, or its length bounds)
//! up to the value's closing tag for strings, the schema's JSON for the rest.
use super::format::ParsedCall;
use super::py_literal;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Function,
    ArgPairs,
    Invoke,
    /// The block's opening tag ends before the name (`<function name="`), so the block's
    /// text is `NAME">` and the pairs.
    FunctionParam,
    Hy3,
    Dsml,
}

/// The tags around one argument.
pub(super) struct PairTags {
    pub key_open: &'static str,
    pub key_close: &'static str,
    /// Between the key's closing tag and the value (after optional whitespace).
    pub value_open: &'static str,
    pub value_close: &'static str,
}

const FUNCTION_OPEN: &str = "<function=";
const FUNCTION_CLOSE: &str = "</function>";
const INVOKE_OPEN: &str = "<invoke name=\"";
const INVOKE_CLOSE: &str = "</invoke>";
/// What ends the name in MiniCPM5's opening tag, and what wraps a value holding markup.
const NAME_END: &str = "\">";
/// MiniCPM5's call tags, the block's own: its opening up to the name, and its closing.
pub(super) const FUNCTION_PARAM_BLOCK: (&str, &str) = ("<function name=\"", FUNCTION_CLOSE);
const CDATA: (&str, &str) = ("<![CDATA[", "]]>");
/// DeepSeek's DSML call tags, and what a parameter's tag says of its value.
const DSML_INVOKE: (&str, &str, &str) = ("<｜DSML｜invoke name=\"", NAME_END, "</｜DSML｜invoke>");
const DSML_TEXT: &str = "\" string=\"true\">";
const DSML_JSON: &str = "\" string=\"false\">";
/// Hy3's call tags (its template's `HYTK` suffix, `:opensource`, on each).
const HY3_CALL: (&str, &str, &str) = (
    "<tool_call:opensource>",
    "<tool_sep:opensource>",
    "</tool_call:opensource>",
);

impl Style {
    pub(super) fn tags(self) -> PairTags {
        match self {
            Style::Function => PairTags {
                key_open: "<parameter=",
                key_close: ">",
                value_open: "",
                value_close: "</parameter>",
            },
            Style::ArgPairs => PairTags {
                key_open: "<arg_key>",
                key_close: "</arg_key>",
                value_open: "<arg_value>",
                value_close: "</arg_value>",
            },
            Style::Invoke => PairTags {
                key_open: "<parameter name=\"",
                key_close: "\">",
                value_open: "",
                value_close: "</parameter>",
            },
            Style::FunctionParam => PairTags {
                key_open: "<param name=\"",
                key_close: NAME_END,
                value_open: "",
                value_close: "</param>",
            },
            // The key's tag closes with the value's kind (`key_close_for`).
            Style::Dsml => PairTags {
                key_open: "<｜DSML｜parameter name=\"",
                key_close: NAME_END,
                value_open: "",
                value_close: "</｜DSML｜parameter>",
            },
            Style::Hy3 => PairTags {
                key_open: "<arg_key:opensource>",
                key_close: "</arg_key:opensource>",
                value_open: "<arg_value:opensource>",
                value_close: "</arg_value:opensource>",
            },
        }
    }

    /// Where a call is one tagged element inside the block: its opening up to the name, what
    /// ends the name, and its closing tag; None where the block's text is the call (ArgPairs,
    /// FunctionParam).
    pub(super) fn call_tags(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Style::Function => Some((FUNCTION_OPEN, ">", FUNCTION_CLOSE)),
            Style::Invoke => Some((INVOKE_OPEN, NAME_END, INVOKE_CLOSE)),
            Style::Hy3 => Some(HY3_CALL),
            Style::Dsml => Some(DSML_INVOKE),
            Style::ArgPairs | Style::FunctionParam => None,
        }
    }

    /// A call's text before its arguments.
    pub fn head(self, name: &str) -> String {
        match self.call_tags() {
            Some((open, name_end, _)) => format!("{open}{name}{name_end}"),
            None if self == Style::FunctionParam => format!("{name}{NAME_END}"),
            None => name.to_string(),
        }
    }

    /// What the templates write between the block's opening tag and the call's head.
    pub fn block_opening(self) -> &'static str {
        match self {
            Style::Function | Style::Invoke | Style::Hy3 | Style::Dsml => "\n",
            Style::ArgPairs | Style::FunctionParam => "",
        }
    }

    /// Whether the templates write all of a turn's calls in one block (Qwen's write a block
    /// a call).
    pub fn several_per_block(self) -> bool {
        matches!(self, Style::Invoke | Style::Hy3 | Style::Dsml)
    }

    /// Text a free string value may not hold: the opening of the format's own tags (DSML's),
    /// so that a model forgetting the value's closing tag cannot run on into more tags.
    pub(super) fn text_excludes(self) -> Option<&'static str> {
        match self {
            Style::Dsml => Some("<｜DSML｜"),
            _ => None,
        }
    }

    /// What closes a parameter's key, for a value written as `text` or as JSON (DSML says
    /// which; the others' tags do not).
    pub(super) fn key_close_for(self, text: bool) -> &'static str {
        match (self, text) {
            (Style::Dsml, true) => DSML_TEXT,
            (Style::Dsml, false) => DSML_JSON,
            _ => self.tags().key_close,
        }
    }

    /// Whether a pair's key and value each have tags of their own (GLM's, Hy3's).
    pub(super) fn tags_key_and_value(self) -> bool {
        matches!(self, Style::ArgPairs | Style::Hy3)
    }

    /// The calls in the text between a block's tags; `None` unless it is only well-formed
    /// calls (then the block is returned as text).
    pub fn parse(self, body: &str, functions: &[(String, Value)]) -> Option<Vec<ParsedCall>> {
        match self.call_tags() {
            Some((open, name_end, close)) => {
                let mut calls = Vec::new();
                let mut rest = body.trim_start();
                // One call per block as Qwen's templates write them, several as MiniMax's do.
                while !rest.is_empty() {
                    let (name, after) = rest.strip_prefix(open)?.split_once(name_end)?;
                    let (arguments, after) = self.arguments(name, after, functions)?;
                    // A model that stops right after its last value still made the call.
                    rest = match after.strip_prefix(close) {
                        Some(after) => after.trim_start(),
                        None if after.is_empty() => after,
                        None => return None,
                    };
                    calls.push(call(name, arguments)?);
                }
                (!calls.is_empty()).then_some(calls)
            }
            None => {
                let tags = self.tags();
                let (name, after) = match (self, body.find(tags.key_open)) {
                    // MiniCPM5's name ends its opening tag.
                    (Style::FunctionParam, _) => body.split_once(NAME_END)?,
                    (_, Some(at)) => body.split_at(at),
                    (_, None) => (body, ""),
                };
                let name = name.trim();
                let (arguments, after) = self.arguments(name, after, functions)?;
                // MiniCPM5's block ends with the call's closing tag, kept where a forced
                // call's text is read whole.
                let after = match self {
                    Style::FunctionParam => after.strip_prefix(FUNCTION_CLOSE).unwrap_or(after),
                    _ => after,
                };
                after
                    .trim_start()
                    .is_empty()
                    .then(|| call(name, arguments))
                    .flatten()
                    .map(|c| vec![c])
            }
        }
    }

    /// The pairs at the start of `text` as a JSON object of `name`'s arguments, and the text
    /// after them (whitespace trimmed).
    fn arguments<'a>(
        self,
        name: &str,
        mut text: &'a str,
        functions: &[(String, Value)],
    ) -> Option<(String, &'a str)> {
        let tags = self.tags();
        let params = functions.iter().find(|(n, _)| n == name).map(|(_, p)| p);
        let mut arguments = Map::new();
        loop {
            text = text.trim_start();
            let Some(after) = text.strip_prefix(tags.key_open) else {
                break;
            };
            let (key, after) = after.split_once(tags.key_close)?;
            // DSML's key ends at its quote; `string="..."` after it says the value's kind.
            let (key, kind) = match self {
                Style::Dsml => match key.split_once('"') {
                    Some((key, kind)) => match kind.trim() {
                        "string=\"true" => (key, Some(true)),
                        "string=\"false" => (key, Some(false)),
                        _ => return None,
                    },
                    None => (key, None),
                },
                _ => (key, None),
            };
            let after = match tags.value_open {
                "" => after,
                open => after.trim_start().strip_prefix(open)?,
            };
            // MiniCPM5's CDATA sections hold text as it is, its closing tag included.
            let cdata = match self {
                Style::FunctionParam => after.strip_prefix(CDATA.0),
                _ => None,
            };
            let (raw, after) = match cdata {
                Some(inner) => {
                    let (raw, after) = inner.split_once(CDATA.1)?;
                    (raw, after.trim_start().strip_prefix(tags.value_close)?)
                }
                None => after.split_once(tags.value_close)?,
            };
            let raw = match self {
                // The newlines Qwen's templates put around a value are not part of it (MiniMax's
                // put none; a model's own are dropped alike).
                Style::Function | Style::Invoke => {
                    let raw = raw.strip_prefix('\n').unwrap_or(raw);
                    raw.strip_suffix('\n').unwrap_or(raw)
                }
                Style::ArgPairs | Style::FunctionParam | Style::Hy3 | Style::Dsml => raw,
            };
            let key = key.trim();
            let schema = params.and_then(|p| p.get("properties")?.get(key));
            let value = match kind {
                Some(true) => Value::String(raw.to_string()),
                Some(false) => {
                    serde_json::from_str(raw.trim()).unwrap_or_else(|_| typed_value(raw, schema))
                }
                None => typed_value(raw, schema),
            };
            arguments.insert(key.to_string(), value);
            text = after;
        }
        Some((serde_json::to_string(&arguments).ok()?, text))
    }
}

/// A call read from the text, if its name is one.
fn call(name: &str, arguments: String) -> Option<ParsedCall> {
    let plausible = !name.is_empty() && !name.contains(['<', '>', '\n']);
    plausible.then(|| ParsedCall {
        name: name.to_string(),
        arguments,
    })
}

/// The JSON types a parameter's schema declares (`type`, or those of its `anyOf` / `oneOf`
/// branches); empty when it declares none.
pub(super) fn declared_types(schema: &Value) -> Vec<&str> {
    let mut types = Vec::new();
    match schema.get("type") {
        Some(Value::String(t)) => types.push(t.as_str()),
        Some(Value::Array(ts)) => types.extend(ts.iter().filter_map(Value::as_str)),
        _ => {}
    }
    for branches in ["anyOf", "oneOf"] {
        for branch in schema
            .get(branches)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            types.extend(declared_types(branch));
        }
    }
    if types.is_empty() {
        // An enum or const of strings declares strings.
        let values = match (schema.get("enum"), schema.get("const")) {
            (Some(Value::Array(vs)), _) => vs.iter().collect(),
            (_, Some(v)) => vec![v],
            _ => Vec::new(),
        };
        if !values.is_empty() && values.iter().all(|v| v.is_string()) {
            types.push("string");
        }
    }
    types
}

/// Whether `v` is of JSON Schema type `t`.
fn is_of_type(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => false,
    }
}

/// An argument's value from its text: the text itself for a string parameter (and for one
/// the schema does not name), else the JSON it holds when that is of a declared type (or the
/// Python literal: `True`, `['a', 'b']`, as templates print them), else the text.
pub(super) fn typed_value(raw: &str, schema: Option<&Value>) -> Value {
    let text = || Value::String(raw.to_string());
    let Some(schema) = schema else {
        return text();
    };
    let types = declared_types(schema);
    if types == ["string"] {
        return text();
    }
    let trimmed = raw.trim();
    let parsed = serde_json::from_str::<Value>(trimmed)
        .ok()
        .or_else(|| py_literal::parse(trimmed));
    match parsed {
        Some(v) if types.is_empty() || types.iter().any(|t| is_of_type(&v, t)) => v,
        _ => text(),
    }
}

/// For a parameter its models write as plain text (a string, possibly among other types):
/// the regular expression its text follows, from its schema's enum / const or length bounds.
/// `None`: the value is written as JSON.
pub(super) fn text_body(schema: &Value) -> Option<String> {
    let types = declared_types(schema);
    if !types.contains(&"string") {
        return None;
    }
    let strings = |values: Vec<&Value>| {
        let alternatives: Option<Vec<String>> = values
            .iter()
            .map(|v| v.as_str().map(regex_syntax::escape))
            .collect();
        alternatives.map(|a| format!("({})", a.join("|")))
    };
    if types == ["string"] {
        if let Some(Value::Array(values)) = schema.get("enum") {
            if let Some(rx) = strings(values.iter().collect()) {
                return Some(rx);
            }
        }
        if let Some(value) = schema.get("const") {
            if let Some(rx) = strings(vec![value]) {
                return Some(rx);
            }
        }
        let bound = |key: &str| schema.get(key).and_then(Value::as_u64);
        if let (min, Some(max)) = (bound("minLength"), bound("maxLength")) {
            return Some(format!("(?s:.{{{},{max}}})", min.unwrap_or(0).min(max)));
        }
        if let Some(min) = bound("minLength") {
            return Some(format!("(?s:.{{{min},}})"));
        }
    }
    Some("(?s:.*)".to_string())
}

/// A parameter's schema with the parameters' `$defs` / `definitions` beside it, so that its
/// `$ref`s resolve once it stands alone.
pub(super) fn with_definitions(schema: &Value, params: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(object) = schema.as_object_mut() {
        for key in ["$defs", "definitions"] {
            if let (Some(defs), false) = (params.get(key), object.contains_key(key)) {
                object.insert(key.to_string(), defs.clone());
            }
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn functions() -> Vec<(String, Value)> {
        vec![(
            "get_weather".into(),
            json!({"type": "object", "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "note": {"type": ["string", "null"]},
                "zip": {"type": "string"}
            }, "required": ["city"]}),
        )]
    }

    fn parsed(name: &str, arguments: Value) -> Option<Vec<ParsedCall>> {
        Some(vec![ParsedCall {
            name: name.into(),
            arguments: serde_json::to_string(&arguments).unwrap(),
        }])
    }

    #[test]
    fn qwen_and_seed_function_tags_read_typed_values() {
        let f = functions();
        // Qwen3-Coder's padding newlines are not part of the values; a string stays a string
        // even where it reads as a number; a list is JSON.
        let qwen = "\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n\
                    <parameter=days>\n3\n</parameter>\n<parameter=zip>\n10001\n</parameter>\n\
                    <parameter=tags>\n[\"a\", \"b\"]\n</parameter>\n</function>\n";
        assert_eq!(
            Style::Function.parse(qwen, &f),
            parsed(
                "get_weather",
                json!({"city": "New York", "days": 3, "zip": "10001", "tags": ["a", "b"]})
            )
        );
        // Seed-OSS writes no padding; multi-line text keeps its inner newlines; Python's
        // True; null for a nullable string; an unknown parameter is text.
        let seed = "\n<function=get_weather>\n<parameter=city>Oslo\nNorway</parameter>\n\
                    <parameter=metric>True</parameter>\n<parameter=note>null</parameter>\n\
                    <parameter=extra>42</parameter>\n</function>";
        assert_eq!(
            Style::Function.parse(seed, &f),
            parsed(
                "get_weather",
                json!({"city": "Oslo\nNorway", "metric": true, "note": null, "extra": "42"})
            )
        );
        // A value that is not of its type stays text (the caller sees what was written).
        assert_eq!(
            Style::Function.parse(
                "<function=get_weather><parameter=days>three</parameter></function>",
                &f
            ),
            parsed("get_weather", json!({"days": "three"}))
        );
        // Stopped right after the last value: still the call. A function not offered is
        // read too (its values as text), as with the JSON formats.
        assert_eq!(
            Style::Function.parse("<function=f>\n<parameter=x>\n1\n</parameter>\n", &f),
            parsed("f", json!({"x": "1"}))
        );
        assert_eq!(
            Style::Function.parse("<function=now>\n</function>", &f),
            parsed("now", json!({}))
        );
    }

    #[test]
    fn malformed_function_tags_are_not_calls() {
        let f = functions();
        for body in [
            "",
            "{\"name\": \"get_weather\"}",
            "<function=get_weather>\n<parameter=city>\nParis",
            "<function=get_weather>\n<parameter=city\nParis</parameter></function>",
            "<function=get_weather></function> and text",
            "<function=>\n</function>",
        ] {
            assert_eq!(Style::Function.parse(body, &f), None, "{body:?}");
        }
    }

    /// MiniCPM5's block is the call, from the name on (its opening tag is the block's
    /// marker): values typed by the schema, Python literals as its template prints them,
    /// CDATA sections unwrapped (a closing tag inside one is text).
    #[test]
    fn minicpm5_function_params_read_typed_and_cdata_values() {
        let f = functions();
        let body = "get_weather\"><param name=\"city\"><![CDATA[Oslo\n<b>&</param>]]></param>\
                    <param name=\"days\">3</param><param name=\"metric\">False</param>\
                    <param name=\"tags\">['a', 'b']</param><param name=\"zip\">0131</param>";
        assert_eq!(
            Style::FunctionParam.parse(body, &f),
            parsed(
                "get_weather",
                json!({"city": "Oslo\n<b>&</param>", "days": 3, "metric": false,
                       "tags": ["a", "b"], "zip": "0131"})
            )
        );
        // No arguments; the closing tag kept where a forced call is read whole.
        assert_eq!(
            Style::FunctionParam.parse("get_time\">", &f),
            parsed("get_time", json!({}))
        );
        assert_eq!(
            Style::FunctionParam.parse("now\"></function>", &f),
            parsed("now", json!({}))
        );
        for body in [
            "",
            "get_weather",
            "get_weather\"><param name=\"city\">Paris",
            "get_weather\"><param name=\"city\"><![CDATA[Paris</param>",
            "get_weather\"> text <param name=\"city\">Paris</param>",
            "get_weather\"><param name=\"city\">Paris</param></function> more",
            "two\nlines\">",
        ] {
            assert_eq!(Style::FunctionParam.parse(body, &f), None, "{body:?}");
        }
    }

    /// Hy3's block of calls as its template writes it: GLM's pairs in suffixed tags, the
    /// values typed by the schema.
    #[test]
    fn hy3_blocks_hold_several_calls_of_suffixed_pairs() {
        let f = functions();
        let body = "\n<tool_call:opensource>get_weather<tool_sep:opensource>\n\
                    <arg_key:opensource>city</arg_key:opensource>\n\
                    <arg_value:opensource>São Paulo</arg_value:opensource>\n\
                    <arg_key:opensource>days</arg_key:opensource>\n\
                    <arg_value:opensource>3</arg_value:opensource>\n\
                    <arg_key:opensource>tags</arg_key:opensource>\n\
                    <arg_value:opensource>[\"rain\"]</arg_value:opensource>\n\
                    </tool_call:opensource>\n\
                    <tool_call:opensource>get_time<tool_sep:opensource>\n</tool_call:opensource>\n";
        assert_eq!(
            Style::Hy3.parse(body, &f),
            Some(vec![
                ParsedCall::new(
                    "get_weather",
                    &json!({"city": "São Paulo", "days": 3, "tags": ["rain"]}).to_string()
                ),
                ParsedCall::new("get_time", "{}"),
            ])
        );
        for body in [
            "<tool_call:opensource>get_weather\n<arg_key:opensource>city</arg_key:opensource>",
            "<tool_call:opensource>f<tool_sep:opensource><arg_key:opensource>x\
             </arg_key:opensource>1</tool_call:opensource>",
            "get_weather<tool_sep:opensource></tool_call:opensource>",
        ] {
            assert_eq!(Style::Hy3.parse(body, &f), None, "{body:?}");
        }
    }

    /// DeepSeek's DSML invocations: `string="true"` keeps a value as text whatever the
    /// schema, `"false"` reads its JSON; several calls a block.
    #[test]
    fn dsml_parameters_say_whether_their_values_are_text() {
        let f = functions();
        let body = "\n<｜DSML｜invoke name=\"get_weather\">\n\
                    <｜DSML｜parameter name=\"city\" string=\"true\">Oslo</｜DSML｜parameter>\n\
                    <｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n\
                    <｜DSML｜parameter name=\"zip\" string=\"true\">0131</｜DSML｜parameter>\n\
                    <｜DSML｜parameter name=\"extra\" string=\"false\">[1, {\"a\": null}]\
                    </｜DSML｜parameter>\n\
                    <｜DSML｜parameter name=\"note\" string=\"true\">42</｜DSML｜parameter>\n\
                    </｜DSML｜invoke>\n<｜DSML｜invoke name=\"now\">\n</｜DSML｜invoke>\n";
        assert_eq!(
            Style::Dsml.parse(body, &f),
            Some(vec![
                ParsedCall::new(
                    "get_weather",
                    &json!({"city": "Oslo", "days": 3, "zip": "0131",
                            "extra": [1, {"a": null}], "note": "42"})
                    .to_string()
                ),
                ParsedCall::new("now", "{}"),
            ])
        );
        let bad_kind = "<｜DSML｜invoke name=\"f\">\
                        <｜DSML｜parameter name=\"x\" string=\"maybe\">1</｜DSML｜parameter>\
                        </｜DSML｜invoke>";
        assert_eq!(Style::Dsml.parse(bad_kind, &f), None);
    }

    #[test]
    fn glm_argument_pairs_with_and_without_newlines() {
        let f = functions();
        let glm46 = "get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n\
                     <arg_key>days</arg_key>\n<arg_value>2</arg_value>\n";
        let glm47 = "get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value>\
                     <arg_key>days</arg_key><arg_value>2</arg_value>";
        for body in [glm46, glm47] {
            assert_eq!(
                Style::ArgPairs.parse(body, &f),
                parsed("get_weather", json!({"city": "Paris", "days": 2})),
                "{body:?}"
            );
        }
        assert_eq!(
            Style::ArgPairs.parse("get_time", &f),
            parsed("get_time", json!({}))
        );
        for body in [
            "",
            "get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris",
            "get_weather <arg_key>city</arg_key> stray <arg_value>x</arg_value>",
            "get_weather\n<arg_key>city</arg_key><arg_value>x</arg_value> trailing",
            "two\nlines<arg_key>a</arg_key><arg_value>b</arg_value>",
        ] {
            assert_eq!(Style::ArgPairs.parse(body, &f), None, "{body:?}");
        }
    }
}
