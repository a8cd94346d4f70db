//! gpt-oss answers in OpenAI's harmony format: messages on channels, each
//! `<|channel|>NAME[ to=RECIPIENT][ <|constrain|>TYPE]<|message|>BODY<|end|>`, the next one
//! opened by `<|start|>assistant`, the last ended by `<|return|>` (or `<|call|>` after a tool
//! call). The `analysis` channel is the model's thought: it comes back as `reasoning_content`;
//! `final` (and `commentary`, the preambles it writes between tool calls) as `content`; a
//! message to `functions.NAME` is a call of tool NAME, its body the arguments (when the
//! request offered tools); the markers never reach the client. Decoding keeps the special
//! tokens for this (they are the markers), and text that opens with no marker at all is plain
//! content.
use super::marker::held_back;
use super::reasoning::Split;
use super::tools::format::{self, ParsedCall};
use serde_json::Value;

const CHANNEL: &str = "<|channel|>";
pub const MESSAGE: &str = "<|message|>";
const START: &str = "<|start|>";
const CONSTRAIN: &str = "<|constrain|>";
/// What ends a message's body.
pub const ENDS: [&str; 3] = ["<|end|>", "<|return|>", "<|call|>"];

/// The header of a message calling function `name`, as gpt-oss writes it after
/// `<|start|>assistant` (the generation prompt): a demanded call's forced opening.
pub fn call_header(name: &str) -> String {
    format!("{}{name} {CONSTRAIN}json{MESSAGE}", any_call_opening())
}

/// The header of a message calling a function, up to the function's name: a demanded call
/// (`tool_choice: "required"`) whose function the model picks under `any_call_grammar`.
pub fn any_call_opening() -> String {
    format!("{CHANNEL}commentary to=functions.")
}

/// The lark grammar of the rest of a call that `any_call_opening` opened: one function's name,
/// the header's end (` <|constrain|>json<|message|>`), then arguments following that
/// function's schema (`<|call|>`, an end token, closes the message). The markers are special
/// tokens where the vocabulary holds them so (`special`; gpt-oss's does), text elsewhere.
pub fn any_call_grammar(
    functions: &[(String, Value)],
    special: &dyn Fn(&str) -> bool,
) -> Result<String, String> {
    let (constrain, message) = (
        format::marker(CONSTRAIN, special),
        format::marker(MESSAGE, special),
    );
    let mut calls = Vec::with_capacity(functions.len());
    let mut rules = String::new();
    for (i, (name, params)) in functions.iter().enumerate() {
        calls.push(format!("call_{i}"));
        rules += &format!(
            "call_{i}: {} \" \" {constrain} \"json\" {message} args_{i}\nargs_{i}: %json {}\n",
            format::literal(name),
            format::schema_text(params)?
        );
    }
    Ok(format!("start: {}\n{rules}", calls.join(" | ")))
}

/// Whether a chat template writes harmony (gpt-oss's).
pub fn template_harmony(template: &str) -> bool {
    template.contains(CHANNEL) && template.contains(MESSAGE)
}

/// Where a message's body goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Reasoning,
    Content,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Before a message: its header (`<|start|>assistant<|channel|>...`) until `<|message|>`.
    Header,
    Body(Route),
    /// A call of this function: its arguments are the body, gathered in `pending` until the
    /// message ends.
    Call(String),
    /// Text that opened with no marker: all of it is content.
    Plain,
}

pub struct HarmonySplitter {
    state: State,
    pending: String,
    /// Whether messages to `functions.*` are calls (the request offered tools), else content.
    calls: bool,
}

impl HarmonySplitter {
    /// `calls`: the request offered tools, so messages to them are read as calls.
    pub fn new(calls: bool) -> Self {
        HarmonySplitter {
            state: State::Header,
            pending: String::new(),
            calls,
        }
    }
}

/// The word after `key` in a message header (`<|channel|>analysis`, `to=functions.f`), up to
/// a space or a marker (as text, or as a grammar sees a special token: its bytes start with one
/// that is not UTF-8, read as U+FFFD).
fn header_word<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let (_, rest) = header.rsplit_once(key)?;
    rest.split(|ch: char| ch.is_whitespace() || ch == '<' || ch == char::REPLACEMENT_CHARACTER)
        .next()
}

/// The recipient a message header names (`to=functions.f`: `functions.f`). The lazy grammar of
/// calls under `tool_choice: "auto"` reads headers with it too.
pub fn recipient(header: &str) -> Option<&str> {
    header_word(header, "to=").filter(|r| !r.is_empty())
}

