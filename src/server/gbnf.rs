//! GBNF (llama.cpp's grammar format, also what vLLM's xgrammar reads) translated into the lark
//! dialect llguidance compiles, so `grammar` fields written for llama-server or vLLM work here.
//! Written by hand: llguidance reads lark only, and no crate translates GBNF.
//!
//! GBNF: `name ::= body` rules (`root` starts), `"literals"` with `\n \t \\ \" \xHH \uHHHH`
//! escapes, `[a-z]` / `[^"]` classes, `.` (any character), `( )`, `|`, `* + ?`, `{m}`, `{m,}`,
//! `{m,n}`, `#` comments. A rule ends where the next `name ::=` begins.
use std::collections::HashMap;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Alt(Vec<Expr>),
    Seq(Vec<Expr>),
    Literal(String),
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
    Any,
    Ref(String),
    Repeat(Box<Expr>, u32, Option<u32>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Define,
    Literal(String),
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
    Any,
    Open,
    Close,
    Bar,
    Postfix(u32, Option<u32>),
}

/// Translate a GBNF grammar into llguidance's lark (`root` becomes `start`).
pub fn to_lark(gbnf: &str) -> Result<String, String> {
    let tokens = lex(gbnf)?;
    let rules = Parser {
        tokens,
        at: 0,
        depth: 0,
    }
    .rules()?;
    if !rules.iter().any(|(name, _)| name == "root") {
        return Err("no `root` rule".into());
    }
    let mut names = HashMap::new();
    for (i, (name, _)) in rules.iter().enumerate() {
        let lark = if name == "root" {
            "start".to_string()
        } else {
            // Lark rule names are lower case; the index keeps `a-b` and `A_b` apart.
            let clean: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("r{i}_{clean}")
        };
        if names.insert(name.clone(), lark).is_some() {
            return Err(format!("rule `{name}` is defined twice"));
        }
    }
    let mut out = String::new();
    for (name, body) in &rules {
        let _ = writeln!(out, "{}: {}", names[name], emit(body, &names, false)?);
    }
    Ok(out)
}

fn lex(src: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ':' if chars[i..].starts_with(&[':', ':', '=']) => {
                tokens.push(Token::Define);
                i += 3;
            }
            '"' => {
                i += 1;
                let mut text = String::new();
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('"') => break,
                        Some('\\') => {
                            let (ch, next) = escape(&chars, i + 1)?;
                            text.push(ch);
                            i = next;
                        }
                        Some(&ch) => {
                            text.push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
                tokens.push(Token::Literal(text));
            }
            '[' => {
                i += 1;
                let negated = chars.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut items = Vec::new();
                loop {
                    let first = match chars.get(i) {
                        None => return Err("unterminated character class".into()),
                        Some(']') => break,
                        Some('\\') => {
                            let (ch, next) = escape(&chars, i + 1)?;
                            i = next;
                            ch
                        }
                        Some(&ch) => {
                            i += 1;
                            ch
                        }
                    };
                    let last = if chars.get(i) == Some(&'-')
                        && chars.get(i + 1).is_some_and(|c| *c != ']')
                    {
                        i += 1;
                        match chars.get(i) {
                            Some('\\') => {
                                let (ch, next) = escape(&chars, i + 1)?;
                                i = next;
                                ch
                            }
                            Some(&ch) => {
                                i += 1;
                                ch
                            }
                            None => return Err("unterminated character class".into()),
                        }
                    } else {
                        first
                    };
                    if last < first {
                        return Err(format!("empty range `{first}-{last}`"));
                    }
                    items.push((first, last));
                }
                i += 1;
                tokens.push(Token::Class { negated, items });
            }
            '.' => {
                tokens.push(Token::Any);
                i += 1;
            }
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '|' => {
                tokens.push(Token::Bar);
                i += 1;
            }
            '*' => {
                tokens.push(Token::Postfix(0, None));
                i += 1;
            }
            '+' => {
                tokens.push(Token::Postfix(1, None));
                i += 1;
            }
            '?' => {
                tokens.push(Token::Postfix(0, Some(1)));
                i += 1;
            }
            '{' => {
                let end = chars[i..]
                    .iter()
                    .position(|c| *c == '}')
                    .ok_or("unterminated `{`")?;
                let inner: String = chars[i + 1..i + end].iter().collect();
                tokens.push(repetition(&inner)?);
                i += end + 1;
            }
            _ if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '-' || chars[i] == '_')
                {
                    i += 1;
                }
                tokens.push(Token::Name(chars[start..i].iter().collect()));
            }
            _ => return Err(format!("unexpected `{c}`")),
        }
    }
    Ok(tokens)
}

