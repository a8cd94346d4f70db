//! Reads one choice's answer for tool calls, streamed or whole: content and numbered calls as
//! they become complete, `parallel_tool_calls: false` applied, and the finish reason a call
//! turns into.
use super::extract::{Piece, ToolCallExtractor};
use super::format::ParsedCall;
use super::ToolOutput;

/// What a piece of generated text released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub content: String,
    /// Calls with their index in the answer.
    pub calls: Vec<(usize, ParsedCall)>,
}

pub struct AnswerReader {
    extractor: ToolCallExtractor,
    parallel: bool,
    calls: usize,
}

impl AnswerReader {
    pub fn new(output: &ToolOutput) -> Self {
        AnswerReader {
            extractor: output.extractor(),
            parallel: output.parallel,
            calls: 0,
        }
    }

    pub fn push(&mut self, text: &str) -> Released {
        let pieces = self.extractor.push(text);
        self.release(pieces)
    }

    /// The answer ended.
    pub fn finish(&mut self) -> Released {
        let pieces = self.extractor.finish();
        self.release(pieces)
    }

    /// A whole answer at once (non-streaming responses).
    pub fn read_all(&mut self, text: &str) -> Released {
        let mut all = self.push(text);
        let rest = self.finish();
        all.content.push_str(&rest.content);
        all.calls.extend(rest.calls);
        all
    }

    /// OpenAI's reason for an answer that called tools; a cut-off one stays `length`.
    pub fn finish_reason(&self, reason: &'static str) -> &'static str {
        if self.calls > 0 && reason == "stop" {
            "tool_calls"
        } else {
            reason
        }
    }

    fn release(&mut self, pieces: Vec<Piece>) -> Released {
        let mut out = Released::default();
        for piece in pieces {
            match piece {
                Piece::Content(text) => out.content.push_str(&text),
                // Without parallel calls the first one is the answer; later ones are dropped.
                Piece::Call(_) if !self.parallel && self.calls > 0 => {}
                Piece::Call(call) => {
                    out.calls.push((self.calls, call));
                    self.calls += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::ToolFormat;
    use super::*;

    fn output(parallel: bool, forced_prefix: &str) -> ToolOutput {
        ToolOutput {
            format: ToolFormat::Hermes,
            forced_prefix: forced_prefix.into(),
            parallel,
        }
    }

    const TWO_CALLS: &str = "<tool_call>\n{\"name\": \"a\"}\n</tool_call>\n<tool_call>\n{\"name\": \"b\"}\n</tool_call>";

    #[test]
    fn calls_are_numbered_and_set_the_finish_reason() {
        let mut r = AnswerReader::new(&output(true, ""));
        let got = r.push(TWO_CALLS);
        let names: Vec<(usize, &str)> = got
            .calls
            .iter()
            .map(|(i, c)| (*i, c.name.as_str()))
            .collect();
        assert_eq!(names, vec![(0, "a"), (1, "b")]);
        assert_eq!(got.content, "\n");
        assert_eq!(r.finish(), Released::default());
        assert_eq!(r.finish_reason("stop"), "tool_calls");
        assert_eq!(r.finish_reason("length"), "length");
        let mut plain = AnswerReader::new(&output(true, ""));
        assert_eq!(plain.push("hi").content, "hi");
        assert_eq!(plain.finish_reason("stop"), "stop");
    }

    #[test]
    fn without_parallel_calls_only_the_first_counts() {
        let mut r = AnswerReader::new(&output(false, ""));
        let got = r.push(TWO_CALLS);
        assert_eq!(got.calls.len(), 1);
        assert_eq!(got.calls[0].1.name, "a");
    }

    #[test]
    fn a_forced_prefix_is_read_before_the_generated_text() {
        let mut r = AnswerReader::new(&output(
            true,
            "<tool_call>\n{\"name\": \"f\", \"arguments\": ",
        ));
        assert_eq!(r.push("{\"x\": 1}}\n"), Released::default());
        let got = r.push("</tool_call>");
        assert_eq!(got.calls[0].1.arguments, "{\"x\":1}");
    }
}
