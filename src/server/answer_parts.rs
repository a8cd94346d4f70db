//! An answer as its parts, in order: a thought, text, calls, each opened, grown and closed as
//! the answer reader releases them. The Responses API (output items) and the Messages API
//! (content blocks) render these same events, whole or streamed, so they cut an answer alike.
use super::answer::{AnswerReader, AnswerSetup, Released};
use super::generation::{ChoiceEvent, TokenInfo};
use super::tools::format::ParsedCall;

/// A rendering of an answer's parts (the Responses API's items, the Messages API's blocks).
pub trait RenderParts {
    /// What one piece of text released, with its tokens' logprobs when kept.
    fn push(&mut self, released: Released, tokens: &[TokenInfo]);
    /// The answer ended; `complete` unless its length limit cut it.
    fn finish(&mut self, complete: bool);
}

/// How a choice ended.
pub enum Ending {
    Finished {
        /// OpenAI's reason, calls read: `stop`, `length` or `tool_calls`.
        reason: &'static str,
        completion_tokens: usize,
        cached_tokens: usize,
        stop_string: Option<String>,
    },
    Failed(String),
}

/// The one choice of a chat request read through the answer reader into a rendering.
pub struct ChoiceReading<R> {
    reader: AnswerReader,
    pub render: R,
}

impl<R: RenderParts> ChoiceReading<R> {
    pub fn new(setup: Option<&AnswerSetup>, render: R) -> Self {
        ChoiceReading {
            reader: AnswerReader::new(&setup.cloned().unwrap_or_default()),
            render,
        }
    }

    /// One choice event; how the choice ended, once it has.
    pub fn read(&mut self, event: Option<ChoiceEvent>) -> Option<Ending> {
        match event {
            Some(ChoiceEvent::Delta { text, tokens, .. }) => {
                let released = self.reader.push(&text);
                self.render.push(released, &tokens);
                None
            }
            Some(ChoiceEvent::Finish {
                reason,
                completion_tokens,
                cached_tokens,
                stop_string,
                ..
            }) => {
                let released = self.reader.finish();
                self.render.push(released, &[]);
                let reason = self.reader.finish_reason(reason);
                self.render.finish(reason != "length");
                Some(Ending::Finished {
                    reason,
                    completion_tokens,
                    cached_tokens,
                    stop_string,
                })
            }
            Some(ChoiceEvent::Error { message, .. }) => Some(Ending::Failed(message)),
            // Not asked for here.
            Some(ChoiceEvent::Progress { .. }) => None,
            None => Some(Ending::Failed("generation ended unexpectedly".into())),
        }
    }
}

/// The events a renderer has for a stream and not yet sent; it keeps none when the answer is
/// not streamed.
pub struct PendingEvents(Option<Vec<serde_json::Value>>);

impl PendingEvents {
    pub fn new(streaming: bool) -> Self {
        PendingEvents(streaming.then(Vec::new))
    }

    pub fn streaming(&self) -> bool {
        self.0.is_some()
    }

    pub fn push(&mut self, event: serde_json::Value) {
        if let Some(events) = &mut self.0 {
            events.push(event);
        }
    }

    pub fn take(&mut self) -> Vec<serde_json::Value> {
        self.0.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    Thought,
    Text,
}

#[derive(Debug, Clone)]
pub enum PartEvent {
    /// A part opens at `index` among the answer's parts.
    Open { kind: PartKind, index: usize },
    /// More of the open part; `tokens` are those its text came from (text parts).
    Delta {
        kind: PartKind,
        index: usize,
        text: String,
        tokens: Vec<TokenInfo>,
    },
    /// The part is whole.
    Close {
        kind: PartKind,
        index: usize,
        text: String,
        tokens: Vec<TokenInfo>,
    },
    /// A call, whole, as its own part.
    Call { index: usize, call: ParsedCall },
}

struct OpenPart {
    kind: PartKind,
    text: String,
    tokens: Vec<TokenInfo>,
}

#[derive(Default)]
pub struct AnswerParts {
    open: Option<OpenPart>,
    /// Parts closed so far: the index of the next one.
    closed: usize,
    /// Blank text outside a text part (between calls, after a thought): held, as it opens no
    /// part unless text follows.
    held_blank: String,
    /// Tokens whose text is not shown yet; they go with the next answer text.
    pending_tokens: Vec<TokenInfo>,
    /// The whole thought, for the usage's reasoning tokens.
    thought: String,
    events: Vec<PartEvent>,
}

impl AnswerParts {
    pub fn new() -> Self {
        Self::default()
    }

    /// What one piece of generated text released, with its tokens (when logprobs are kept).
    pub fn push(&mut self, released: Released, tokens: &[TokenInfo]) {
        self.pending_tokens.extend_from_slice(tokens);
        // Tokens whose text went to a thought or a call are not the answer's text.
        let elsewhere = released.content.is_empty()
            && (!released.reasoning.is_empty() || !released.calls.is_empty());
        if !released.reasoning.is_empty() {
            self.thought.push_str(&released.reasoning);
            self.grow(PartKind::Thought, &released.reasoning, Vec::new());
        }
        if !released.content.is_empty() {
            self.text(&released.content);
        }
        for (_, call) in released.calls {
            self.close();
            self.held_blank.clear();
            self.events.push(PartEvent::Call {
                index: self.closed,
                call,
            });
            self.closed += 1;
        }
        if elsewhere {
            self.pending_tokens.clear();
        }
    }