/// The state a message's header leads to: to a function, a call (where calls are read); the
/// `analysis` channel, thought; the rest, answer.
fn message_state(header: &str, calls: bool) -> State {
    let function = recipient(header).and_then(|r| r.strip_prefix("functions."));
    match (function, header_word(header, CHANNEL)) {
        (Some(name), _) if calls && !name.is_empty() => State::Call(name.to_string()),
        (_, Some("analysis")) => State::Body(Route::Reasoning),
        _ => State::Body(Route::Content),
    }
}

/// How a message opens: with a marker, or (the first one, after the generation prompt's
/// `<|start|>assistant`) with its recipient, as gpt-oss's template writes calls in the history
/// (`<|start|>assistant to=functions.f<|channel|>commentary json<|message|>`).
const OPENINGS: [&str; 3] = [CHANNEL, START, "to="];

/// Whether text (after whitespace) opens a message.
fn opens_message(text: &str) -> bool {
    let head = text.trim_start();
    OPENINGS.iter().any(|o| head.starts_with(o))
}

/// Where the first end marker of a body is in `text`, and its length.
fn first_end(text: &str) -> Option<(usize, usize)> {
    ENDS.iter()
        .filter_map(|m| text.find(m).map(|at| (at, m.len())))
        .min()
}

/// A call's arguments as the API returns them: the body's JSON, compact; the body as written
/// where it is not JSON (as vLLM returns it).
fn call(name: String, body: &str) -> ParsedCall {
    let arguments = serde_json::from_str::<serde_json::Value>(body.trim())
        .map(|v| v.to_string())
        .unwrap_or_else(|_| body.trim().to_string());
    ParsedCall { name, arguments }
}

impl HarmonySplitter {
    pub fn push(&mut self, text: &str) -> Split {
        let mut out = Split::default();
        self.pending.push_str(text);
        loop {
            match &self.state {
                State::Header => {
                    if !opens_message(&self.pending) {
                        let head = self.pending.trim_start();
                        if !OPENINGS.iter().any(|o| o.starts_with(head)) {
                            self.state = State::Plain;
                            continue;
                        }
                        return out;
                    }
                    let Some(at) = self.pending.find(MESSAGE) else {
                        return out;
                    };
                    self.state = message_state(&self.pending[..at], self.calls);
                    self.pending.drain(..at + MESSAGE.len());
                }
                State::Call(name) => {
                    let Some((at, len)) = first_end(&self.pending) else {
                        return out;
                    };
                    out.calls.push(call(name.clone(), &self.pending[..at]));
                    self.pending.drain(..at + len);
                    self.state = State::Header;
                }
                &State::Body(to) => {
                    let Some((at, len)) = first_end(&self.pending) else {
                        let keep = ENDS
                            .iter()
                            .map(|m| held_back(&self.pending, m))
                            .max()
                            .unwrap_or(0);
                        let cut = self.pending.len() - keep;
                        release(&mut out, to, self.pending.drain(..cut).as_str());
                        return out;
                    };
                    release(&mut out, to, &self.pending[..at]);
                    self.pending.drain(..at + len);
                    self.state = State::Header;
                }
                State::Plain => {
                    out.content.push_str(&self.pending);
                    self.pending.clear();
                    return out;
                }
            }
        }
    }

    /// The answer ended: a body cut short is released where it was going; a header cut short
    /// is dropped (markers only); text that never opened with a marker is content (a marker
    /// is one token, so a part of one at the end is text).
    pub fn finish(&mut self) -> Split {
        let rest = std::mem::take(&mut self.pending);
        let mut out = Split::default();
        match std::mem::replace(&mut self.state, State::Header) {
            State::Body(to) => release(&mut out, to, &rest),
            // `<|call|>` ends generation: a call's body usually runs to the end.
            State::Call(name) => out.calls.push(call(name, &rest)),
            State::Plain => out.content = rest,
            State::Header if !opens_message(&rest) => out.content = rest,
            State::Header => {}
        }
        out
    }
}

