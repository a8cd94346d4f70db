//! Splits generated text into plain content and tool calls as it streams in. Text that could
//! still be the start of a call block is held back (as stop strings are); a block's text is
//! never shown as content unless it turns out not to be a well-formed call. The same extractor
//! serves whole answers (push everything, then finish), so both paths read calls alike.
use super::format::{ParsedCall, ToolFormat};
use super::functionary_v32::{self as recipients, Recipient};
use crate::server::marker::{held_back, opening, Opening};
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Content(String),
    Call(ParsedCall),
}

#[derive(Debug)]
enum State {
    /// Outside a block; `pending` holds text that may begin one.
    Text { pending: String },
    /// Inside a block since `marker` (its start marker, or none where the format's body holds
    /// it or the prompt wrote it); `body` is what followed it.
    Block { body: String, marker: &'static str },
    /// A message's recipient line (`ToolFormat::addresses_recipients`) since `marker` (the
    /// `>>>` it opens with, or none at the answer's start): `line` while it may still name one.
    Recipient { line: String, marker: &'static str },
    /// Only text from here on (llama 3: the answer did not open with a call).
    TextOnly,
    /// The answer's start, while it may still be a bare call (`ToolFormat::bare_call_start`).
    Start { pending: String },
    /// The answer opened with a bare call: it runs to the end of the answer.
    Bare { body: String },
}

pub struct ToolCallExtractor {
    format: ToolFormat,
    /// The offered functions (names, parameter schemas): they type the tag formats' values.
    functions: Arc<[(String, Value)]>,
    state: State,
}

impl ToolCallExtractor {
    pub fn new(format: ToolFormat, functions: Arc<[(String, Value)]>) -> Self {
        let pending = String::new();
        let state = if format.addresses_recipients() {
            // The prompt opened the first message.
            State::Recipient {
                line: String::new(),
                marker: "",
            }
        } else if format.bare_call_start().is_some() {
            State::Start { pending }
        } else {
            State::Text { pending }
        };
        ToolCallExtractor {
            format,
            functions,
            state,
        }
    }

    /// Add generated text; returns what can be released now.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut input = self.format.without_hidden(text);
        loop {
            match &mut self.state {
                State::TextOnly => {
                    push_content(&mut out, input);
                    return out;
                }
                State::Start { pending } => {
                    pending.push_str(&input);
                    input = std::mem::take(pending);
                    let marker = self.format.bare_call_start().unwrap_or_default();
                    match bare_opening(&input, marker) {
                        Opening::Undecided => {
                            *pending = input;
                            return out;
                        }
                        Opening::Opens(call) => {
                            self.state = State::Bare {
                                body: call.to_string(),
                            };
                            return out;
                        }
                        Opening::Not => {
                            self.state = State::Text {
                                pending: String::new(),
                            }
                        }
                    }
                }
                State::Bare { body } => {
                    body.push_str(&input);
                    return out;
                }
                State::Text { pending } => {
                    pending.push_str(&input);
                    input.clear();
                    let start = self.format.call_start();
                    if self.format.only_at_start() {
                        match opening(pending, start) {
                            Opening::Undecided => return out,
                            Opening::Opens(from_start) => {
                                let body = from_start.to_string();
                                self.state = State::Block { body, marker: "" };
                            }
                            Opening::Not => {
                                let text = std::mem::take(pending);
                                self.state = State::TextOnly;
                                push_content(&mut out, text);
                            }
                        }
                        continue;
                    }
                    if let Some(at) = pending.find(start) {
                        let mut body = pending.split_off(at);
                        push_content(&mut out, std::mem::take(pending));
                        let marker = if self.format.start_in_body() {
                            ""
                        } else {
                            body.drain(..start.len());
                            start
                        };
                        self.state = if self.format.addresses_recipients() {
                            State::Recipient {
                                line: String::new(),
                                marker,
                            }
                        } else {
                            State::Block {
                                body: String::new(),
                                marker,
                            }
                        };
                        input = body;
                        continue;
                    }
                    let keep = held_back(pending, start);
                    let ready: String = pending.drain(..pending.len() - keep).collect();
                    push_content(&mut out, ready);
                    return out;
                }
                State::Recipient { line, marker } => {
                    line.push_str(&input);
                    let (line, marker) = (std::mem::take(line), *marker);
                    match recipients::recipient(&line) {
                        Recipient::Undecided => {
                            self.state = State::Recipient { line, marker };
                            return out;
                        }
                        Recipient::User => {
                            let text = &line[recipients::TO_USER.len()..];
                            input = text.to_string();
                            self.state = State::Text {
                                pending: String::new(),
                            };
                        }
                        Recipient::Function(_) => {
                            input = line;
                            self.state = State::Block {
                                body: String::new(),
                                marker,
                            };
                        }
                        // Text after all: the marker is its own, the rest read as text.
                        Recipient::Not => {
                            push_content(&mut out, marker.to_string());
                            input = line;
                            self.state = State::Text {
                                pending: String::new(),
                            };
                        }
                    }
                }
                State::Block { body, marker } if self.format.addresses_recipients() => {
                    body.push_str(&input);
                    let Some(at) = recipients::message_end(body) else {
                        return out;
                    };
                    input = body.split_off(at + recipients::MESSAGE.len());
                    body.truncate(at);
                    let (message, marker) = (std::mem::take(body), *marker);
                    self.close_block(&mut out, &message, marker, None);
                    self.state = State::Recipient {
                        line: String::new(),
                        marker: recipients::MESSAGE,
                    };
                }
                State::Block { body, marker } => {
                    body.push_str(&input);
                    input.clear();
                    let Some(end) = self.format.call_end() else {
                        return out;
                    };
                    let Some(at) = body.find(end) else {
                        return out;
                    };
                    let rest = body.split_off(at + end.len());
                    body.truncate(at);
                    let (block, marker) = (std::mem::take(body), *marker);
                    self.close_block(&mut out, &block, marker, Some(end));
                    self.state = State::Text {
                        pending: String::new(),
                    };
                    input = rest;
                    if input.is_empty() {
                        return out;
                    }
                }
            }
        }
    }

    /// The output ended: release everything held back; an unclosed block is read as a call if
    /// its body is one (models often stop right after the JSON), else returned as text.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        match std::mem::replace(&mut self.state, State::TextOnly) {
            State::Text { pending } | State::Start { pending } => push_content(&mut out, pending),
            State::Recipient { line, marker } => push_content(&mut out, format!("{marker}{line}")),
            State::Block { body, marker } => self.close_block(&mut out, &body, marker, None),
            State::Bare { body } => match self.format.parse_bare(unfenced(&body)) {
                Some(calls) => out.extend(calls.into_iter().map(Piece::Call)),
                None => push_content(&mut out, body),
            },
            State::TextOnly => {}
        }
        out
    }

    /// A block's calls, or, where it holds none, its text as it came (`marker` it opened
    /// with, its body, `end` it closed with).
    fn close_block(&self, out: &mut Vec<Piece>, body: &str, marker: &str, end: Option<&str>) {
        match self.format.parse_block(body, &self.functions) {
            Some(calls) => out.extend(calls.into_iter().map(Piece::Call)),
            None => push_content(out, format!("{marker}{body}{}", end.unwrap_or(""))),
        }
    }
}

