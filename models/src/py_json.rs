//! JSON text as Python's `json.dumps` writes it, for the `tojson` filter of chat templates.
//!
//! Hugging Face renders templates with `tojson = json.dumps(x, ensure_ascii=False, indent=...,
//! separators=..., sort_keys=...)`: `", "` and `": "` between items, no HTML escaping. Templates
//! put tool definitions and tool-call arguments into the prompt with it, so its exact text is
//! what the model was trained on. minijinja's built-in `tojson` is compact and HTML-safe (`<`
//! becomes `\u003c`), and serde_json's formatters have no Python separators or `ensure_ascii`,
//! hence this small writer.
use serde_json::Value;

/// The options of `json.dumps` that templates use.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// `None`: one line. `Some(s)`: a newline before each item, indented by `s` per level.
    pub indent: Option<String>,
    pub item_separator: String,
    pub key_separator: String,
    pub sort_keys: bool,
    pub ensure_ascii: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            indent: None,
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            sort_keys: false,
            ensure_ascii: false,
        }
    }
}

impl DumpOptions {
    /// Python's rule: with an indent, the default item separator loses its trailing space.
    pub fn with_indent(mut self, indent: Option<String>) -> Self {
        if indent.is_some() && self.item_separator == ", " {
            self.item_separator = ",".into();
        }
        self.indent = indent;
        self
    }
}

/// `json.dumps(value, **options)`.
pub fn dumps(value: &Value, options: &DumpOptions) -> String {
    let mut out = String::new();
    write_value(&mut out, value, options, 0);
    out
}

fn write_value(out: &mut String, value: &Value, o: &DumpOptions, depth: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(out, s, o.ensure_ascii),
        Value::Array(items) => write_container(out, '[', ']', items.len(), o, depth, |out, i| {
            write_value(out, &items[i], o, depth + 1)
        }),
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if o.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            write_container(out, '{', '}', entries.len(), o, depth, |out, i| {
                write_string(out, entries[i].0, o.ensure_ascii);
                out.push_str(&o.key_separator);
                write_value(out, entries[i].1, o, depth + 1);
            })
        }
    }
}

fn write_container(
    out: &mut String,
    open: char,
    close: char,
    len: usize,
    o: &DumpOptions,
    depth: usize,
    mut item: impl FnMut(&mut String, usize),
) {
    out.push(open);
    if len == 0 {
        out.push(close);
        return;
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(indent) = &o.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    };
    for i in 0..len {
        if i > 0 {
            out.push_str(&o.item_separator);
        }
        newline(out, depth + 1);
        item(out, i);
    }
    newline(out, depth);
    out.push(close);
}

/// A JSON string literal with Python's escapes: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`,
/// other control characters as `\u00XX`, and with `ensure_ascii` everything past ASCII as
/// `\uXXXX` (UTF-16 surrogate pairs beyond the BMP).
fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Expected strings are Python 3's `json.dumps` output for the same values.
    #[test]
    fn matches_python_defaults() {
        let v = json!({"b": [1, 2.5, null, true], "a": {"x": "<tag> & 'q'"}, "é": "ü\n\u{1}"});
        assert_eq!(
            dumps(&v, &DumpOptions::default()),
            r#"{"b": [1, 2.5, null, true], "a": {"x": "<tag> & 'q'"}, "é": "ü\n\u0001"}"#
        );
        let sorted = DumpOptions {
            sort_keys: true,
            ensure_ascii: true,
            ..Default::default()
        };
        assert_eq!(
            dumps(&json!({"b": "😀", "a": "é"}), &sorted),
            r#"{"a": "\u00e9", "b": "\ud83d\ude00"}"#
        );
        assert_eq!(
            dumps(&json!({"a": [], "b": {}}), &sorted),
            r#"{"a": [], "b": {}}"#
        );
    }

    #[test]
    fn indents_like_python() {
        // json.dumps({"a": [1, {"b": 2}], "c": {}}, indent=2)
        let o = DumpOptions::default().with_indent(Some("  ".into()));
        assert_eq!(
            dumps(&json!({"a": [1, {"b": 2}], "c": {}}), &o),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": 2\n    }\n  ],\n  \"c\": {}\n}"
        );
        // json.dumps([1, 2], separators=(",", ":"))
        let compact = DumpOptions {
            item_separator: ",".into(),
            key_separator: ":".into(),
            ..Default::default()
        };
        assert_eq!(dumps(&json!([1, {"k": 2}]), &compact), r#"[1,{"k":2}]"#);
    }
}
