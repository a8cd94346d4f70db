//! Python's `repr` / `str` of template values, for chat templates that print a list or a dict
//! (`{{ value }}`, `value | string`): transformers renders them with Jinja2, where those are
//! Python's (`['a', 'b']`, `{'k': True}`), and minijinja would print JSON-like text. Seed-OSS
//! writes list arguments of its tool calls this way, so a model saw them so in training.
//! Written here because no crate renders minijinja values as Python does.
use minijinja::value::{Value, ValueKind};
use std::fmt::Write;

/// Whether a value prints differently in Python than in minijinja (containers).
pub fn is_container(value: &Value) -> bool {
    matches!(value.kind(), ValueKind::Seq | ValueKind::Map)
}

/// `str(value)` as Python gives it: strings as they are, containers as their `repr`.
pub fn str_of(value: &Value) -> String {
    if is_container(value) {
        let mut out = String::new();
        repr(&mut out, value);
        out
    } else {
        value.to_string()
    }
}

/// `repr(value)`.
fn repr(out: &mut String, value: &Value) {
    match value.kind() {
        ValueKind::String => {
            if let Some(s) = value.as_str() {
                repr_str(out, s);
            }
        }
        ValueKind::Seq => {
            out.push('[');
            for (i, item) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(out, &item);
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(out, &key);
                out.push_str(": ");
                repr(out, &value.get_item(&key).unwrap_or_default());
            }
            out.push('}');
        }
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        // Numbers and booleans print as Python's already (`True`, `1.0`).
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

/// A string's `repr`: single quotes unless it holds one and no double quote; backslashes,
/// the quote and control characters escaped.
fn repr_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x100 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(json: serde_json::Value) -> String {
        str_of(&Value::from_serialize(json))
    }

    /// Expected strings are Python 3's `str()` of the same values.
    #[test]
    fn containers_print_as_python() {
        assert_eq!(of(serde_json::json!(["rain", "wind"])), "['rain', 'wind']");
        assert_eq!(
            of(serde_json::json!({"a": 1, "b": [true, null, 2.5], "c": {}})),
            "{'a': 1, 'b': [True, None, 2.5], 'c': {}}"
        );
        assert_eq!(
            of(serde_json::json!([
                "it's",
                "say \"hi\"",
                "both ' \"",
                "a\\b\n\u{1}",
                "é"
            ])),
            "[\"it's\", 'say \"hi\"', 'both \\' \"', 'a\\\\b\\n\\x01', 'é']"
        );
        assert_eq!(of(serde_json::json!("plain")), "plain");
        assert_eq!(of(serde_json::json!(false)), "False");
    }
}
