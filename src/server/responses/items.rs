//! The output items of one response, built from what the answer reader releases: a `reasoning`
//! item for a thought, a `message` for the answer's text, a `function_call` item per call; and,
//! when streaming, the events that build them piece by piece (`response.output_item.added`,
//! the deltas, the `.done` events). A streamed and a whole answer are built by the same code,
//! so they cannot disagree.
use crate::server::answer::Released;
use crate::server::generation::TokenInfo;
use crate::server::respond::token_logprob;
use crate::server::state::new_item_id;
use crate::server::tools::format::ParsedCall;
use serde_json::{json, Value};

enum Open {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
        logprobs: Vec<Value>,
    },
}

pub struct OutputItems {
    done: Vec<Value>,
    open: Option<Open>,
    /// Stream events not yet sent (`type` set, `sequence_number` not); none when not streaming.
    events: Option<Vec<Value>>,
    logprobs: bool,
    /// Logprobs of tokens whose text is not shown yet; they go with the next answer text.
    pending_logprobs: Vec<Value>,
    /// Blank text outside a message (between calls, after a thought): held, as it opens no
    /// message unless text follows.
    held_blank: String,
    /// The whole thought, for the usage's reasoning tokens.
    thought: String,
}

impl OutputItems {
    pub fn new(streaming: bool, logprobs: bool) -> Self {
        OutputItems {
            done: Vec::new(),
            open: None,
            events: streaming.then(Vec::new),
            logprobs,
            pending_logprobs: Vec::new(),
            held_blank: String::new(),
            thought: String::new(),
        }
    }

    /// What one piece of generated text released, with its tokens' logprobs.
    pub fn push(&mut self, released: Released, tokens: &[TokenInfo]) {
        if self.logprobs {
            self.pending_logprobs
                .extend(tokens.iter().map(token_logprob));
        }
        // Tokens whose text went to a thought or a call are not the answer's.
        let elsewhere = released.content.is_empty()
            && (!released.reasoning.is_empty() || !released.calls.is_empty());
        if !released.reasoning.is_empty() {
            self.reasoning(&released.reasoning);
        }
        if !released.content.is_empty() {
            self.content(&released.content);
        }
        for (_, call) in &released.calls {
            self.call(call);
        }
        if elsewhere {
            self.pending_logprobs.clear();
        }
    }

    /// The answer ended: `complete` unless it was cut off. An answer with nothing else still
    /// has its (maybe empty) message.
    pub fn finish(&mut self, complete: bool) {
        if self.done.is_empty() && !matches!(self.open, Some(Open::Message { .. })) {
            self.close(true);
            self.open_message();
        }
        self.close(complete);
    }

    pub fn items(&self) -> &[Value] {
        &self.done
    }

    pub fn thought(&self) -> &str {
        &self.thought
    }

    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn emit(&mut self, event: Value) {
        if let Some(events) = &mut self.events {
            events.push(event);
        }
    }

    fn output_index(&self) -> usize {
        self.done.len()
    }

