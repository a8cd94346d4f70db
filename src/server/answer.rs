//! Reads one choice's chat answer, streamed or whole: thinking apart from the answer
//! (`reasoning`), then tool calls out of the answer (`tools`), each released as soon as it is
//! settled; `parallel_tool_calls: false` applied, and the finish reason a call turns into.
use super::harmony::HarmonySplitter;
use super::reasoning::{ReasoningSplitter, Split};
use super::recipient::PrefixDropper;
use super::tools::extract::{Piece, ToolCallExtractor};
use super::tools::format::ParsedCall;
use super::tools::{CallSyntax, ToolOutput};

/// How a request's answers are read (`None` in `Meta`: plain text).
#[derive(Debug, Clone, Default)]
pub struct AnswerSetup {
    pub tools: Option<ToolOutput>,
    /// A thinking model's answer, and how it writes its thought.
    pub reasoning: Option<Reasoning>,
    /// What the template has every answer start with, dropped (`recipient`: functionary's
    /// `all\n`).
    pub prefix: Option<&'static str>,
}

/// How a thinking model sets its thought apart from its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    /// In `<think>` ... `</think>` (or the model's `tags`); `in_thought`: the prompt left the
    /// answer inside one.
    Think {
        in_thought: bool,
        tags: super::reasoning::ThinkTags,
    },
    /// On harmony's `analysis` channel (gpt-oss).
    Harmony,
}

/// The reader of one of those.
enum Splitter {
    Think(ReasoningSplitter),
    Harmony(HarmonySplitter),
}

impl Splitter {
    /// `calls`: harmony calls are read (the request offered tools to a harmony model).
    fn new(r: Reasoning, calls: bool) -> Self {
        match r {
            Reasoning::Think { in_thought, tags } => {
                Splitter::Think(ReasoningSplitter::new(in_thought, tags))
            }
            Reasoning::Harmony => Splitter::Harmony(HarmonySplitter::new(calls)),
        }
    }

    fn push(&mut self, text: &str) -> Split {
        match self {
            Splitter::Think(s) => s.push(text),
            Splitter::Harmony(s) => s.push(text),
        }
    }

    fn finish(&mut self) -> Split {
        match self {
            Splitter::Think(s) => s.finish(),
            Splitter::Harmony(s) => s.finish(),
        }
    }
}

/// What a piece of generated text released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub reasoning: String,
    pub content: String,
    /// Calls with their index in the answer.
    pub calls: Vec<(usize, ParsedCall)>,
}

impl Released {
    fn append(&mut self, other: Released) {
        self.reasoning.push_str(&other.reasoning);
        self.content.push_str(&other.content);
        self.calls.extend(other.calls);
    }
}

pub struct AnswerReader {
    reasoning: Option<Splitter>,
    prefix: Option<PrefixDropper>,
    extractor: Option<ToolCallExtractor>,
    parallel: bool,
    calls: usize,
}

impl AnswerReader {
    pub fn new(setup: &AnswerSetup) -> Self {
        AnswerReader {
            reasoning: setup.reasoning.map(|r| {
                let harmony = setup
                    .tools
                    .as_ref()
                    .filter(|t| t.syntax == CallSyntax::Harmony);
                let mut s = Splitter::new(r, harmony.is_some());
                // A demanded call's header ends the prompt: the answer is its body.
                if let Some(t) = harmony {
                    let early = s.push(&t.forced_prefix);
                    debug_assert_eq!(early, Split::default());
                }
                s
            }),
            prefix: setup.prefix.map(PrefixDropper::new),
            extractor: setup.tools.as_ref().and_then(ToolOutput::extractor),
            parallel: setup.tools.as_ref().is_none_or(|t| t.parallel),
            calls: 0,
        }
    }

    pub fn push(&mut self, text: &str) -> Released {
        let split = match &mut self.reasoning {
            Some(r) => r.push(text),
            None => Split {
                content: text.to_string(),
                ..Split::default()
            },
        };
        self.read_content(split, false)
    }

    /// The answer ended.
    pub fn finish(&mut self) -> Released {
        let split = match &mut self.reasoning {
            Some(r) => r.finish(),
            None => Split::default(),
        };
        self.read_content(split, true)
    }