fn release(out: &mut Split, to: Route, text: &str) {
    match to {
        Route::Reasoning => out.reasoning.push_str(text),
        Route::Content => out.content.push_str(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `output` in pieces of `step` characters; (reasoning, content).
    fn run(output: &str, step: usize) -> (String, String) {
        let mut s = HarmonySplitter::new(true);
        let chars: Vec<char> = output.chars().collect();
        let (mut reasoning, mut content) = (String::new(), String::new());
        for chunk in chars.chunks(step) {
            let out = s.push(&chunk.iter().collect::<String>());
            reasoning += &out.reasoning;
            content += &out.content;
        }
        let out = s.finish();
        (reasoning + &out.reasoning, content + &out.content)
    }

    fn every_step(output: &str, want: (&str, &str)) {
        for step in [1, 2, 3, 5, 7, 1000] {
            let (r, c) = run(output, step);
            assert_eq!((r.as_str(), c.as_str()), want, "step {step}: {output}");
        }
    }

    #[test]
    fn thought_then_answer() {
        every_step(
            "<|channel|>analysis<|message|>The user greets.<|end|>\
             <|start|>assistant<|channel|>final<|message|>Hello! <|x|> ok<|return|>",
            ("The user greets.", "Hello! <|x|> ok"),
        );
    }

    #[test]
    fn answer_only_and_unfinished_bodies() {
        every_step("<|channel|>final<|message|>Hi there", ("", "Hi there"));
        every_step(
            "<|channel|>analysis<|message|>still thinking <|en",
            ("still thinking <|en", ""),
        );
        // A header cut short leaves nothing.
        every_step(
            "<|channel|>analysis<|message|>a<|end|><|start|>assistant<|chan",
            ("a", ""),
        );
    }

    #[test]
    fn preambles_and_constrained_headers_are_content() {
        every_step(
            "<|channel|>commentary<|message|>Let me check.<|end|>\
             <|start|>assistant<|channel|>analysis to=x <|constrain|>json<|message|>{}<|end|>",
            ("{}", "Let me check."),
        );
    }

    #[test]
    fn text_without_markers_is_plain_content() {
        every_step("Hello <|channel|> there", ("", "Hello <|channel|> there"));
        every_step("tomorrow, to=", ("", "tomorrow, to="));
        every_step("  <", ("", "  <"));
    }

    /// A message to `functions.NAME` is a call, in either header order, its body the
    /// arguments (JSON made compact), ended by `<|call|>` or by the end of generation.
    #[test]
    fn messages_to_functions_are_calls() {
        let calls = |output: &str, read: bool| {
            let mut s = HarmonySplitter::new(read);
            let mut all = s.push(output);
            let rest = s.finish();
            all.calls.extend(rest.calls);
            all.content.push_str(&rest.content);
            all
        };
        let out = calls(
            "<|channel|>analysis<|message|>Need weather.<|end|>\
             <|start|>assistant<|channel|>commentary to=functions.get_weather \
             <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>",
            true,
        );
        assert_eq!(out.reasoning, "Need weather.");
        assert_eq!(
            out.calls,
            vec![ParsedCall {
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into()
            }]
        );
        // The recipient before the channel; the body cut by the end of generation.
        let out = calls(
            "<|start|>assistant to=functions.f<|channel|>commentary json<|message|>{\"a\":1}",
            true,
        );
        assert_eq!(out.calls[0].name, "f");
        assert_eq!(out.calls[0].arguments, "{\"a\":1}");
        // So as the answer's first message, right after the prompt's `<|start|>assistant`
        // (gpt-oss's template writes its history's calls this way), fed a character at a time.
        for step in [1, 4, 1000] {
            let mut s = HarmonySplitter::new(true);
            let text = " to=functions.f<|channel|>commentary json<|message|>{\"a\":2}<|call|>";
            let chars: Vec<char> = text.chars().collect();
            let mut got = Vec::new();
            for chunk in chars.chunks(step) {
                let out = s.push(&chunk.iter().collect::<String>());
                assert!(out.content.is_empty(), "step {step}: {out:?}");
                got.extend(out.calls);
            }
            got.extend(s.finish().calls);
            assert_eq!(got.len(), 1, "step {step}");
            assert_eq!(got[0].arguments, "{\"a\":2}");
        }
        // Without tools offered, the same message is text.
        let out = calls(
            "<|channel|>commentary to=functions.f<|message|>{\"a\":1}<|call|>",
            false,
        );
        assert!(out.calls.is_empty());
        assert_eq!(out.content, "{\"a\":1}");
    }

    #[test]
    fn harmony_templates_are_recognized() {
        assert!(template_harmony(
            "{{- '<|start|>assistant<|channel|>final<|message|>' }}"
        ));
        assert!(!template_harmony("<|im_start|>assistant"));
    }
}