/// `{m}`, `{m,}`, `{m,n}`.
fn repetition(inner: &str) -> Result<Token, String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("bad repetition `{{{inner}}}`"))
    };
    match inner.split_once(',') {
        None => {
            let n = number(inner)?;
            Ok(Token::Postfix(n, Some(n)))
        }
        Some((lo, hi)) if hi.trim().is_empty() => Ok(Token::Postfix(number(lo)?, None)),
        Some((lo, hi)) => {
            let lo = if lo.trim().is_empty() { 0 } else { number(lo)? };
            let hi = number(hi)?;
            if hi < lo {
                return Err(format!("bad repetition `{{{inner}}}`"));
            }
            Ok(Token::Postfix(lo, Some(hi)))
        }
    }
}

/// The character an escape at `chars[i..]` (after the backslash) stands for, and where the
/// text goes on.
fn escape(chars: &[char], i: usize) -> Result<(char, usize), String> {
    let hex = |len: usize| -> Result<(char, usize), String> {
        let digits: String = chars
            .get(i + 1..i + 1 + len)
            .ok_or("short escape")?
            .iter()
            .collect();
        let code = u32::from_str_radix(&digits, 16)
            .map_err(|_| format!("bad escape `\\{}{digits}`", chars[i]))?;
        char::from_u32(code)
            .map(|c| (c, i + 1 + len))
            .ok_or(format!("escape `{digits}` is not a character"))
    };
    match chars.get(i) {
        Some('n') => Ok(('\n', i + 1)),
        Some('r') => Ok(('\r', i + 1)),
        Some('t') => Ok(('\t', i + 1)),
        Some('x') => hex(2),
        Some('u') => hex(4),
        Some('U') => hex(8),
        Some(&c) => Ok((c, i + 1)),
        None => Err("escape at the end of the grammar".into()),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    /// Groups open around the current item: bounded, so a hostile grammar cannot exhaust
    /// the stack (llguidance refuses deeper lark anyway).
    depth: usize,
}

const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn starts_rule(&self) -> bool {
        matches!(self.peek(), Some(Token::Name(_)))
            && self.tokens.get(self.at + 1) == Some(&Token::Define)
    }

    fn rules(mut self) -> Result<Vec<(String, Expr)>, String> {
        let mut rules = Vec::new();
        while let Some(token) = self.peek().cloned() {
            let Token::Name(name) = token else {
                return Err(format!("expected a rule name, found {token:?}"));
            };
            if self.tokens.get(self.at + 1) != Some(&Token::Define) {
                return Err(format!("expected `::=` after `{name}`"));
            }
            self.at += 2;
            rules.push((name, self.alternatives()?));
        }
        Ok(rules)
    }

    fn alternatives(&mut self) -> Result<Expr, String> {
        let mut alts = vec![self.sequence()?];
        while self.peek() == Some(&Token::Bar) {
            self.at += 1;
            alts.push(self.sequence()?);
        }
        Ok(if alts.len() == 1 {
            alts.remove(0)
        } else {
            Expr::Alt(alts)
        })
    }

    fn sequence(&mut self) -> Result<Expr, String> {
        let mut items = Vec::new();
        loop {
            match self.peek() {
                None | Some(Token::Bar) | Some(Token::Close) => break,
                _ if self.starts_rule() => break,
                _ => items.push(self.item()?),
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Seq(items)
        })
    }

    fn item(&mut self) -> Result<Expr, String> {
        let token = self.peek().cloned().ok_or("unexpected end")?;
        self.at += 1;
        let mut expr = match token {
            Token::Literal(s) => Expr::Literal(s),
            Token::Class { negated, items } => Expr::Class { negated, items },
            Token::Any => Expr::Any,
            Token::Name(n) => Expr::Ref(n),
            Token::Open => {
                if self.depth == MAX_DEPTH {
                    return Err(format!("groups nested deeper than {MAX_DEPTH}"));
                }
                self.depth += 1;
                let inner = self.alternatives()?;
                self.depth -= 1;
                if self.peek() != Some(&Token::Close) {
                    return Err("missing `)`".into());
                }
                self.at += 1;
                inner
            }
            other => return Err(format!("unexpected {other:?}")),
        };
        let mut postfixes = 0;
        while let Some(Token::Postfix(lo, hi)) = self.peek().cloned() {
            // Each one nests the item once more (and the emitter recurses through it).
            postfixes += 1;
            if postfixes > 2 {
                return Err("more than two repetition operators in a row".into());
            }
            self.at += 1;
            expr = Expr::Repeat(Box::new(expr), lo, hi);
        }
        Ok(expr)
    }
}