    /// A whole answer at once (non-streaming responses).
    pub fn read_all(&mut self, text: &str) -> Released {
        let mut all = self.push(text);
        all.append(self.finish());
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

    /// The answer part of `split` through the call extractor (calls the splitter read, from
    /// harmony messages, come with it).
    fn read_content(&mut self, split: Split, last: bool) -> Released {
        let Split {
            reasoning,
            content,
            calls,
        } = split;
        let mut out = Released {
            reasoning,
            ..Released::default()
        };
        let content = match &mut self.prefix {
            Some(dropper) => {
                let mut content = dropper.push(&content);
                if last {
                    content.push_str(&dropper.finish());
                }
                content
            }
            None => content,
        };
        let mut pieces: Vec<Piece> = match &mut self.extractor {
            Some(extractor) => {
                let mut pieces = extractor.push(&content);
                if last {
                    pieces.extend(extractor.finish());
                }
                pieces
            }
            None => vec![Piece::Content(content)],
        };
        pieces.extend(calls.into_iter().map(Piece::Call));
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
    use super::super::tools::format::ToolFormat;
    use super::*;

    fn output(parallel: bool, forced_prefix: &str) -> AnswerSetup {
        AnswerSetup {
            tools: Some(ToolOutput {
                functions: Default::default(),
                syntax: CallSyntax::Blocks(ToolFormat::Hermes),
                forced_prefix: forced_prefix.into(),
                parallel,
            }),
            reasoning: None,
            prefix: None,
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

    #[test]
    fn calls_are_read_from_the_answer_not_the_thought() {
        let mut setup = output(true, "");
        setup.reasoning = Some(Reasoning::Think {
            in_thought: false,
            tags: super::super::reasoning::THINK,
        });
        let mut r = AnswerReader::new(&setup);
        let got = r.read_all(
            "<think>Maybe <tool_call> get_weather?</think>\n<tool_call>\n{\"name\": \"a\"}\n</tool_call>",
        );
        assert_eq!(got.reasoning, "Maybe <tool_call> get_weather?");
        assert_eq!(got.content, "");
        assert_eq!(got.calls.len(), 1);
        assert_eq!(r.finish_reason("stop"), "tool_calls");
    }

    /// gpt-oss: the analysis channel is the thought, the final channel the answer, streamed
    /// token by token (each marker one token) as whole.
    #[test]
    fn harmony_channels_split_into_thought_and_answer() {
        let setup = AnswerSetup {
            tools: None,
            reasoning: Some(Reasoning::Harmony),
            prefix: None,
        };
        let tokens = [
            "<|channel|>",
            "analysis",
            "<|message|>",
            "Greet",
            " back.",
            "<|end|>",
            "<|start|>",
            "assistant",
            "<|channel|>",
            "final",
            "<|message|>",
            "Hello",
            "!",
        ];
        let mut streamed = Released::default();
        let mut r = AnswerReader::new(&setup);
        for t in tokens {
            streamed.append(r.push(t));
        }
        streamed.append(r.finish());
        let whole = AnswerReader::new(&setup).read_all(&tokens.concat());
        for got in [streamed, whole] {
            assert_eq!(
                (got.reasoning.as_str(), got.content.as_str()),
                ("Greet back.", "Hello!")
            );
        }
    }

    /// gpt-oss calling a tool offered to it: the thought, then the call (its arguments made
    /// compact), numbered and turning the finish reason; a second call is dropped without
    /// parallel calls.
    #[test]
    fn harmony_calls_are_read_as_tool_calls() {
        let setup = |parallel: bool| AnswerSetup {
            tools: Some(ToolOutput {
                functions: Default::default(),
                syntax: CallSyntax::Harmony,
                forced_prefix: String::new(),
                parallel,
            }),
            reasoning: Some(Reasoning::Harmony),
            prefix: None,
        };
        let call = |f: &str| {
            format!(
                "<|start|>assistant<|channel|>commentary to=functions.{f} <|constrain|>json\
                 <|message|>{{ \"x\": 1 }}<|call|>"
            )
        };
        let text = format!(
            "<|channel|>analysis<|message|>Check.<|end|>{}{}",
            call("a"),
            call("b")
        );
        let mut r = AnswerReader::new(&setup(true));
        let got = r.read_all(&text);
        assert_eq!(got.reasoning, "Check.");
        let names: Vec<(usize, &str, &str)> = got
            .calls
            .iter()
            .map(|(i, c)| (*i, c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(names, [(0, "a", "{\"x\":1}"), (1, "b", "{\"x\":1}")]);
        assert_eq!(r.finish_reason("stop"), "tool_calls");
        let mut one = AnswerReader::new(&setup(false));
        assert_eq!(one.read_all(&text).calls.len(), 1);
        // A demanded call: the prompt ended with its header, the answer is the arguments.
        let mut forced = setup(true);
        if let Some(t) = forced.tools.as_mut() {
            t.forced_prefix = crate::server::harmony::call_header("get_weather");
        }
        let got = AnswerReader::new(&forced).read_all("{\"city\": \"Oslo\"}");
        assert_eq!(got.calls.len(), 1);
        assert_eq!(got.calls[0].1.name, "get_weather");
        assert_eq!(got.calls[0].1.arguments, "{\"city\":\"Oslo\"}");
    }
}
