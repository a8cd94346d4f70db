//! Python literals (`['a', 'b']`, `{'k': True, 'n': None}`) read as JSON values: templates
//! that print a list or dict argument with `| string` (Seed-OSS's) show the model Python's
//! `repr`, and models write their own arguments so; vLLM's tag parsers read them with
//! `ast.literal_eval`. Only literals: strings, numbers, `True` / `False` / `None`, lists,
//! tuples (as lists) and dicts with string keys. Written by hand because no crate reads
//! Python literals into serde_json values.
use serde_json::{Map, Number, Value};

/// The value of `text` if it is one Python literal (whitespace around it aside).
pub fn parse(text: &str) -> Option<Value> {
    let mut p = Parser::new(text, false);
    let value = p.value()?;
    p.skip_space();
    (p.at == p.chars.len()).then_some(value)
}

/// A list of Python calls with keyword arguments, `[f(a=1, b='x'), g()]` (LFM2's tool calls;
/// a trailing comma allowed), as each call's name and arguments; `None` unless the whole of
/// `text` is one. The values may also be JSON's `true`, `false` and `null`, which LFM2 models
/// write too (llama.cpp's LFM2 parser takes them).
pub fn parse_calls(text: &str) -> Option<Vec<(String, Map<String, Value>)>> {
    let mut p = Parser::new(text, true);
    let mut calls = Vec::new();
    if !p.eat('[') {
        return None;
    }
    loop {
        if p.eat(']') {
            break;
        }
        calls.push(p.call()?);
        if !p.eat(',') {
            if !p.eat(']') {
                return None;
            }
            break;
        }
    }
    p.skip_space();
    (p.at == p.chars.len() && !calls.is_empty()).then_some(calls)
}

/// Python calls one a line, `f(a=1)\ng(b='x')` (OLMo 3's tool calls, in their block), as
/// `parse_calls` reads a list of them; `None` unless the whole of `text` is such lines (one
/// call at least), blank lines and the space around the calls aside.
pub fn parse_call_lines(text: &str) -> Option<Vec<(String, Map<String, Value>)>> {
    let mut calls = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut p = Parser::new(line, true);
        calls.push(p.call()?);
        p.skip_space();
        if p.at != p.chars.len() {
            return None;
        }
    }
    (!calls.is_empty()).then_some(calls)
}

/// Nesting deeper than this is refused (model output is untrusted; no stack overflow).
const MAX_DEPTH: usize = 64;

struct Parser {
    chars: Vec<char>,
    at: usize,
    depth: usize,
    /// JSON's words (`true`, `false`, `null`) and `\/` taken as well.
    json_words: bool,
}

impl Parser {
    fn new(text: &str, json_words: bool) -> Self {
        Parser {
            chars: text.chars().collect(),
            at: 0,
            depth: 0,
            json_words,
        }
    }

    /// `name(key=value, ...)`: a function's name (letters, digits, `_`, `-`: OpenAI's
    /// function names) and its keyword arguments.
    fn call(&mut self) -> Option<(String, Map<String, Value>)> {
        let name = self.name()?;
        if !self.eat('(') {
            return None;
        }
        let mut arguments = Map::new();
        loop {
            if self.eat(')') {
                return Some((name, arguments));
            }
            let key = self.name()?;
            if !self.eat('=') {
                return None;
            }
            arguments.insert(key, self.value()?);
            if !self.eat(',') {
                return self.eat(')').then_some((name, arguments));
            }
        }
    }

    fn name(&mut self) -> Option<String> {
        self.skip_space();
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-'))
        {
            self.at += 1;
        }
        let name: String = self.chars[start..self.at].iter().collect();
        let first = name.chars().next()?;
        (!first.is_ascii_digit()).then_some(name)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        let found = self.peek() == Some(c);
        if found {
            self.at += 1;
        }
        found
    }