/// A character inside a regex class: letters and digits as they are, the rest escaped (every
/// ASCII punctuation mark may be, and `/` must be inside lark's `/.../`).
fn class_char(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else if c.is_ascii_punctuation() {
        out.push('\\');
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:x}}}", c as u32);
    }
}

/// Parts joined by `separator`, in parentheses inside another expression.
fn group(
    parts: &[Expr],
    separator: &str,
    parts_nested: bool,
    names: &HashMap<String, String>,
    nested: bool,
) -> Result<String, String> {
    let parts = parts
        .iter()
        .map(|p| emit(p, names, parts_nested))
        .collect::<Result<Vec<_>, _>>()?;
    let joined = parts.join(separator);
    Ok(if nested {
        format!("({joined})")
    } else {
        joined
    })
}

fn emit(expr: &Expr, names: &HashMap<String, String>, nested: bool) -> Result<String, String> {
    Ok(match expr {
        // Alternatives are whole in themselves; a sequence's items group their own.
        Expr::Alt(alts) => group(alts, " | ", false, names, nested)?,
        Expr::Seq(items) if items.is_empty() => "\"\"".into(),
        Expr::Seq(items) => group(items, " ", true, names, nested)?,
        Expr::Literal(s) => serde_json::to_string(s).map_err(|e| e.to_string())?,
        Expr::Class { negated, items } => {
            let mut class = String::from(if *negated { "/[^" } else { "/[" });
            for (first, last) in items {
                class_char(*first, &mut class);
                if last != first {
                    class.push('-');
                    class_char(*last, &mut class);
                }
            }
            class.push_str("]/");
            class
        }
        Expr::Any => "/(?s:.)/".into(),
        Expr::Ref(name) => names
            .get(name)
            .cloned()
            .ok_or_else(|| format!("undefined rule `{name}`"))?,
        Expr::Repeat(inner, lo, hi) => {
            let atom = match inner.as_ref() {
                // One postfix per atom in lark: a repeated repetition is grouped.
                Expr::Repeat(..) => format!("({})", emit(inner, names, false)?),
                _ => emit(inner, names, true)?,
            };
            match (lo, hi) {
                (_, Some(0)) => "\"\"".into(),
                (0, None) => format!("{atom}*"),
                (1, None) => format!("{atom}+"),
                (0, Some(1)) => format!("{atom}?"),
                (lo, None) => format!("{atom}{{{lo},}}"),
                (lo, Some(hi)) if lo == hi => format!("{atom}{{{lo}}}"),
                (lo, Some(hi)) => format!("{atom}{{{lo},{hi}}}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::to_lark;

    /// Grammars are client input: whatever arrives is translated or refused, never a panic.
    /// Random texts over GBNF's own characters (and multi-byte ones, where byte offsets could
    /// split a character) reach every branch of the reader.
    #[test]
    fn any_text_is_translated_or_refused() {
        use rand::{Rng, SeedableRng};
        let pieces = [
            "root",
            " ::= ",
            "::=",
            "\"",
            "\"a\"",
            "[",
            "]",
            "^",
            "-",
            "\\",
            "\\x4",
            "\\u00e9",
            "\\n",
            "(",
            ")",
            "*",
            "+",
            "?",
            "{",
            "}",
            ",",
            "1",
            "0",
            "99999999999",
            "|",
            "#",
            "\n",
            " ",
            ".",
            "x-y",
            "é",
            "🦀",
            "\t",
            "[^",
            "\\]",
            "{2,1}",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut translated = 0;
        for _ in 0..20_000 {
            // Most start as a rule would, to get past the first check.
            let mut text = match rng.random_bool(0.8) {
                true => String::from("root ::= "),
                false => String::new(),
            };
            for _ in 0..rng.random_range(1..24) {
                text.push_str(pieces[rng.random_range(0..pieces.len())]);
            }
            translated += usize::from(to_lark(&text).is_ok());
        }
        eprintln!("{translated} of 20000 translated");
        assert!(
            translated > 500,
            "the texts hardly reach past the first rule"
        );
    }

    #[test]
    fn rules_literals_classes_and_repetitions_translate() {
        let gbnf = r#"
# a list of numbers
root ::= "[" ws num ("," ws num)* "]"   # numbers
num  ::= [1-9] [0-9]{0,3} | "0"
ws   ::= [ \t\n]?
"#;
        assert_eq!(
            to_lark(gbnf).unwrap(),
            "start: \"[\" r2_ws r1_num (\",\" r2_ws r1_num)* \"]\"\n\
             r1_num: /[1-9]/ /[0-9]/{0,3} | \"0\"\n\
             r2_ws: /[\\x{20}\\x{9}\\x{a}]/?\n"
        );
    }

    #[test]
    fn escapes_negation_any_and_names_with_dashes() {
        let gbnf =
            "root ::= quoted-string .\nquoted-string ::= \"\\\"\" [^\"\\\\/]* \"\\u00e9\\x41\"";
        assert_eq!(
            to_lark(gbnf).unwrap(),
            "start: r1_quoted_string /(?s:.)/\n\
             r1_quoted_string: \"\\\"\" /[^\\\"\\\\\\/]/* \"éA\"\n"
        );
    }

    #[test]
    fn alternatives_span_lines_until_the_next_rule() {
        let gbnf = "root ::= (\n  \"a\"\n  | \"b\"\n)+\nx ::= \"c\" |";
        assert_eq!(
            to_lark(gbnf).unwrap(),
            "start: (\"a\" | \"b\")+\nr1_x: \"c\" | \"\"\n"
        );
    }

    #[test]
    fn broken_grammars_say_why() {
        let deep = format!("root ::= {}\"a\"", "(".repeat(100_000));
        for (gbnf, why) in [
            ("x ::= \"a\"", "no `root`"),
            ("root ::= y", "undefined rule `y`"),
            ("root ::= \"a", "unterminated string"),
            ("root ::= [a-", "unterminated character class"),
            ("root ::= (\"a\"", "missing `)`"),
            ("root ::= \"a\"{2,1}", "bad repetition"),
            ("root ::= \"a\"\nroot ::= \"b\"", "defined twice"),
            ("root = \"a\"", "unexpected `=`"),
            (deep.as_str(), "nested deeper"),
            ("root ::= \"a\"***", "repetition operators"),
        ] {
            let e = to_lark(gbnf).unwrap_err();
            assert!(e.contains(why), "{gbnf}: {e}");
        }
    }
}