/// Fences a bare call may come in (small models often write one as a code block).
const FENCES: [&str; 2] = ["```json", "```"];

/// Whether `text` opens with `marker`, whitespace aside, possibly inside a code fence
/// (`{"name"`, `{\n  "name"`, "```json\n{"name"`).
fn bare_opening<'a>(text: &'a str, marker: &str) -> Opening<'a> {
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let opened = |fence: &str| {
        squeezed
            .strip_prefix(fence)
            .unwrap_or(&squeezed)
            .starts_with(marker)
    };
    if opened("") || FENCES.iter().any(|f| opened(f)) {
        return Opening::Opens(text.trim_start());
    }
    let could_open = |fence: &str| format!("{fence}{marker}").starts_with(squeezed.as_str());
    if could_open("") || FENCES.iter().any(|f| could_open(f)) {
        Opening::Undecided
    } else {
        Opening::Not
    }
}

/// A bare call's text without the code fence around it, if any.
fn unfenced(body: &str) -> &str {
    let body = body.trim();
    match body.strip_prefix("```") {
        Some(fenced) => {
            let inner = fenced.split_once('\n').map_or("", |(_, rest)| rest);
            inner.trim_end().strip_suffix("```").unwrap_or(inner)
        }
        None => body,
    }
}

fn push_content(out: &mut Vec<Piece>, text: String) {
    if text.is_empty() {
        return;
    }
    if let Some(Piece::Content(last)) = out.last_mut() {
        last.push_str(&text);
    } else {
        out.push(Piece::Content(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> Piece {
        Piece::Call(ParsedCall {
            name: name.into(),
            arguments: arguments.into(),
        })
    }

    fn text(s: &str) -> Piece {
        Piece::Content(s.into())
    }

    /// Feed `output` in pieces of `step` characters; collect everything, merging content.
    fn run(format: ToolFormat, output: &str, step: usize) -> Vec<Piece> {
        run_with(format, &Default::default(), output, step)
    }

    fn run_with(
        format: ToolFormat,
        functions: &Arc<[(String, Value)]>,
        output: &str,
        step: usize,
    ) -> Vec<Piece> {
        let mut x = ToolCallExtractor::new(format, functions.clone());
        let chars: Vec<char> = output.chars().collect();
        let mut all = Vec::new();
        for chunk in chars.chunks(step) {
            for p in x.push(&chunk.iter().collect::<String>()) {
                match p {
                    Piece::Content(t) => push_content(&mut all, t),
                    c => all.push(c),
                }
            }
        }
        for p in x.finish() {
            match p {
                Piece::Content(t) => push_content(&mut all, t),
                c => all.push(c),
            }
        }
        all
    }

    /// Model output is anything: whatever text comes, in whatever pieces, the extractor gives
    /// the same content and calls as for the whole text at once, and never panics.
    #[test]
    fn any_output_reads_the_same_in_any_pieces() {
        use rand::{Rng, SeedableRng};
        let pieces = [
            "<tool_call>",
            "</tool_call>",
            "<tool_",
            "call>",
            "[TOOL_CALLS]",
            "[TOOL",
            "{",
            "}",
            "[",
            "]",
            "\"name\"",
            ": ",
            "\"f\"",
            ", ",
            "\"arguments\"",
            "{\"a\": 1}",
            "\"",
            "\\",
            ";",
            "\n",
            " ",
            "text",
            "é",
            "🦀",
            "```json",
            "```",
            "<seed:tool_call>",
            "</seed:tool_call>",
            "<|tool_call|>",
            "<function=f>",
            "</function>",
            "<parameter=a>",
            "</parameter>",
            "<arg_key>",
            "a</arg_key>",
            "<arg_value>",
            "</arg_value>",
            "True",
            "['x']",
            "<|tool_calls_section_begin|>",
            "<|tool_call_begin|>functions.f:0",
            "<|tool_call_argument_begin|>",
            "<|tool_call_end|>",
            "<|tool_calls_section_end|>",
            "f[ARGS]",
            "<tool_calls>",
            "</tool_calls>",
            ">>>",
            ">>",
            "all\n",
            "f\n",
        ];
        let functions: Arc<[(String, Value)]> = vec![(
            "f".to_string(),
            serde_json::json!({"properties": {"a": {"type": "array"}}}),
        )]
        .into();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for format in ToolFormat::ALL {
            for _ in 0..3000 {
                let output: String = (0..rng.random_range(1..30))
                    .map(|_| pieces[rng.random_range(0..pieces.len())])
                    .collect();
                let whole = run_with(format, &functions, &output, usize::MAX);
                let step = rng.random_range(1..6);
                assert_eq!(
                    run_with(format, &functions, &output, step),
                    whole,
                    "{format:?} {output:?} by {step}"
                );
            }
        }
    }

    #[test]
    fn hermes_calls_come_out_whole_at_any_chunking() {
        let output = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        for step in [1, 2, 3, 7, 1000] {
            assert_eq!(
                run(ToolFormat::Hermes, output, step),
                vec![
                    text("Let me look.\n"),
                    call("get_weather", "{\"city\":\"Paris\"}"),
                    text("\n"),
                    call("get_time", "{}"),
                ],
                "step {step}"
            );
        }
    }

    /// FireFunction's list after the text, at any chunking; its marker in code that is no
    /// list of calls stays text.
    #[test]
    fn firefunction_calls_come_out_whole_at_any_chunking() {
        let output = "Sure. functools[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_time\", \"arguments\": \"{}\"}]";
        // The two calls every format here writes.
        let both = || {
            vec![
                call("get_weather", "{\"city\":\"Paris\"}"),
                call("get_time", "{}"),
            ]
        };
        for step in [1, 2, 5, 1000] {
            assert_eq!(
                run(ToolFormat::Firefunction, output, step),
                [vec![text("Sure.")], both()].concat(),
                "step {step}"
            );
            // The module, not a list of calls: text, whole.
            let code = "from functools import reduce; functools[0]";
            assert_eq!(run(ToolFormat::Firefunction, code, step), vec![text(code)]);
            // Phi-4-mini's list opens the answer, no space before it.
            let phi4 = output.trim_start_matches("Sure. ");
            assert_eq!(run(ToolFormat::Phi4Mini, phi4, step), both(), "step {step}");
            assert_eq!(run(ToolFormat::Phi4Mini, code, step), vec![text(code)]);
            // xLAM's list is the answer; a list in prose is text.
            let list = phi4.trim_start_matches("functools");
            assert_eq!(run(ToolFormat::Xlam, list, step), both(), "step {step}");
            let prose = "[1, 2] are the numbers; see [the docs].";
            assert_eq!(run(ToolFormat::Xlam, prose, step), vec![text(prose)]);
            // Granite 20B's calls one after the other, its `no_function` no call.
            let granite = "<function_call> {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}} \
                           <function_call> {\"name\": \"get_time\", \"arguments\": {}}";
            assert_eq!(
                run(ToolFormat::Granite20bFc, granite, step),
                both(),
                "step {step}"
            );
            let none = "<function_call> {\"name\": \"no_function\", \"arguments\": {}}";
            assert_eq!(run(ToolFormat::Granite20bFc, none, step), vec![]);
        }
    }

    /// The pythonic list that is the answer and OLMo 3's lines after text, at any chunking; an
    /// answer that opens with a bracket but is no list of calls, or mentions one later, is
    /// text, whole.
    #[test]
    fn python_calls_come_out_whole_at_any_chunking() {
        let weather = || call("get_weather", "{\"city\":\"Paris\",\"days\":2}");
        for step in [1, 2, 5, 1000] {
            let list = " [get_weather(city='Paris', days=2), get_time()]";
            assert_eq!(
                run(ToolFormat::Pythonic, list, step),
                vec![weather(), call("get_time", "{}")],
                "step {step}"
            );
            for prose in [
                "[1] is where the citation goes.",
                "Call it as [get_weather(city='Paris')].",
            ] {
                assert_eq!(run(ToolFormat::Pythonic, prose, step), vec![text(prose)]);
            }
            let lines = "I will look.\n<function_calls>\nget_weather(city=\"Paris\", days=2)\nget_time()\n</function_calls>";
            assert_eq!(
                run(ToolFormat::Olmo3, lines, step),
                vec![text("I will look.\n"), weather(), call("get_time", "{}")],
                "step {step}"
            );
            let not_calls = "<function_calls>\nI cannot call that.\n</function_calls>";
            assert_eq!(
                run(ToolFormat::Olmo3, not_calls, step),
                vec![text(not_calls)]
            );
        }
    }

    /// GigaChat's one call after its answer's text, at any chunking: 3.0's `function call`
    /// turn (its turn end left out in decoding, or written by a forced opening) and 3.1's
    /// marker; a plain answer keeps its text whole.
    #[test]
    fn gigachat_calls_come_out_whole_at_any_chunking() {
        let weather = || call("get_weather", "{\"city\":\"Paris\"}");
        let object = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";
        for step in [1, 2, 5, 1000] {
            for (format, output, before) in [
                (
                    ToolFormat::GigaChat3,
                    format!("Let me look.\n\nfunction call<|role_sep|>\n{object}"),
                    "Let me look.\n\n",
                ),
                (
                    ToolFormat::GigaChat31,
                    format!("Let me look.<|function_call|>{object}<|message_sep|>"),
                    "Let me look.",
                ),
            ] {
                assert_eq!(
                    run(format, &output, step),
                    vec![text(before), weather()],
                    "{format:?} step {step}"
                );
            }
            // Where the forced opening ends the prompt, its turn end is read with the answer
            // (the opening first, whole).
            let mut x = ToolCallExtractor::new(ToolFormat::GigaChat3, Default::default());
            let mut pieces = x.push("<|message_sep|>\n\nfunction call<|role_sep|>\n");
            let chars: Vec<char> = object.chars().collect();
            for chunk in chars.chunks(step) {
                pieces.extend(x.push(&chunk.iter().collect::<String>()));
            }
            pieces.extend(x.finish());
            assert_eq!(pieces, vec![text("\n\n"), weather()], "step {step}");
            assert_eq!(
                run(ToolFormat::GigaChat3, "A function call is a request.", step),
                vec![text("A function call is a request.")]
            );
        }
    }

    /// The tag formats stream alike: text before a block is released, a block's tags never
    /// are, and each call comes out whole with its values typed.
    #[test]
    fn tag_format_calls_come_out_whole_at_any_chunking() {
        let functions: Arc<[(String, Value)]> = vec![(
            "get_weather".to_string(),
            serde_json::json!({"properties": {"days": {"type": "integer"}}}),
        )]
        .into();
        let qwen = "I'll check.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n\
                    </parameter>\n<parameter=days>\n2\n</parameter>\n</function>\n</tool_call>\n\
                    <tool_call>\n<function=get_time>\n</function>\n</tool_call>";
        let seed = "I'll check.\n<seed:tool_call>\n<function=get_weather>\n<parameter=city>Paris\
                    </parameter>\n<parameter=days>2</parameter>\n</function>\n</seed:tool_call>\n\
                    <seed:tool_call>\n<function=get_time>\n</function>\n</seed:tool_call>";
        let glm = "I'll check.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris\
                   </arg_value>\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>\n\
                   <tool_call>get_time\n</tool_call>";
        for (format, output) in [
            (ToolFormat::Qwen3Coder, qwen),
            (ToolFormat::SeedOss, seed),
            (ToolFormat::Glm45, glm),
        ] {
            for step in [1, 2, 5, 1000] {
                assert_eq!(
                    run_with(format, &functions, output, step),
                    vec![
                        text("I'll check.\n"),
                        call("get_weather", "{\"city\":\"Paris\",\"days\":2}"),
                        text("\n"),
                        call("get_time", "{}"),
                    ],
                    "{format:?} step {step}"
                );
            }
        }
    }

    /// Functionary v3.2's messages at any chunking: the answer opens with a recipient (the
    /// prompt wrote the first `>>>`), `all` for text, a function for a call; a `>>>` inside
    /// arguments or before text that names no one stays where it is.
    #[test]
    fn functionary_messages_come_out_whole_at_any_chunking() {
        let format = ToolFormat::FunctionaryV32;
        let weather = || call("get_weather", "{\"city\":\"Paris\"}");
        let cases: [(&str, Vec<Piece>); 8] = [
            (
                "all\nLet me look.>>>get_weather\n{\"city\": \"Paris\"}>>>get_time\n{}",
                vec![text("Let me look."), weather(), call("get_time", "{}")],
            ),
            ("get_weather\n{\"city\": \"Paris\"}\n", vec![weather()]),
            (
                "all\nIn a REPL:\n>>> print(1)\n1",
                vec![text("In a REPL:\n>>> print(1)\n1")],
            ),
            (
                "f\n{\"code\": \">>> x\"}>>>all\nDone.",
                vec![call("f", "{\"code\":\">>> x\"}"), text("Done.")],
            ),
            // No recipient (a model off its protocol): text as written.
            ("Hello there.", vec![text("Hello there.")]),
            // A message to a function that is no call: text, its marker kept.
            (
                "all\nSure>>>get_weather\n{\"city\": ",
                vec![text("Sure>>>get_weather\n{\"city\": ")],
            ),
            ("all\n", vec![]),
            // The code interpreter's raw Python, to the next message.
            (
                "python\nimport math\nprint(math.pi)>>>all\nDone.",
                vec![
                    call("python", "{\"code\":\"import math\\nprint(math.pi)\"}"),
                    text("Done."),
                ],
            ),
        ];
        for (output, expected) in cases {
            for step in [1, 2, 3, 7, 1000] {
                assert_eq!(run(format, output, step), expected, "{output:?} by {step}");
            }
        }
        // Text streams as it comes, but for what may open a message.
        let mut x = ToolCallExtractor::new(format, Default::default());
        assert_eq!(x.push("al"), vec![]);
        assert_eq!(x.push("l\nHi >"), vec![text("Hi ")]);
        assert_eq!(x.push(">"), vec![]);
        assert_eq!(x.push("> no"), vec![text(">>> no")]);
        // A demanded call's prefix (its name line) reads as the call's start.
        let mut x = ToolCallExtractor::new(format, Default::default());
        assert_eq!(x.push(&format.forced_prefix(Some("get_weather"))), vec![]);
        assert_eq!(x.push("{\"city\": \"Paris\"}"), vec![]);
        assert_eq!(x.finish(), vec![weather()]);
    }

    #[test]
    fn text_that_only_looks_like_a_marker_is_released() {
        let mut x = ToolCallExtractor::new(ToolFormat::Hermes, Default::default());
        assert_eq!(x.push("a <tool"), vec![text("a ")]);
        assert_eq!(x.push("box> b"), vec![text("<toolbox> b")]);
        assert_eq!(x.push(" <"), vec![text(" ")]);
        assert_eq!(x.finish(), vec![text("<")]);
    }

    #[test]
    fn malformed_or_unclosed_blocks() {
        // Broken JSON inside a closed block: the block is text.
        let broken = "<tool_call>\n{\"name\": \"f\", \"arguments\": {\n</tool_call> done";
        assert_eq!(run(ToolFormat::Hermes, broken, 4), vec![text(broken)]);
        // A model that stops after the JSON without the closing tag still made a call.
        assert_eq!(
            run(ToolFormat::Hermes, "<tool_call>\n{\"name\": \"f\"}\n", 3),
            vec![call("f", "{}")]
        );
        // Cut off mid-call (length limit): text.
        let cut = "<tool_call>\n{\"name\": \"f\", \"argu";
        assert_eq!(run(ToolFormat::Hermes, cut, 5), vec![text(cut)]);
    }

    #[test]
    fn llama3_calls_only_open_the_answer() {
        let output = "  {\"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", \"parameters\": {}}";
        assert_eq!(
            run(ToolFormat::Llama3Json, output, 2),
            vec![call("a", "{\"x\":1}"), call("b", "{}")]
        );
        let prose = "Use {\"name\": \"a\"} like this";
        assert_eq!(run(ToolFormat::Llama3Json, prose, 3), vec![text(prose)]);
        let not_a_call = "{\"answer\": 42}";
        assert_eq!(
            run(ToolFormat::Llama3Json, not_a_call, 3),
            vec![text(not_a_call)]
        );
    }

    /// Small hermes models sometimes answer with the call's JSON alone, without `<tool_call>`
    /// (llama.cpp's hermes parser reads those too): a whole answer that is one call object.
    #[test]
    fn hermes_bare_call_answers() {
        let bare = "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";
        for step in [1, 4, 1000] {
            assert_eq!(
                run(ToolFormat::Hermes, bare, step),
                vec![call("get_weather", "{\"city\":\"Paris\"}")],
                "step {step}"
            );
        }
        // Two in a row (as asked for two cities): both calls.
        assert_eq!(
            run(
                ToolFormat::Hermes,
                "{\"name\": \"f\", \"arguments\": {}}\n{\"name\": \"g\", \"arguments\": {}}",
                3
            ),
            vec![call("f", "{}"), call("g", "{}")]
        );
        // Pretty-printed, in a code fence: still the call.
        let fenced = "```json\n{\n  \"name\": \"f\",\n  \"arguments\": {\"x\": 1}\n}\n```";
        for step in [1, 5, 1000] {
            assert_eq!(
                run(ToolFormat::Hermes, fenced, step),
                vec![call("f", "{\"x\":1}")],
                "step {step}"
            );
        }
        // JSON that is not a call, a call followed by more text, and prose: all text.
        for output in [
            "{\"answer\": 42}",
            "{\"name\": \"f\", \"arguments\": {}} and more",
            "Use {\"name\": \"f\"}",
            "```json\n{\"answer\": 1}\n```",
            "```python\nprint(1)\n```",
        ] {
            assert_eq!(run(ToolFormat::Hermes, output, 3), vec![text(output)]);
        }
        // Text starting otherwise streams at once, and later tagged calls are still read.
        let mut x = ToolCallExtractor::new(ToolFormat::Hermes, Default::default());
        assert_eq!(x.push("{\"na"), vec![]);
        assert_eq!(x.push("me\": 1, \"x\""), vec![]);
        let mut x = ToolCallExtractor::new(ToolFormat::Hermes, Default::default());
        assert_eq!(x.push("Hi <tool_call>"), vec![text("Hi ")]);
    }

    #[test]
    fn mistral_list_runs_to_the_end() {
        let output = "Sure. [TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"x\": \"]\"}}]";
        assert_eq!(
            run(ToolFormat::Mistral, output, 3),
            vec![text("Sure. "), call("a", "{\"x\":\"]\"}")]
        );
    }
}
