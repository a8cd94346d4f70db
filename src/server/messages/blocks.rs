//! The content blocks of one Messages API answer (`thinking`, `text`, `tool_use`), rendered
//! from the answer's parts (`answer_parts.rs`), and, when streaming, the events that build
//! them (`content_block_start`, `content_block_delta`, `content_block_stop`).
use crate::server::answer::Released;
use crate::server::answer_parts::{AnswerParts, PartEvent, PartKind, PendingEvents, RenderParts};
use crate::server::generation::TokenInfo;
use crate::server::state::new_item_id;
use crate::server::tools::format::ParsedCall;
use serde_json::{json, Value};

pub struct ContentBlocks {
    parts: AnswerParts,
    done: Vec<Value>,
    events: PendingEvents,
}

/// Blocks carry no logprobs, and a cut-off answer's blocks are whole as they are.
impl RenderParts for ContentBlocks {
    fn push(&mut self, released: Released, _tokens: &[TokenInfo]) {
        self.parts.push(released, &[]);
        self.render();
    }

    fn finish(&mut self, _complete: bool) {
        self.parts.finish();
        self.render();
    }
}

impl ContentBlocks {
    pub fn new(streaming: bool) -> Self {
        ContentBlocks {
            parts: AnswerParts::new(),
            done: Vec::new(),
            events: PendingEvents::new(streaming),
        }
    }

    pub fn blocks(&self) -> &[Value] {
        &self.done
    }

    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.take()
    }

    fn emit(&mut self, event: Value) {
        self.events.push(event);
    }

    fn render(&mut self) {
        for event in self.parts.take_events() {
            match event {
                PartEvent::Open { kind, index } => {
                    let block = block(kind, "");
                    self.emit(json!({"type": "content_block_start", "index": index, "content_block": block}));
                }
                PartEvent::Delta {
                    kind, index, text, ..
                } => {
                    let delta = match kind {
                        PartKind::Thought => json!({"type": "thinking_delta", "thinking": text}),
                        PartKind::Text => json!({"type": "text_delta", "text": text}),
                    };
                    self.emit(
                        json!({"type": "content_block_delta", "index": index, "delta": delta}),
                    );
                }
                PartEvent::Close {
                    kind, index, text, ..
                } => {
                    self.emit(json!({"type": "content_block_stop", "index": index}));
                    self.done.push(block(kind, &text));
                }
                PartEvent::Call { index, call } => self.tool_use(index, &call),
            }
        }
    }

    fn tool_use(&mut self, index: usize, call: &ParsedCall) {
        let id = new_item_id("toolu");
        // The reader hands over arguments that parse; an object is what the API promises.
        let input = serde_json::from_str::<Value>(&call.arguments)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let opened = json!({"type": "tool_use", "id": id, "name": call.name, "input": {}});
        self.emit(json!({"type": "content_block_start", "index": index, "content_block": opened}));
        self.emit(json!({"type": "content_block_delta", "index": index,
                         "delta": {"type": "input_json_delta", "partial_json": input.to_string()}}));
        self.emit(json!({"type": "content_block_stop", "index": index}));
        self.done
            .push(json!({"type": "tool_use", "id": id, "name": call.name, "input": input}));
    }
}

fn block(kind: PartKind, text: &str) -> Value {
    match kind {
        // candor signs no thoughts; clients that send them back get them dropped.
        PartKind::Thought => json!({"type": "thinking", "thinking": text, "signature": ""}),
        PartKind::Text => json!({"type": "text", "text": text}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::answer_parts::tests::released;

    #[test]
    fn thought_text_and_a_call_are_three_blocks_streamed_in_order() {
        let mut out = ContentBlocks::new(true);
        out.push(released("Hmm.", "", &[]), &[]);
        out.push(
            released("", "Checking.", &[("get_weather", "{\"city\":\"Paris\"}")]),
            &[],
        );
        out.finish(true);
        let blocks = out.blocks();
        assert_eq!(
            blocks[0],
            json!({"type": "thinking", "thinking": "Hmm.", "signature": ""})
        );
        assert_eq!(blocks[1], json!({"type": "text", "text": "Checking."}));
        assert_eq!(blocks[2]["input"], json!({"city": "Paris"}));
        assert!(blocks[2]["id"].as_str().unwrap().starts_with("toolu_"));
        let events = out.take_events();
        let kinds: Vec<String> = events
            .iter()
            .map(|e| format!("{} {}", e["type"].as_str().unwrap(), e["index"]))
            .collect();
        assert_eq!(
            kinds,
            [
                "content_block_start 0",
                "content_block_delta 0",
                "content_block_stop 0",
                "content_block_start 1",
                "content_block_delta 1",
                "content_block_stop 1",
                "content_block_start 2",
                "content_block_delta 2",
                "content_block_stop 2",
            ]
        );
        assert_eq!(events[7]["delta"]["partial_json"], "{\"city\":\"Paris\"}");
        assert_eq!(
            events[1]["delta"],
            json!({"type": "thinking_delta", "thinking": "Hmm."})
        );
    }
}
