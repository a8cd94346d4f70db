//! Reasoning models (Qwen3, DeepSeek-R1, QwQ) think in `<think> ... </think>` before they
//! answer. The thinking comes back as `reasoning_content` (as DeepSeek's API, vLLM and
//! llama-server return it) and only the answer as `content`, so clients that show `content`
//! do not show the scratch work, and tool calls are read from the answer only (stop strings,
//! matched before the split, end the generation wherever they appear).

use super::marker::{held_back, opening, Opening};

pub const OPEN: &str = "<think>";
pub const CLOSE: &str = "</think>";

/// Whether a chat template belongs to a thinking model.
pub fn template_thinks(template: &str) -> bool {
    template.contains(OPEN) && template.contains(CLOSE)
}

/// Whether a rendered prompt leaves the answer inside a thought (DeepSeek-R1's template opens
/// `<think>` itself; Qwen3's closes an empty one when thinking is off).
pub fn prompt_opens_thought(prompt: &str) -> bool {
    match (prompt.rfind(OPEN), prompt.rfind(CLOSE)) {
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
    /// Right after `</think>`: whitespace before the answer is dropped.
    AfterThought,
    Answer,
}

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
}

impl ReasoningSplitter {
    pub fn new(in_thought: bool) -> Self {
        ReasoningSplitter {
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
        loop {
            match self.state {
                State::Start => match opening(&self.pending, OPEN) {
                    Opening::Opens(from_open) => {
                        self.pending = from_open[OPEN.len()..].to_string();
                        self.state = State::Thinking;
                    }
                    Opening::Undecided => return out,
                    Opening::Not => self.state = State::Answer,
                },
                State::Thinking => match self.pending.find(CLOSE) {
                    Some(at) => {
                        out.reasoning.push_str(&self.pending[..at]);
                        self.pending.drain(..at + CLOSE.len());
                        self.state = State::AfterThought;
                    }
                    None => {
                        let keep = held_back(&self.pending, CLOSE);
                        let cut = self.pending.len() - keep;
                        out.reasoning.extend(self.pending.drain(..cut));
                        return out;
                    }
                },
                State::AfterThought => {
                    let start = self.pending.len() - self.pending.trim_start().len();
                    self.pending.drain(..start);
                    if self.pending.is_empty() {
                        return out;
                    }
                    self.state = State::Answer;
                }
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
            State::Start | State::Answer => Split {
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
        let mut s = ReasoningSplitter::new(in_thought);
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
        assert!(prompt_opens_thought("<|im_start|>assistant\n<think>\n"));
        assert!(!prompt_opens_thought(
            "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ));
        assert!(!prompt_opens_thought("<|im_start|>assistant\n"));
        assert!(template_thinks("{{ '<think>\\n\\n</think>\\n\\n' }}"));
        assert!(!template_thinks("{{ messages }}"));
    }
}
