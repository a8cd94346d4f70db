//! Reasoning models (Qwen3, DeepSeek-R1, QwQ, GLM-4.5) think in `<think> ... </think>` before
//! they answer (Seed-OSS in `<seed:think>` tags, Magistral and Ministral 3 in `[THINK]`
//! tokens, Command R7B between `<|START_THINKING|>` and `<|END_THINKING|>`, Apertus between
//! `<|inner_prefix|>` and `<|inner_suffix|>`, Solar Open in a `<|think|>` turn of its own:
//! `ThinkTags`, told from the chat template). The thinking comes back as `reasoning_content`
//! (as DeepSeek's API, vLLM and llama-server return it) and only the answer as `content`, so clients that show `content`
//! do not show the scratch work, and tool calls are read from the answer only (stop strings,
//! matched before the split, end the generation wherever they appear). ERNIE 4.5's thinking
//! models and Granite 3.3 (thinking on) then wrap the answer in `<response>` ... `</response>`
//! (as vLLM's ERNIE parser reads them): an answer opening so right after a thought has the
//! wrapper left out.

use super::marker::{held_back, opening, Opening};

/// The text that opens and closes a model's thought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkTags {
    pub open: &'static str,
    pub close: &'static str,
}

pub const THINK: ThinkTags = ThinkTags {
    open: "<think>",
    close: "</think>",
};

/// Solar Open's thought is an assistant turn of its own (`<|begin|>assistant<|think|>` ...
/// `<|end|>`); its answer opens another (`<|begin|>assistant`, then `<|content|>` or
/// `<|tool_calls|>`). The next turn's header closes the thought with it, so the engine's
/// forced closing (a budget's) writes the header too, and a demanded call's opening or an
/// answer's grammar follow the header, where the model's answer starts.
pub const SOLAR_OPEN: ThinkTags = ThinkTags {
    open: "<|think|>",
    close: "<|end|><|begin|>assistant",
};

/// Every pair a template may use, each with the text that shows a template uses it:
/// Seed-OSS's, Mistral's, Cohere's, Apertus', Solar Open's, MiniMax-M3's, Gemma 4's and Hy3's
/// before the common one.
const KNOWN: [(ThinkTags, [&str; 2]); 9] = [
    tagged(ThinkTags {
        open: "<seed:think>",
        close: "</seed:think>",
    }),
    tagged(ThinkTags {
        open: "[THINK]",
        close: "[/THINK]",
    }),
    tagged(ThinkTags {
        open: "<|START_THINKING|>",
        close: "<|END_THINKING|>",
    }),
    tagged(ThinkTags {
        open: "<|inner_prefix|>",
        close: "<|inner_suffix|>",
    }),
    // Its template writes the thought's turn, not the close as one piece.
    (SOLAR_OPEN, ["<|begin|>assistant<|think|>", "<|end|>"]),
    tagged(ThinkTags {
        open: "<mm:think>",
        close: "</mm:think>",
    }),
    // Gemma 4's thought channel, named on the opening's line.
    (
        ThinkTags {
            open: "<|channel>thought\n",
            close: "<channel|>",
        },
        ["<|channel>thought", "<channel|>"],
    ),
    // Hy3's template adds its suffix to every tag with `format` (`'<think{}>'.format(HYTK)`).
    (
        ThinkTags {
            open: "<think:opensource>",
            close: "</think:opensource>",
        },
        ["<think", ":opensource"],
    ),
    tagged(THINK),
];