    fn value(&mut self) -> Option<Value> {
        self.skip_space();
        match self.peek()? {
            '\'' | '"' => self.string().map(Value::String),
            '[' => self.items('[', ']'),
            '(' => self.items('(', ')'),
            '{' => self.dict(),
            _ => self.word(),
        }
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    /// A list or tuple: values between `open` and `close`, a trailing comma allowed.
    fn items(&mut self, open: char, close: char) -> Option<Value> {
        self.nested(|p| {
            p.eat(open);
            let mut items = Vec::new();
            loop {
                if p.eat(close) {
                    return Some(Value::Array(items));
                }
                items.push(p.value()?);
                if !p.eat(',') {
                    return p.eat(close).then_some(Value::Array(items));
                }
            }
        })
    }

    fn dict(&mut self) -> Option<Value> {
        self.nested(|p| {
            p.eat('{');
            let mut map = Map::new();
            loop {
                if p.eat('}') {
                    return Some(Value::Object(map));
                }
                p.skip_space();
                let key = p.string()?;
                if !p.eat(':') {
                    return None;
                }
                map.insert(key, p.value()?);
                if !p.eat(',') {
                    return p.eat('}').then_some(Value::Object(map));
                }
            }
        })
    }

    /// A quoted string with Python's escapes.
    fn string(&mut self) -> Option<String> {
        let quote = self.peek().filter(|c| *c == '\'' || *c == '"')?;
        self.at += 1;
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                c if c == quote => return Some(out),
                '\\' => {
                    let e = self.peek()?;
                    self.at += 1;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '0' => out.push('\0'),
                        'x' => out.push(self.code_point(2)?),
                        'u' => out.push(self.code_point(4)?),
                        'U' => out.push(self.code_point(8)?),
                        '\\' | '\'' | '"' => out.push(e),
                        '/' if self.json_words => out.push('/'),
                        // Python keeps unknown escapes as written.
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn code_point(&mut self, digits: usize) -> Option<char> {
        let hex: String = self.chars.get(self.at..self.at + digits)?.iter().collect();
        self.at += digits;
        char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
    }

    /// `True`, `False`, `None` or a number.
    fn word(&mut self) -> Option<Value> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        {
            self.at += 1;
        }
        let word: String = self.chars[start..self.at].iter().collect();
        match word.as_str() {
            "True" => Some(Value::Bool(true)),
            "False" => Some(Value::Bool(false)),
            "None" => Some(Value::Null),
            "true" if self.json_words => Some(Value::Bool(true)),
            "false" if self.json_words => Some(Value::Bool(false)),
            "null" if self.json_words => Some(Value::Null),
            number => {
                let number = number.replace('_', "");
                if let Ok(i) = number.parse::<i64>() {
                    return Some(Value::from(i));
                }
                number
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_literals_become_json() {
        assert_eq!(parse("['rain', 'wind']"), Some(json!(["rain", "wind"])));
        assert_eq!(
            parse(" {'a': 1, \"b\": [True, None, -2.5e3], 'c': (1,), 'd': {}} "),
            Some(json!({"a": 1, "b": [true, null, -2500.0], "c": [1], "d": {}}))
        );
        assert_eq!(
            parse("['it\\'s', 'a\\\\b\\n', '\\x41\\u00e9', 'é']"),
            Some(json!(["it's", "a\\b\n", "Aé", "é"]))
        );
        assert_eq!(parse("[1, 2,]"), Some(json!([1, 2])));
    }

    #[test]
    fn call_lists_read_as_names_and_arguments() {
        let calls = parse_calls(
            " [get_weather(city=\"Paris\", days=3, units='metric'), now(), \
             set-alarm(at={'h': 7}, on=true, note=null, tags=[None, False],)]",
        )
        .unwrap();
        let names: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["get_weather", "now", "set-alarm"]);
        assert_eq!(
            Value::Object(calls[0].1.clone()),
            json!({"city": "Paris", "days": 3, "units": "metric"})
        );
        assert!(calls[1].1.is_empty());
        assert_eq!(
            Value::Object(calls[2].1.clone()),
            json!({"at": {"h": 7}, "on": true, "note": null, "tags": [null, false]})
        );
        assert_eq!(
            parse_calls("[f(path=\"a\\/b\")]").unwrap()[0].1["path"],
            "a/b"
        );
        for text in [
            "",
            "[]",
            "f(a=1)",
            "[f(a=1)",
            "[f(1)]",
            "[f(a=1) g()]",
            "[f(a=1)] more",
            "[1f(a=1)]",
            "[f(a=x)]",
        ] {
            assert_eq!(parse_calls(text), None, "{text:?}");
        }
        let lines = parse_call_lines("\nget_weather(city='New York', on=true)\n\nnow()\n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            Value::Object(lines[0].1.clone()),
            json!({"city": "New York", "on": true})
        );
        for text in [
            "",
            "\n",
            "f(a=1) g()",
            "f(a=1)\nnot a call",
            "[f(a=1)]",
            "f(a='x\ny')",
        ] {
            assert_eq!(parse_call_lines(text), None, "{text:?}");
        }
        // Python's own literals stay strict about JSON's words.
        assert_eq!(parse("true"), None);
    }

    #[test]
    fn anything_else_is_not_a_literal() {
        for text in [
            "",
            "[1, 2",
            "['a' 'b']",
            "{1: 2}",
            "nan",
            "inf",
            "[x]",
            "'open",
            "[1] tail",
            "1_000_x",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(parse(&deep), None);
    }
}
