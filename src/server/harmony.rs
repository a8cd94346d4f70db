//! gpt-oss answers in OpenAI's harmony format: messages on channels, each
//! `<|channel|>NAME[ to=RECIPIENT][ <|constrain|>TYPE]<|message|>BODY<|end|>`, the next one
//! opened by `<|start|>assistant`, the last ended by `<|return|>` (or `<|call|>` after a tool
//! call). The `analysis` channel is the model's thought: it comes back as `reasoning_content`;
//! `final` (and `commentary`, the preambles it writes between tool calls) as `content`; the
//! markers never reach the client. Decoding keeps the special tokens for this (they are the
//! markers), and text that opens with no marker at all is plain content.
use super::marker::held_back;
use super::reasoning::Split;

const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
const START: &str = "<|start|>";
/// What ends a message's body.
const ENDS: [&str; 3] = ["<|end|>", "<|return|>", "<|call|>"];

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
    /// Text that opened with no marker: all of it is content.
    Plain,
}

pub struct HarmonySplitter {
    state: State,
    pending: String,
}

impl Default for HarmonySplitter {
    fn default() -> Self {
        HarmonySplitter {
            state: State::Header,
            pending: String::new(),
        }
    }
}

/// The route of a message by its header: the `analysis` channel is thought, the rest answer.
fn route(header: &str) -> Route {
    let channel = header
        .rsplit_once(CHANNEL)
        .map(|(_, c)| c.split(|ch: char| ch.is_whitespace() || ch == '<').next())
        .unwrap_or_default();
    match channel {
        Some("analysis") => Route::Reasoning,
        _ => Route::Content,
    }
}

impl HarmonySplitter {
    pub fn push(&mut self, text: &str) -> Split {
        let mut out = Split::default();
        self.pending.push_str(text);
        loop {
            match self.state {
                State::Header => {
                    let head = self.pending.trim_start();
                    let marked = head.starts_with(CHANNEL) || head.starts_with(START);
                    let may_be = CHANNEL.starts_with(head) || START.starts_with(head);
                    if !marked {
                        if !may_be {
                            self.state = State::Plain;
                            continue;
                        }
                        return out;
                    }
                    let Some(at) = self.pending.find(MESSAGE) else {
                        return out;
                    };
                    self.state = State::Body(route(&self.pending[..at]));
                    self.pending.drain(..at + MESSAGE.len());
                }
                State::Body(to) => {
                    let end = ENDS
                        .iter()
                        .filter_map(|m| self.pending.find(m).map(|at| (at, m.len())))
                        .min();
                    let Some((at, len)) = end else {
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
        match self.state {
            State::Body(to) => release(&mut out, to, &rest),
            State::Plain => out.content = rest,
            State::Header => {
                let head = rest.trim_start();
                if !(head.starts_with(CHANNEL) || head.starts_with(START)) {
                    out.content = rest;
                }
            }
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
        let mut s = HarmonySplitter::default();
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
        every_step("  <", ("", "  <"));
    }

    #[test]
    fn harmony_templates_are_recognized() {
        assert!(template_harmony(
            "{{- '<|start|>assistant<|channel|>final<|message|>' }}"
        ));
        assert!(!template_harmony("<|im_start|>assistant"));
    }
}
