//! The output items of one response: a `reasoning` item for a thought, a `message` for the
//! answer's text, a `function_call` item per call (the answer's parts, `answer_parts.rs`);
//! and, when streaming, the events that build them piece by piece
//! (`response.output_item.added`, the deltas, the `.done` events). A streamed and a whole
//! answer are built by the same code, so they cannot disagree.
use crate::server::answer::Released;
use crate::server::answer_parts::{AnswerParts, PartEvent, PartKind, PendingEvents, RenderParts};
use crate::server::generation::TokenInfo;
use crate::server::respond::token_logprob;
use crate::server::state::new_item_id;
use crate::server::tools::format::ParsedCall;
use serde_json::{json, Value};

pub struct OutputItems {
    parts: AnswerParts,
    done: Vec<Value>,
    /// The id of the item being built.
    open_id: String,
    /// Stream events not yet sent (`type` set, `sequence_number` not).
    events: PendingEvents,
    logprobs: bool,
}

impl RenderParts for OutputItems {
    fn push(&mut self, released: Released, tokens: &[TokenInfo]) {
        let tokens = if self.logprobs { tokens } else { &[] };
        self.parts.push(released, tokens);
        self.render("completed");
    }

    /// A cut-off answer's last item is `incomplete`.
    fn finish(&mut self, complete: bool) {
        self.parts.finish();
        self.render(if complete { "completed" } else { "incomplete" });
    }
}

impl OutputItems {
    pub fn new(streaming: bool, logprobs: bool) -> Self {
        OutputItems {
            parts: AnswerParts::new(),
            done: Vec::new(),
            open_id: String::new(),
            events: PendingEvents::new(streaming),
            logprobs,
        }
    }

    pub fn items(&self) -> &[Value] {
        &self.done
    }

    pub fn thought(&self) -> &str {
        self.parts.thought()
    }

    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.take()
    }

    fn emit(&mut self, event: Value) {
        self.events.push(event);
    }

    /// Items and events for the parts' events; `status` of the items closed.
    fn render(&mut self, status: &str) {
        for event in self.parts.take_events() {
            match event {
                PartEvent::Open { kind, index } => self.opened(kind, index),
                PartEvent::Delta {
                    kind,
                    index,
                    text,
                    tokens,
                } => {
                    let event = match kind {
                        PartKind::Thought => json!({"type": "response.reasoning_text.delta",
                            "item_id": self.open_id, "output_index": index, "content_index": 0,
                            "delta": text}),
                        PartKind::Text => json!({"type": "response.output_text.delta",
                            "item_id": self.open_id, "output_index": index, "content_index": 0,
                            "delta": text, "logprobs": logprobs(&tokens)}),
                    };
                    self.emit(event);
                }
                PartEvent::Close {
                    kind,
                    index,
                    text,
                    tokens,
                } => self.closed(kind, index, &text, &tokens, status),
                PartEvent::Call { index, call } => self.call(index, &call),
            }
        }
    }

    fn opened(&mut self, kind: PartKind, index: usize) {
        let (id, item, part) = match kind {
            PartKind::Thought => {
                let id = new_item_id("rs");
                let item = reasoning_item(&id, None, "in_progress");
                (id, item, json!({"type": "reasoning_text", "text": ""}))
            }
            PartKind::Text => {
                let id = new_item_id("msg");
                let item = message_item(&id, None, "in_progress");
                (id, item, text_part("", &[]))
            }
        };
        self.emit(
            json!({"type": "response.output_item.added", "output_index": index, "item": item}),
        );
        self.emit(json!({"type": "response.content_part.added", "item_id": id,
                         "output_index": index, "content_index": 0, "part": part}));
        self.open_id = id;
    }

    fn closed(
        &mut self,
        kind: PartKind,
        index: usize,
        text: &str,
        tokens: &[TokenInfo],
        status: &str,
    ) {
        let id = std::mem::take(&mut self.open_id);
        let (done_event, part, item) = match kind {
            PartKind::Thought => (
                json!({"type": "response.reasoning_text.done", "item_id": id, "output_index": index,
                       "content_index": 0, "text": text}),
                json!({"type": "reasoning_text", "text": text}),
                reasoning_item(&id, Some(text), status),
            ),
            PartKind::Text => {
                let logprobs = logprobs(tokens);
                (
                    json!({"type": "response.output_text.done", "item_id": id, "output_index": index,
                           "content_index": 0, "text": text, "logprobs": logprobs}),
                    text_part(text, &logprobs),
                    message_item(&id, Some(text_part(text, &logprobs)), status),
                )
            }
        };
        self.emit(done_event);
        self.emit(json!({"type": "response.content_part.done", "item_id": id,
                         "output_index": index, "content_index": 0, "part": part}));
        self.emit(
            json!({"type": "response.output_item.done", "output_index": index, "item": item}),
        );
        self.done.push(item);
    }

    fn call(&mut self, index: usize, call: &ParsedCall) {
        let id = new_item_id("fc");
        let call_id = new_item_id("call");
        let item = |arguments: &str, status: &str| {
            json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
                   "name": call.name, "arguments": arguments})
        };
        if self.events.streaming() {
            let opened = item("", "in_progress");
            self.emit(json!({"type": "response.output_item.added", "output_index": index, "item": opened}));
            self.emit(
                json!({"type": "response.function_call_arguments.delta", "item_id": id,
                             "output_index": index, "delta": call.arguments}),
            );
            self.emit(json!({"type": "response.function_call_arguments.done", "item_id": id,
                             "output_index": index, "name": call.name, "arguments": call.arguments}));
        }
        let done = item(&call.arguments, "completed");
        self.emit(
            json!({"type": "response.output_item.done", "output_index": index, "item": done}),
        );
        self.done.push(done);
    }
}