    fn reasoning(&mut self, text: &str) {
        self.thought.push_str(text);
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close(true);
            let id = new_item_id("rs");
            self.emit_opened(
                &id,
                reasoning_item(&id, None, "in_progress"),
                json!({"type": "reasoning_text", "text": ""}),
            );
            self.open = Some(Open::Reasoning {
                id,
                text: String::new(),
            });
        }
        let output_index = self.output_index();
        if let Some(Open::Reasoning { id, text: all }) = &mut self.open {
            all.push_str(text);
            let event = json!({"type": "response.reasoning_text.delta", "item_id": id,
                               "output_index": output_index, "content_index": 0, "delta": text});
            self.emit(event);
        }
    }

    fn content(&mut self, text: &str) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            if text.trim().is_empty() {
                self.held_blank.push_str(text);
                return;
            }
            self.close(true);
            self.open_message();
        }
        let delta = std::mem::take(&mut self.held_blank) + text;
        let logprobs = std::mem::take(&mut self.pending_logprobs);
        let output_index = self.output_index();
        if let Some(Open::Message {
            id,
            text: all,
            logprobs: kept,
        }) = &mut self.open
        {
            all.push_str(&delta);
            kept.extend(logprobs.iter().cloned());
            let event = json!({"type": "response.output_text.delta", "item_id": id,
                               "output_index": output_index, "content_index": 0,
                               "delta": delta, "logprobs": logprobs});
            self.emit(event);
        }
    }

    fn open_message(&mut self) {
        let id = new_item_id("msg");
        self.emit_opened(
            &id,
            message_item(&id, None, "in_progress"),
            text_part("", &[]),
        );
        self.open = Some(Open::Message {
            id,
            text: String::new(),
            logprobs: Vec::new(),
        });
    }

    fn call(&mut self, call: &ParsedCall) {
        self.close(true);
        self.held_blank.clear();
        let id = new_item_id("fc");
        let call_id = new_item_id("call");
        let item = |arguments: &str, status: &str| {
            json!({"id": id, "type": "function_call", "status": status, "call_id": call_id,
                   "name": call.name, "arguments": arguments})
        };
        let output_index = self.output_index();
        if self.events.is_some() {
            let opened = item("", "in_progress");
            self.emit(json!({"type": "response.output_item.added", "output_index": output_index, "item": opened}));
            self.emit(
                json!({"type": "response.function_call_arguments.delta", "item_id": id,
                             "output_index": output_index, "delta": call.arguments}),
            );
            self.emit(json!({"type": "response.function_call_arguments.done", "item_id": id,
                             "output_index": output_index, "name": call.name, "arguments": call.arguments}));
        }
        let done = item(&call.arguments, "completed");
        self.emit(json!({"type": "response.output_item.done", "output_index": output_index, "item": done}));
        self.done.push(done);
    }

    /// `response.output_item.added` and `response.content_part.added` for a new item.
    fn emit_opened(&mut self, id: &str, item: Value, part: Value) {
        let output_index = self.output_index();
        self.emit(json!({"type": "response.output_item.added", "output_index": output_index, "item": item}));
        self.emit(json!({"type": "response.content_part.added", "item_id": id,
                         "output_index": output_index, "content_index": 0, "part": part}));
    }

    /// Close the open item with its `.done` events.
    fn close(&mut self, complete: bool) {
        let status = if complete { "completed" } else { "incomplete" };
        let output_index = self.output_index();
        let (id, done_event, part, item) = match self.open.take() {
            None => return,
            Some(Open::Reasoning { id, text }) => (
                id.clone(),
                json!({"type": "response.reasoning_text.done", "item_id": id, "output_index": output_index,
                       "content_index": 0, "text": text}),
                json!({"type": "reasoning_text", "text": text}),
                reasoning_item(&id, Some(&text), status),
            ),
            Some(Open::Message { id, text, logprobs }) => (
                id.clone(),
                json!({"type": "response.output_text.done", "item_id": id, "output_index": output_index,
                       "content_index": 0, "text": text, "logprobs": logprobs}),
                text_part(&text, &logprobs),
                message_item(&id, Some(text_part(&text, &logprobs)), status),
            ),
        };
        self.emit(done_event);
        self.emit(json!({"type": "response.content_part.done", "item_id": id,
                         "output_index": output_index, "content_index": 0, "part": part}));
        self.emit(json!({"type": "response.output_item.done", "output_index": output_index, "item": item}));
        self.done.push(item);
    }
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

    fn released(reasoning: &str, content: &str, calls: &[(&str, &str)]) -> Released {
        Released {
            reasoning: reasoning.into(),
            content: content.into(),
            calls: calls
                .iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    (
                        i,
                        ParsedCall {
                            name: name.to_string(),
                            arguments: arguments.to_string(),
                        },
                    )
                })
                .collect(),
        }
    }

    fn token(text: &str) -> TokenInfo {
        TokenInfo {
            text: text.into(),
            logprob: Some(-0.5),
            top: Some(vec![(text.into(), -0.5)]),
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
