//! config.json as transformers writes it: JSON plus Python's `NaN`, `Infinity` and `-Infinity`,
//! which `json.dumps` writes for such floats (Nemotron-H's `time_step_limit: [0.0, Infinity]`)
//! and serde_json refuses. They are read as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`:
//! the rest of the file parses, and a reader that wants a number takes them through `float`
//! (transformers 5 writes them as `{"__float__": "Infinity"}`, which `float` reads too). No
//! JSON crate takes these tokens, hence this small pass over the text.
use serde_json::Value;
use std::borrow::Cow;

/// The Python constants, longest first (`-Infinity` before the `Infinity` in it).
const CONSTANTS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];

/// `text` parsed, Python's constants outside strings read as strings of their names.
pub fn parse(text: &str) -> serde_json::Result<Value> {
    serde_json::from_str(&quoted_constants(text))
}

/// `text` with each of Python's constants outside a string put in quotes.
fn quoted_constants(text: &str) -> Cow<'_, str> {
    if !CONSTANTS.iter().any(|c| text.contains(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if !in_string {
            if let Some(c) = CONSTANTS.iter().find(|c| rest.starts_with(**c)) {
                out.push('"');
                out.push_str(c);
                out.push('"');
                rest = &rest[c.len()..];
                continue;
            }
        }
        match (in_string, escaped, ch) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => in_string = !in_string,
            _ => {}
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    Cow::Owned(out)
}

/// A float of a config: a number, one of Python's constants as `parse` reads them, or as
/// transformers 5 writes them (`{"__float__": "Infinity"}`).
pub fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            _ => None,
        },
        Value::Object(fields) if fields.len() == 1 => fields.get("__float__").and_then(float),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_constants_read_as_floats_and_strings_stay_as_written() {
        let v = parse(
            r#"{"limit": [0.0, Infinity], "low": -Infinity, "x": NaN,
                "name": "Infinity \"NaN\" -Infinity", "t5": {"__float__": "Infinity"}}"#,
        )
        .unwrap();
        assert_eq!(float(&v["limit"][1]), Some(f64::INFINITY));
        assert_eq!(float(&v["limit"][0]), Some(0.0));
        assert_eq!(float(&v["low"]), Some(f64::NEG_INFINITY));
        assert!(float(&v["x"]).unwrap().is_nan());
        assert_eq!(v["name"], r#"Infinity "NaN" -Infinity"#);
        assert_eq!(float(&v["t5"]), Some(f64::INFINITY));
        assert_eq!(float(&v["name"]), None);
        assert!(parse(r#"{"a": Inf}"#).is_err());
    }
}