    /// The answer ended. One with no part at all still has its (maybe empty) text.
    pub fn finish(&mut self) {
        if self.closed == 0 && self.open.is_none() {
            self.open(PartKind::Text);
        }
        self.close();
    }

    pub fn take_events(&mut self) -> Vec<PartEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn thought(&self) -> &str {
        &self.thought
    }

    fn text(&mut self, text: &str) {
        if self.open.as_ref().is_none_or(|p| p.kind != PartKind::Text) && text.trim().is_empty() {
            self.held_blank.push_str(text);
            return;
        }
        let text = std::mem::take(&mut self.held_blank) + text;
        let tokens = std::mem::take(&mut self.pending_tokens);
        self.grow(PartKind::Text, &text, tokens);
    }

    /// Add to the part of `kind`, opening it (and closing another) first if need be.
    fn grow(&mut self, kind: PartKind, text: &str, tokens: Vec<TokenInfo>) {
        if self.open.as_ref().is_none_or(|p| p.kind != kind) {
            self.close();
            self.open(kind);
        }
        if let Some(part) = &mut self.open {
            part.text.push_str(text);
            part.tokens.extend(tokens.iter().cloned());
            self.events.push(PartEvent::Delta {
                kind,
                index: self.closed,
                text: text.to_string(),
                tokens,
            });
        }
    }

    fn open(&mut self, kind: PartKind) {
        self.events.push(PartEvent::Open {
            kind,
            index: self.closed,
        });
        self.open = Some(OpenPart {
            kind,
            text: String::new(),
            tokens: Vec::new(),
        });
    }

    fn close(&mut self) {
        if let Some(part) = self.open.take() {
            self.events.push(PartEvent::Close {
                kind: part.kind,
                index: self.closed,
                text: part.text,
                tokens: part.tokens,
            });
            self.closed += 1;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What a reader releases, for tests of the renderers too.
    pub fn released(reasoning: &str, content: &str, calls: &[(&str, &str)]) -> Released {
        Released {
            reasoning: reasoning.into(),
            content: content.into(),
            calls: calls
                .iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    let call = ParsedCall {
                        name: name.to_string(),
                        arguments: arguments.to_string(),
                    };
                    (i, call)
                })
                .collect(),
        }
    }

    fn token(text: &str) -> TokenInfo {
        TokenInfo {
            text: text.into(),
            bytes: text.as_bytes().to_vec(),
            logprob: Some(-0.5),
            ..Default::default()
        }
    }

    /// The events as `open`/`delta`/`close`/`call` with their index, kind and text.
    fn trace(events: &[PartEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                PartEvent::Open { kind, index } => format!("open {index} {kind:?}"),
                PartEvent::Delta {
                    index,
                    text,
                    tokens,
                    ..
                } => format!("delta {index} {text:?} {}", tokens.len()),
                PartEvent::Close { index, text, .. } => format!("close {index} {text:?}"),
                PartEvent::Call { index, call } => format!("call {index} {}", call.name),
            })
            .collect()
    }

    #[test]
    fn a_thought_text_and_calls_are_parts_in_order() {
        let mut parts = AnswerParts::new();
        parts.push(released("Hmm", "", &[]), &[token("Hmm")]);
        parts.push(released("", "\n\n", &[]), &[token("\n\n")]);
        parts.push(released("", "Yes.", &[]), &[token("Yes.")]);
        parts.push(released("", "\n", &[("a", "{}")]), &[]);
        parts.push(released("", "\n", &[("b", "{}")]), &[]);
        parts.finish();
        assert_eq!(
            trace(&parts.take_events()),
            [
                "open 0 Thought",
                "delta 0 \"Hmm\" 0",
                "close 0 \"Hmm\"",
                "open 1 Text",
                "delta 1 \"\\n\\nYes.\" 2",
                // Text while the text part is open is its own, blank or not.
                "delta 1 \"\\n\" 0",
                "close 1 \"\\n\\nYes.\\n\"",
                "call 2 a",
                "call 3 b",
            ]
        );
        assert_eq!(parts.thought(), "Hmm");
    }

    #[test]
    fn an_empty_answer_is_one_empty_text() {
        let mut parts = AnswerParts::new();
        parts.finish();
        assert_eq!(trace(&parts.take_events()), ["open 0 Text", "close 0 \"\""]);
    }

    #[test]
    fn tokens_held_back_go_with_the_text_they_became() {
        let mut parts = AnswerParts::new();
        parts.push(released("", "", &[]), &[token("Hel")]);
        parts.push(released("", "Hello", &[]), &[token("lo")]);
        parts.finish();
        let events = parts.take_events();
        let PartEvent::Close { tokens, .. } = &events[2] else {
            panic!("{:?}", trace(&events));
        };
        assert_eq!(tokens.len(), 2);
    }
}