fn logprobs(tokens: &[TokenInfo]) -> Vec<Value> {
    tokens.iter().map(token_logprob).collect()
}

fn text_part(text: &str, logprobs: &[Value]) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs})
}

fn message_item(id: &str, part: Option<Value>, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
           "content": part.into_iter().collect::<Vec<_>>()})
}

fn reasoning_item(id: &str, text: Option<&str>, status: &str) -> Value {
    let content: Vec<Value> = text
        .map(|t| json!({"type": "reasoning_text", "text": t}))
        .into_iter()
        .collect();
    json!({"id": id, "type": "reasoning", "status": status, "summary": [], "content": content})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::answer_parts::tests::released;

    fn token(text: &str) -> TokenInfo {
        let scored = TokenInfo {
            text: text.into(),
            bytes: text.as_bytes().to_vec(),
            logprob: Some(-0.5),
            ..Default::default()
        };
        TokenInfo {
            top: Some(vec![scored.clone()]),
            ..scored
        }
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn a_thought_then_text_make_two_items_built_by_their_events() {
        let mut out = OutputItems::new(true, false);
        out.push(released("Seven is ", "", &[]), &[]);
        out.push(released("prime.", "", &[]), &[]);
        out.push(released("", "\n\n", &[]), &[]);
        out.push(released("", "Yes.", &[]), &[]);
        out.finish(true);
        let items = out.items().to_vec();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["type"], "reasoning");
        assert_eq!(items[0]["content"][0]["text"], "Seven is prime.");
        assert_eq!(items[1]["type"], "message");
        assert_eq!(items[1]["status"], "completed");
        assert_eq!(items[1]["content"][0]["text"], "\n\nYes.");
        assert_eq!(out.thought(), "Seven is prime.");
        let events = out.take_events();
        assert_eq!(
            types(&events),
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
            ]
        );
        assert_eq!(events[9]["output_index"], 1);
        assert_eq!(events[9]["delta"], "\n\nYes.");
        assert_eq!(events[12]["item"], items[1]);
        assert!(out.take_events().is_empty());
    }

    #[test]
    fn calls_are_items_and_blank_text_between_them_opens_no_message() {
        let mut out = OutputItems::new(true, false);
        out.push(released("", "", &[("a", "{}")]), &[]);
        out.push(released("", "\n", &[("b", "{\"x\":1}")]), &[]);
        out.finish(true);
        let items = out.items();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["type"], "function_call");
        assert_eq!(items[1]["name"], "b");
        assert_eq!(items[1]["arguments"], "{\"x\":1}");
        assert!(items[1]["call_id"].as_str().unwrap().starts_with("call_"));
        assert!(items[1]["id"].as_str().unwrap().starts_with("fc_"));
        let events = out.take_events();
        let done: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "response.function_call_arguments.done")
            .collect();
        assert_eq!(done[1]["arguments"], "{\"x\":1}");
        assert_eq!(done[1]["output_index"], 1);
    }

    #[test]
    fn a_cut_off_or_empty_answer_still_has_its_message() {
        let mut out = OutputItems::new(false, false);
        out.push(released("", "Once upon", &[]), &[]);
        out.finish(false);
        assert_eq!(out.items()[0]["status"], "incomplete");
        assert!(out.take_events().is_empty(), "no events when not streaming");
        let mut empty = OutputItems::new(false, false);
        empty.finish(true);
        assert_eq!(empty.items()[0]["content"][0]["text"], "");
    }

    #[test]
    fn logprobs_go_with_the_text_their_tokens_showed() {
        let mut out = OutputItems::new(true, true);
        out.push(released("hmm", "", &[]), &[token("hmm")]);
        out.push(released("", "", &[]), &[token("Hel")]);
        out.push(released("", "Hello", &[]), &[token("lo")]);
        out.finish(true);
        let kept = &out.items()[1]["content"][0]["logprobs"];
        let tokens: Vec<&str> = kept
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["token"].as_str().unwrap())
            .collect();
        assert_eq!(tokens, ["Hel", "lo"]);
        let delta = out
            .take_events()
            .into_iter()
            .find(|e| e["type"] == "response.output_text.delta")
            .unwrap();
        assert_eq!(delta["logprobs"].as_array().unwrap().len(), 2);
    }
}