/// A pair shown by its own two tags in the template.
const fn tagged(tags: ThinkTags) -> (ThinkTags, [&'static str; 2]) {
    (tags, [tags.open, tags.close])
}

/// Special tokens a template writes around the answer itself (Command R7B's, Command A
/// Reasoning's (`Cohere2MoE`) text blocks; Solar Open's content channel), which carry nothing
/// for the client: left out of the text where the server keeps special tokens to read calls
/// or thoughts.
pub const ANSWER_WRAPPERS: [&str; 5] = [
    "<|START_RESPONSE|>",
    "<|END_RESPONSE|>",
    "<|START_TEXT|>",
    "<|END_TEXT|>",
    "<|content|>",
];

/// The tags of a thinking model's chat template; None when the model does not think.
pub fn template_thinks(template: &str) -> Option<ThinkTags> {
    KNOWN
        .into_iter()
        .find(|(_, shown_by)| shown_by.iter().all(|text| template.contains(text)))
        .map(|(tags, _)| tags)
}

/// Whether a rendered prompt leaves the answer inside a thought (DeepSeek-R1's template opens
/// `<think>` itself; Qwen3's closes an empty one when thinking is off).
pub fn prompt_opens_thought(prompt: &str, tags: ThinkTags) -> bool {
    match (prompt.rfind(tags.open), prompt.rfind(tags.close)) {
        (Some(open), Some(close)) => open > close,
        (Some(_), None) => true,
        _ => false,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: a thought may still open.
    Start,
    Thinking,
    /// Right after `</think>`: whitespace before the answer is dropped, and a `<response>`
    /// wrapper's opening.
    AfterThought,
    Answer,
    /// Inside `<response>` ... `</response>`: its closing and the whitespace before it are
    /// left out.
    WrappedAnswer,
}

/// The wrapper some thinking models write around the answer after their thought.
const ANSWER_OPEN: &str = "<response>";
const ANSWER_CLOSE: &str = "</response>";

/// What a piece of generated text released.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub reasoning: String,
    pub content: String,
    /// Tool calls read on the way (harmony writes them as messages of their own).
    pub calls: Vec<super::tools::format::ParsedCall>,
}

pub struct ReasoningSplitter {
    state: State,
    pending: String,
    tags: ThinkTags,
}

impl ReasoningSplitter {
    pub fn new(in_thought: bool, tags: ThinkTags) -> Self {
        ReasoningSplitter {
            tags,
            state: if in_thought {
                State::Thinking
            } else {
                State::Start
            },
            pending: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> Split {
        let mut out = Split::default();
        self.pending.push_str(text);
        let ThinkTags { open, close } = self.tags;
        loop {
            match self.state {
                State::Start => match opening(&self.pending, open) {
                    Opening::Opens(from_open) => {
                        self.pending = from_open[open.len()..].to_string();
                        self.state = State::Thinking;
                    }
                    Opening::Undecided => return out,
                    Opening::Not => self.state = State::Answer,
                },
                State::Thinking => match self.pending.find(close) {
                    Some(at) => {
                        out.reasoning.push_str(&self.pending[..at]);
                        self.pending.drain(..at + close.len());
                        self.state = State::AfterThought;
                    }
                    None => {
                        let keep = held_back(&self.pending, close);
                        let cut = self.pending.len() - keep;
                        out.reasoning.extend(self.pending.drain(..cut));
                        return out;
                    }
                },
                State::AfterThought => match opening(&self.pending, ANSWER_OPEN) {
                    Opening::Opens(from_open) => {
                        let inside = &from_open[ANSWER_OPEN.len()..];
                        if inside.is_empty() {
                            // Whether a line break follows is not known yet.
                            return out;
                        }
                        self.pending = inside.strip_prefix('\n').unwrap_or(inside).to_string();
                        self.state = State::WrappedAnswer;
                    }
                    Opening::Undecided => return out,
                    Opening::Not => {
                        let start = self.pending.len() - self.pending.trim_start().len();
                        self.pending.drain(..start);
                        self.state = State::Answer;
                    }
                },
                State::WrappedAnswer => match self.pending.find(ANSWER_CLOSE) {
                    Some(at) => {
                        out.content.push_str(self.pending[..at].trim_end());
                        self.pending.drain(..at + ANSWER_CLOSE.len());
                        // What follows (a line break, calls) is read as after a thought.
                        self.state = State::AfterThought;
                    }
                    None => {
                        // Held back: a partial closing, and whitespace that may come before it.
                        let partial = held_back(&self.pending, ANSWER_CLOSE);
                        let before = &self.pending[..self.pending.len() - partial];
                        let cut = before.trim_end().len();
                        out.content.extend(self.pending.drain(..cut));
                        return out;
                    }
                },
                State::Answer => {
                    out.content.push_str(&self.pending);
                    self.pending.clear();
                    return out;
                }
            }
        }
    }

    /// The answer ended: an unfinished thought stays reasoning; text that never opened one is
    /// the answer.
    pub fn finish(&mut self) -> Split {
        let rest = std::mem::take(&mut self.pending);
        match self.state {
            State::Thinking => Split {
                reasoning: rest,
                ..Split::default()
            },
            State::AfterThought => Split::default(),
            State::Start | State::Answer | State::WrappedAnswer => Split {
                content: rest,
                ..Split::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `output` in pieces of `step` characters; (reasoning, content).
    fn run(in_thought: bool, output: &str, step: usize) -> (String, String) {
        run_with(in_thought, THINK, output, step)
    }

    fn run_with(in_thought: bool, tags: ThinkTags, output: &str, step: usize) -> (String, String) {
        let mut s = ReasoningSplitter::new(in_thought, tags);
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

    /// ERNIE 4.5 Thinking's answer after its thought: the `<response>` wrapper is left out,
    /// with the line breaks just inside it; text after it is read on. Without a thought, or
    /// not at the answer's start, `<response>` is the answer's own text.
    #[test]
    fn response_wrappers_after_a_thought_are_left_out() {
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                run(
                    true,
                    "Hmm.\n</think>\n\n<response>\nIt is 4.\n</response>\n",
                    step
                ),
                ("Hmm.\n".into(), "It is 4.".into()),
                "step {step}"
            );
            assert_eq!(
                run(false, "<think>Hmm.</think><response>A < B</respo", step),
                ("Hmm.".into(), "A < B</respo".into()),
                "step {step}"
            );
            assert_eq!(
                run(false, "<think>Hmm.</think>Say <response>.", step),
                ("Hmm.".into(), "Say <response>.".into()),
                "step {step}"
            );
            assert_eq!(
                run(false, "<response>x</response>", step),
                (String::new(), "<response>x</response>".into()),
                "step {step}"
            );
        }
    }

    #[test]
    fn thoughts_and_answers_part_at_any_chunking() {
        for step in [1, 2, 3, 5, 100] {
            assert_eq!(
                run(false, "\n<think>\nHmm, 2+2.\n</think>\n\nIt is 4.", step),
                ("\nHmm, 2+2.\n".into(), "It is 4.".into()),
                "step {step}"
            );
            // DeepSeek-R1: the prompt opened the thought.
            assert_eq!(
                run(true, "2+2 is 4 </thi</think>Four.", step),
                ("2+2 is 4 </thi".into(), "Four.".into()),
                "step {step}"
            );
            // No thought at all (Qwen3 with thinking off), and a `<` that is not one.
            assert_eq!(
                run(false, "<b>Four</b>", step),
                (String::new(), "<b>Four</b>".into())
            );
            // Cut off while thinking: all reasoning, no answer.
            assert_eq!(
                run(false, "<think>still going", step),
                ("still going".into(), String::new())
            );
        }
        assert_eq!(run(false, " <thi", 1), (String::new(), " <thi".into()));
    }

    #[test]
    fn prompts_and_templates() {
        assert!(prompt_opens_thought(
            "<|im_start|>assistant\n<think>\n",
            THINK
        ));
        assert!(!prompt_opens_thought(
            "<|im_start|>assistant\n<think>\n\n</think>\n\n",
            THINK
        ));
        assert!(!prompt_opens_thought("<|im_start|>assistant\n", THINK));
        assert_eq!(
            template_thinks("{{ '<think>\\n\\n</think>\\n\\n' }}"),
            Some(THINK)
        );
        assert_eq!(template_thinks("{{ messages }}"), None);
        // Solar Open's low reasoning effort: an empty thought's turn, then the answer's header.
        let low =
            "<|begin|>user<|content|>Hi<|end|><|begin|>assistant<|think|><|end|><|begin|>assistant";
        assert!(!prompt_opens_thought(low, SOLAR_OPEN));
        // After its thought, calls open the answer's turn: the section is the answer's.
        assert_eq!(
            run_with(
                false,
                SOLAR_OPEN,
                "<|think|>A call.<|end|><|begin|>assistant<|tool_calls|><|tool_call:begin|>",
                2
            ),
            ("A call.".into(), "<|tool_calls|><|tool_call:begin|>".into())
        );
    }

    /// Seed-OSS's, Mistral's, Command R7B's, Apertus', Solar Open's and Hy3's tags, told from
    /// their vendors' templates (the corpus), split their thoughts as `<think>` does.
    #[test]
    fn other_tags_from_their_templates() {
        let corpus: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/chat_templates/corpus.json"
        ))
        .unwrap();
        let tags_of = |name: &str| {
            let templates = corpus["templates"].as_array().unwrap();
            let t = templates.iter().find(|t| t["name"] == name).unwrap();
            template_thinks(t["chat_template"].as_str().unwrap())
        };
        let seed = tags_of("ByteDance-Seed-OSS").unwrap();
        assert_eq!(seed.open, "<seed:think>");
        let mistral = tags_of("mistralai-Ministral-3-14B-Reasoning-2512").unwrap();
        assert_eq!(mistral.open, "[THINK]");
        let cohere = tags_of("CohereForAI-c4ai-command-r7b-12-2024-tool_use").unwrap();
        assert_eq!(cohere.close, "<|END_THINKING|>");
        let apertus = tags_of("Apertus-8B-Instruct").unwrap();
        assert_eq!(apertus.open, "<|inner_prefix|>");
        assert_eq!(tags_of("Qwen-Qwen3-0.6B"), Some(THINK));
        let solar = tags_of("upstage-Solar-Open-100B").unwrap();
        assert_eq!(solar, SOLAR_OPEN);
        let hy3 = tags_of("tencent-Hy3").unwrap();
        assert_eq!(hy3.close, "</think:opensource>");
        let m3 = tags_of("MiniMax-M3").unwrap();
        assert_eq!(m3.open, "<mm:think>");
        let gemma4 = tags_of("google-gemma-4-31B-it").unwrap();
        assert_eq!(gemma4.close, "<channel|>");
        for (tags, output) in [
            (gemma4, "<|channel>thought\nHmm.<channel|>Four."),
            (m3, "<mm:think>Hmm.</mm:think>Four."),
            (hy3, "<think:opensource>Hmm.</think:opensource>Four."),
            (seed, "<seed:think>Hmm.</seed:think>\nFour."),
            (mistral, "[THINK]Hmm.[/THINK]Four."),
            (cohere, "<|START_THINKING|>Hmm.<|END_THINKING|>Four."),
            (apertus, "<|inner_prefix|>Hmm.<|inner_suffix|>Four."),
            // The answer's turn header closes the thought (its `<|content|>` is left out in
            // decoding, `ANSWER_WRAPPERS`).
            (solar, "<|think|>Hmm.<|end|><|begin|>assistantFour."),
        ] {
            for step in [1, 3, 100] {
                assert_eq!(
                    run_with(false, tags, output, step),
                    ("Hmm.".into(), "Four.".into()),
                    "{output} step {step}"
                );
            }
        }
    }
}
